"""Validation of what clients send: prompts, masks (COCO RLE) and labels.

Every check raises :class:`anyseg.errors.InvalidInputError` with a message that names what was
expected and what came; the HTTP layer turns it into a 400 with a JSON body.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from anyseg.errors import InvalidInputError
from anyseg.ops.rle import rle_counts_total

MAX_LABEL_CHARS = 200


@dataclass(frozen=True)
class Prompt:
    """One prompt set in original-image pixels.

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


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInputError(f"{what} must be a number, got {value!r}")
    out = float(value)
    if not math.isfinite(out):
        raise InvalidInputError(f"{what} must be finite, got {value!r}")
    return out


def validate_prompt(
    points: Any, labels: Any, box: Any, size_hw: tuple[int, int], max_points: int = 64
) -> Prompt:
    """Check points (N, 2) xy with labels (N,) in {0, 1} and an optional XYXY box, all inside an
    image of ``size_hw`` = (H, W) pixels (the right/bottom edge itself counts as inside)."""
    h, w = size_hw
    points = [] if points is None else points
    labels = [] if labels is None else labels
    if not isinstance(points, (list, tuple)) or not isinstance(labels, (list, tuple)):
        raise InvalidInputError("points must be a list of [x, y] and labels a list of 0/1")
    if len(points) != len(labels):
        raise InvalidInputError(
            f"got {len(points)} points but {len(labels)} labels: give one label per point"
        )
    if len(points) > max_points:
        raise InvalidInputError(f"at most {max_points} points per prompt, got {len(points)}")
    pts: list[tuple[float, float]] = []
    for i, p in enumerate(points):
        if not isinstance(p, (list, tuple)) or len(p) != 2:
            raise InvalidInputError(f"point {i} must be [x, y], got {p!r}")
        x, y = _number(p[0], f"point {i} x"), _number(p[1], f"point {i} y")
        if not (0 <= x <= w and 0 <= y <= h):
            raise InvalidInputError(
                f"point {i} ({x:g}, {y:g}) lies outside the {w}x{h} (WxH) image"
            )
        pts.append((x, y))
    labs: list[int] = []
    for i, lab in enumerate(labels):
        if isinstance(lab, bool) or lab not in (0, 1):
            raise InvalidInputError(
                f"label {i} must be 1 (foreground) or 0 (background), got {lab!r}"
            )
        labs.append(int(lab))
    box_xyxy: tuple[float, float, float, float] | None = None
    if box is not None:
        if not isinstance(box, (list, tuple)) or len(box) != 4:
            raise InvalidInputError(f"box must be [x0, y0, x1, y1], got {box!r}")
        x0, y0, x1, y1 = (_number(v, "box coordinate") for v in box)
        if not (x0 < x1 and y0 < y1):
            raise InvalidInputError(f"box must have x0 < x1 and y0 < y1, got {list(box)}")
        if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
            raise InvalidInputError(f"box {list(box)} lies outside the {w}x{h} (WxH) image")
        box_xyxy = (x0, y0, x1, y1)
    if not pts and box_xyxy is None:
        raise InvalidInputError("a prompt needs at least one point or a box")
    return Prompt(tuple(pts), tuple(labs), box_xyxy)


def validate_segmentation(seg: Any, size_hw: tuple[int, int]) -> dict[str, Any]:
    """Check a compressed COCO RLE ``{"size": [H, W], "counts": str}`` of an (H, W) image."""
    if not isinstance(seg, dict) or set(seg) != {"size", "counts"}:
        raise InvalidInputError('segmentation must be a COCO RLE {"size": [h, w], "counts": str}')
    size = seg["size"]
    if not isinstance(size, (list, tuple)) or [*size] != [size_hw[0], size_hw[1]]:
        raise InvalidInputError(
            f"segmentation size must be the image's [h, w] = {list(size_hw)}, got {size!r}"
        )
    counts = seg["counts"]
    if not isinstance(counts, str) or not counts.isascii():
        raise InvalidInputError("segmentation counts must be a pycocotools compressed string")
    total = rle_counts_total(counts)
    if total != size_hw[0] * size_hw[1]:
        raise InvalidInputError(
            f"segmentation covers {total} pixels, the image has {size_hw[0] * size_hw[1]}"
        )
    return {"size": [int(size_hw[0]), int(size_hw[1])], "counts": counts}


def validate_label(label: Any) -> str | None:
    """A label is None or a string of at most ``MAX_LABEL_CHARS``; blank means None."""
    if label is None:
        return None
    if not isinstance(label, str):
        raise InvalidInputError(f"label must be a string, got {type(label).__name__}")
    label = " ".join(label.split())
    if len(label) > MAX_LABEL_CHARS:
        raise InvalidInputError(f"label must have at most {MAX_LABEL_CHARS} characters")
    return label or None
