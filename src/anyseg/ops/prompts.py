"""The one validator of prompts in original-image pixels, shared by every entry point.

:class:`anyseg.predictor.SamPredictor` (numpy arrays), the ONNX runner and the annotation server
(JSON lists) all check points, labels and boxes here, so a prompt one of them accepts the others
accept too, with the same message when they refuse it.

The rules (frames: (x, y) pixels of an (H, W) image, boxes XYXY):

- a point lies inside the image, the right and bottom edges included: ``0 <= x <= W``,
  ``0 <= y <= H``; coordinates are finite real numbers (not booleans, strings or NaN);
- a label is 1 (foreground) or 0 (background), one per point;
- a box lies inside the image and has ``x0 <= x1`` and ``y0 <= y1``. A degenerate box (zero
  width or height) is **valid**: the model embeds its two corners like any other box, and boxes
  computed from masks are degenerate for one-pixel-wide objects (``batched_mask_to_box`` gives
  ``x0 == x1``), so the box protocol of evaluation must accept them. The original SAM accepts any
  four numbers; an inverted box (``x0 > x1``) is refused here because it is always swapped
  corners, never a box the model was trained on.
- An empty list of points means no points.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

from anyseg.errors import InvalidInputError


@dataclass(frozen=True)
class Prompt:
    """One checked prompt set in original-image pixels.

    Attributes:
        points_xy: ((x, y), ...) point prompts.
        labels: (1 | 0, ...) one per point: 1 foreground, 0 background.
        box_xyxy: (x0, y0, x1, y1) box prompt, or None.
    """

    points_xy: tuple[tuple[float, float], ...]
    labels: tuple[int, ...]
    box_xyxy: tuple[float, float, float, float] | None

    def to_json(self) -> dict[str, Any]:
        return {
            "points": [list(p) for p in self.points_xy],
            "labels": list(self.labels),
            "box": None if self.box_xyxy is None else list(self.box_xyxy),
        }

    def positive_points(self) -> list[list[float]]:
        return [list(p) for p, lab in zip(self.points_xy, self.labels, strict=True) if lab == 1]

    def arrays(self) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
        """(N, 2) float64 points, (N,) int64 labels (None without points), (4,) float64 box."""
        coords = np.asarray(self.points_xy, np.float64) if self.points_xy else None
        labels = np.asarray(self.labels, np.int64) if self.points_xy else None
        box = None if self.box_xyxy is None else np.asarray(self.box_xyxy, np.float64)
        return coords, labels, box


_FLOAT_MAX = int(np.finfo(np.float64).max)


def _is_empty(value: Any) -> bool:
    return value is None or (hasattr(value, "__len__") and len(value) == 0)


def _numbers(value: Any, what: str, depth: int) -> np.ndarray:
    """``value`` (an array, or lists nested at most ``depth`` deep) as float64, every element a
    real number: booleans, strings and other objects are refused, naming the first one. Shapes
    are checked by the caller."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "iuf":
            raise InvalidInputError(f"{what} must be numbers, got an array of {value.dtype}")
        return value.astype(np.float64)
    if not isinstance(value, (list, tuple)):
        raise InvalidInputError(f"{what} must be a list, got {_show(value)}")
    stack: list[tuple[Any, int]] = [(v, 1) for v in value]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (list, tuple)) and level < depth:
            stack.extend((v, level + 1) for v in item)
        elif isinstance(item, bool) or not isinstance(item, numbers.Real):
            raise InvalidInputError(f"{what} must be numbers, got {_show(item)}")
        elif isinstance(item, int) and not -_FLOAT_MAX < item < _FLOAT_MAX:
            raise InvalidInputError(
                f"{what} must be finite numbers, got an integer of {item.bit_length()} bits"
            )
    try:
        return np.asarray(value, dtype=np.float64)
    except ValueError:
        raise InvalidInputError(
            f"{what} must be a regular list of numbers, got a ragged one"
        ) from None


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def validate_points(
    point_coords: Any, point_labels: Any, size_hw: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Check (N, 2) xy points with (N,) labels in {0, 1} inside an (H, W) image.

    Returns:
        (N, 2) float64 points and (N,) int64 labels (N may be 0: no points).

    Raises:
        InvalidInputError: see the module docstring for the rules.
    """
    if _is_empty(point_coords) and _is_empty(point_labels):
        return np.zeros((0, 2)), np.zeros((0,), np.int64)
    if point_coords is None or point_labels is None:
        raise InvalidInputError("point_coords and point_labels must be given together")
    coords = (
        np.zeros((0, 2)) if _is_empty(point_coords) else _numbers(point_coords, "point_coords", 2)
    )
    labels = _numbers(point_labels, "point_labels", 1)
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise InvalidInputError(
            f"point_coords must be (N, 2) [x, y] pairs, got shape {coords.shape}"
        )
    if labels.shape != (coords.shape[0],):
        raise InvalidInputError(
            f"point_labels must have shape ({coords.shape[0]},): one label per point, "
            f"got {coords.shape[0]} points and labels of shape {labels.shape}"
        )
    bad_labels = sorted({float(v) for v in labels if v not in (0, 1)})
    if bad_labels:
        raise InvalidInputError(
            f"point labels must be 0 or 1 (0 background, 1 foreground), got {bad_labels}"
        )
    if not np.isfinite(coords).all():
        raise InvalidInputError("point_coords contain NaN or infinite values")
    h, w = size_hw
    outside = (coords[:, 0] < 0) | (coords[:, 0] > w) | (coords[:, 1] < 0) | (coords[:, 1] > h)
    if outside.any():
        offending = [tuple(float(v) for v in p) for p in coords[outside]]
        raise InvalidInputError(f"points {offending} lie outside the {w}x{h} (WxH) image")
    return coords, labels.astype(np.int64)


def validate_box(box: Any, size_hw: tuple[int, int]) -> np.ndarray:
    """Check a (4,) or (1, 4) XYXY box inside an (H, W) image; returns it as (1, 4) float64.

    Raises:
        InvalidInputError: see the module docstring for the rules (degenerate boxes are valid).
    """
    arr = _numbers(box, "box", 2)
    if arr.shape not in ((4,), (1, 4)):
        raise InvalidInputError(f"box must be XYXY of shape (4,) or (1, 4), got {arr.shape}")
    arr = arr.reshape(1, 4)
    if not np.isfinite(arr).all():
        raise InvalidInputError("box contains NaN or infinite values")
    x0, y0, x1, y1 = (float(v) for v in arr[0])
    if x0 > x1 or y0 > y1:
        raise InvalidInputError(f"box must be XYXY with x0<=x1 and y0<=y1, got {arr[0].tolist()}")
    h, w = size_hw
    if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
        raise InvalidInputError(f"box {arr[0].tolist()} lies outside the {w}x{h} (WxH) image")
    return arr


def validate_prompt(
    points: Any,
    labels: Any,
    box: Any,
    size_hw: tuple[int, int],
    *,
    max_points: int | None = None,
) -> Prompt:
    """Check a whole prompt set (points with labels, and/or a box) that must ask for something.

    Args:
        points: (N, 2) xy pixels (array or lists), or None / empty.
        labels: (N,) 0/1, or None / empty.
        box: (4,) XYXY pixels, or None.
        size_hw: (H, W) of the image.
        max_points: most points accepted (None: no limit).

    Raises:
        InvalidInputError: a rule of the module docstring is broken, there is neither a point
            nor a box, or there are more than ``max_points`` points.
    """
    if max_points is not None and hasattr(points, "__len__") and len(points) > max_points:
        raise InvalidInputError(f"at most {max_points} points per prompt, got {len(points)}")
    coords, labs = validate_points(points, labels, size_hw)
    box_arr = None if box is None else validate_box(box, size_hw)
    if not len(coords) and box_arr is None:
        raise InvalidInputError("a prompt needs at least one point or a box")
    box_xyxy = None
    if box_arr is not None:
        x0, y0, x1, y1 = (float(v) for v in box_arr[0])
        box_xyxy = (x0, y0, x1, y1)
    return Prompt(
        points_xy=tuple((float(x), float(y)) for x, y in coords),
        labels=tuple(int(v) for v in labs),
        box_xyxy=box_xyxy,
    )


def finite_number(value: Any, what: str) -> float:
    """``value`` as a finite float: real numbers only (not booleans, strings, NaN or inf)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidInputError(f"{what} must be a number, got {_show(value)}")
    if isinstance(value, int) and not -_FLOAT_MAX < value < _FLOAT_MAX:
        raise InvalidInputError(
            f"{what} must be a finite number, got an integer of {value.bit_length()} bits"
        )
    out = float(value)
    if not math.isfinite(out):
        raise InvalidInputError(f"{what} must be a finite number, got {_show(value)}")
    return out
