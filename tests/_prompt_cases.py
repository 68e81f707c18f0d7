"""Prompt cases every entry point must judge alike (the predictor, the ONNX runner's inputs and
the annotation server all use anyseg.ops.prompts): an image of (H, W) = SIZE_HW pixels."""

from __future__ import annotations

from typing import Any

SIZE_HW = (96, 128)

#: (points, labels, box): prompts every entry point accepts. A degenerate box (zero width) is
#: valid, the right/bottom edges are inside, and an empty list of points means none.
VALID: list[tuple[Any, Any, Any]] = [
    ([[40, 45]], [1], None),
    ([[128, 96], [0, 0]], [1, 0], None),
    (None, None, [10, 10, 10, 50]),
    (None, None, [10, 20, 60, 20]),
    ([], [], [0, 0, 128, 96]),
    ([[40.5, 45.25]], [1.0], [10, 10, 70, 80]),
]

#: (points, labels, box, message fragment, representable in JSON): prompts every entry point
#: refuses with the same message. Cases JSON cannot carry (NaN, huge integers) are refused by
#: the server's JSON parser before the validator sees them.
INVALID: list[tuple[Any, Any, Any, str, bool]] = [
    ([[129, 10]], [1], None, "outside the 128x96", True),
    ([[-1, 10]], [1], None, "outside", True),
    ([[5, 10]], [7], None, "labels must be 0 or 1", True),
    ([[5, 10]], [True], None, "point_labels must be numbers", True),
    ([[5, "x"]], [1], None, "point_coords must be numbers", True),
    ([[True, 5]], [1], None, "point_coords must be numbers", True),
    ([[5, 10]], None, None, "given together", True),
    (None, [1], None, "given together", True),
    ([], [1], None, "one label per point", True),
    ([[5, 10]], [1, 0], None, "one label per point", True),
    ([[1, 2, 3]], [1], None, r"\(N, 2\)", True),
    ([[1, 2], [3]], [1, 1], None, "ragged", True),
    ([5, 10], [1], None, r"\(N, 2\)", True),
    ([[[1, 2]]], [1], None, "point_coords must be numbers", True),
    ("abc", [1], None, "point_coords must be a list", True),
    (None, None, [50, 10, 10, 50], "x0<=x1", True),
    (None, None, [0, 0, 129, 10], "outside", True),
    (None, None, [0, 0, 10], "XYXY", True),
    (None, None, [0, 0, 10, False], "box must be numbers", True),
    (None, None, {"x0": 1}, "box must be a list", True),
    ([[float("nan"), 2]], [1], None, "NaN", False),
    (None, None, [0, 0, float("inf"), 10], "NaN or infinite", False),
    ([[10**400, 2]], [1], None, "finite", False),
]
