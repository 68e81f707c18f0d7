"""Prompt placement of the paper's evaluation protocols (SAM §7.1, appendix D.1): pure functions.

- The first point is the mask's "centre": the interior pixel farthest from the mask boundary.
- Each later point of the interactive protocol is the centre of the error region between the
  previous prediction and the ground truth; it is positive when it falls in a false negative
  (missed object pixels) and negative when it falls in a false positive (spill).
- The box prompt is the tight box of the mask.

Distances are exact Euclidean distances (OpenCV ``distanceTransform``, ``DIST_L2``,
``DIST_MASK_PRECISE``) to the nearest pixel outside the region, computed on the region padded by
one background pixel on every side: the image border counts as boundary, so a mask touching the
border gets its centre away from the border too. Ties are broken deterministically: among the
pixels at the maximal distance, the one nearest to their mean position, then the first in
row-major order. Points are (x, y) pixel indices of the image; the model reads a pixel index as
that pixel's centre.
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

from anyseg.errors import InvalidInputError


class ClickPoint(NamedTuple):
    """One simulated click.

    Attributes:
        x: column in image pixels.
        y: row in image pixels.
        label: 1 for a positive (foreground) click, 0 for a negative (background) click.
        depth: distance in pixels from the clicked pixel to the boundary of its region.
    """

    x: int
    y: int
    label: int
    depth: float


def boundary_distance(region: np.ndarray) -> np.ndarray:
    """Distance of every pixel of ``region`` to the nearest pixel outside it, image border included.

    Args:
        region: bool (H, W).

    Returns:
        float32 (H, W) distances in pixels; 0 outside the region, >= 1 inside it.
    """
    region = _as_mask(region, "region")
    padded = np.pad(region, 1).astype(np.uint8)  # (H, W) -> (H + 2, W + 2), border = background
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return dist[1:-1, 1:-1]


def region_center(region: np.ndarray) -> tuple[int, int, float] | None:
    """The interior pixel of ``region`` farthest from its boundary.

    Args:
        region: bool (H, W).

    Returns:
        (x, y, distance) in image pixels, or None when the region is empty.
    """
    region = _as_mask(region, "region")
    rows = np.flatnonzero(region.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(region.any(axis=0))
    y0, x0 = int(rows[0]), int(cols[0])
    # Exact on the region's bounding box: everything outside it is background, and the padding
    # ring boundary_distance adds is never farther than that background.
    dist = boundary_distance(region[y0 : rows[-1] + 1, x0 : cols[-1] + 1])
    best = float(dist.max())
    ys, xs = np.nonzero(dist == best)  # row-major order
    if ys.size > 1:
        # Tie break: the tied pixel nearest to the tied pixels' mean, first in row-major order.
        d2 = (ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2
        k = int(np.argmin(d2))
    else:
        k = 0
    return int(xs[k]) + x0, int(ys[k]) + y0, best


def center_point(mask: np.ndarray) -> ClickPoint:
    """The first click of the point protocols: the mask's centre, a positive click.

    Args:
        mask: bool (H, W) ground-truth mask, not empty.

    Raises:
        InvalidInputError: the mask is empty.
    """
    found = region_center(mask)
    if found is None:
        raise InvalidInputError("center_point needs a non-empty mask, got an empty one")
    x, y, depth = found
    return ClickPoint(x, y, 1, depth)


def random_point(mask: np.ndarray, rng: np.random.Generator) -> ClickPoint:
    """A uniformly random pixel of the mask as a positive click (the paper's harder first-point
    variant, appendix D.1).

    Args:
        mask: bool (H, W) ground-truth mask, not empty.
        rng: the random generator to draw from.
    """
    mask = _as_mask(mask, "mask")
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        raise InvalidInputError("random_point needs a non-empty mask, got an empty one")
    k = int(rng.integers(ys.size))
    depth = float(boundary_distance(mask)[ys[k], xs[k]])
    return ClickPoint(int(xs[k]), int(ys[k]), 1, depth)


def next_click(pred: np.ndarray, gt: np.ndarray) -> ClickPoint | None:
    """The next interactive click: the centre of the deepest error region.

    False negatives (``gt & ~pred``) and false positives (``pred & ~gt``) are separate regions.
    The click goes to whichever has the pixel farthest from its own boundary ("the largest error
    region" measured by its inscribed distance; a tie goes to the false negatives), positive for a
    false negative, negative for a false positive.

    Args:
        pred: bool (H, W) previous prediction.
        gt: bool (H, W) ground truth.

    Returns:
        The click, or None when the prediction equals the ground truth (nothing left to fix).
    """
    pred = _as_mask(pred, "pred")
    gt = _as_mask(gt, "gt")
    if pred.shape != gt.shape:
        raise InvalidInputError(
            f"next_click expects pred and gt of equal shape, got {pred.shape} and {gt.shape}"
        )
    fn = region_center(gt & ~pred)
    fp = region_center(pred & ~gt)
    if fn is not None and (fp is None or fn[2] >= fp[2]):
        return ClickPoint(fn[0], fn[1], 1, fn[2])
    if fp is not None:
        return ClickPoint(fp[0], fp[1], 0, fp[2])
    return None


def tight_box(mask: np.ndarray) -> np.ndarray:
    """Tight box of a mask as XYXY in image pixels, inclusive pixel indices of the extreme pixels.

    Args:
        mask: bool (H, W), not empty.

    Returns:
        float64 (4,) ``[x0, y0, x1, y1]`` (as the original's ``batched_mask_to_box``).
    """
    mask = _as_mask(mask, "mask")
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        raise InvalidInputError("tight_box needs a non-empty mask, got an empty one")
    cols = np.flatnonzero(mask.any(axis=0))
    return np.array([cols[0], rows[0], cols[-1], rows[-1]], dtype=np.float64)


def _as_mask(mask: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise InvalidInputError(f"{name} must be a 2-D (H, W) mask, got shape {arr.shape}")
    return arr.astype(bool, copy=False)
