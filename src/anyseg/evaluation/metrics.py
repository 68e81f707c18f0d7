"""Pure metric functions of the evaluation protocols: mask IoU, recall of ground-truth masks, and
the calibration of the model's IoU predictions.

All masks are boolean arrays in image pixels. IoU of two empty masks is defined as 1.0 (nothing to
find, nothing found); the protocols never score an empty ground-truth mask, so this only matters
for direct callers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from anyseg.errors import InvalidInputError


def mask_iou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Pairwise IoU of two stacks of masks.

    Args:
        pred: bool (N, H, W) or (H, W) predicted masks.
        gt: bool masks of the same shape as ``pred``.

    Returns:
        float64 (N,) IoU of ``pred[i]`` with ``gt[i]`` (a 0-d array for (H, W) inputs), in [0, 1].
    """
    pred = np.asarray(pred, dtype=bool)
    gt = np.asarray(gt, dtype=bool)
    if pred.shape != gt.shape:
        raise InvalidInputError(
            f"mask_iou expects masks of equal shape, got {pred.shape} and {gt.shape}"
        )
    if pred.ndim not in (2, 3):
        raise InvalidInputError(f"mask_iou expects (H, W) or (N, H, W) masks, got {pred.shape}")
    axes = (-2, -1)
    # Counts in int64 so that large images cannot overflow.
    inter = np.logical_and(pred, gt).sum(axis=axes, dtype=np.int64)
    union = np.logical_or(pred, gt).sum(axis=axes, dtype=np.int64)
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every mask of ``a`` with every mask of ``b`` (vectorized numpy).

    Args:
        a: bool (N, H, W) masks.
        b: bool (M, H, W) masks.

    Returns:
        float64 (N, M); empty when N or M is 0. Two empty masks have IoU 1.0.
    """
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    if a.ndim != 3 or b.ndim != 3 or a.shape[1:] != b.shape[1:]:
        raise InvalidInputError(
            f"iou_matrix expects (N, H, W) and (M, H, W) masks, got {a.shape} and {b.shape}"
        )
    n, m = a.shape[0], b.shape[0]
    if n == 0 or m == 0:
        return np.zeros((n, m), dtype=np.float64)
    fa = a.reshape(n, -1).astype(np.float64)  # (N, H, W) -> (N, HW)
    fb = b.reshape(m, -1).astype(np.float64)  # (M, H, W) -> (M, HW)
    inter = fa @ fb.T  # (N, M)
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1.0), 1.0)


def rle_iou_matrix(
    gt_rles: Sequence[dict[str, Any]], pred_rles: Sequence[dict[str, Any]]
) -> np.ndarray:
    """IoU matrix of COCO RLE masks via pycocotools (no decoding; fast on large images).

    Args:
        gt_rles: N COCO RLEs ``{"size": [h, w], "counts": str | bytes}``.
        pred_rles: M COCO RLEs of the same size.

    Returns:
        float64 (N, M) plain IoU (no crowd handling). Two empty masks have IoU 0.0 in
        pycocotools; callers never pass empty ground truth.
    """
    from pycocotools import mask as mask_utils

    n, m = len(gt_rles), len(pred_rles)
    if n == 0 or m == 0:
        return np.zeros((n, m), dtype=np.float64)
    gt = [_rle_bytes(r) for r in gt_rles]
    pred = [_rle_bytes(r) for r in pred_rles]
    sizes = {tuple(r["size"]) for r in gt + pred}
    if len(sizes) != 1:
        raise InvalidInputError(
            f"rle_iou_matrix expects masks of one size, got sizes {sorted(sizes)}"
        )
    # pycocotools.iou(dt, gt, iscrowd) returns (len(dt), len(gt)): pass gt as "dt" to get (N, M).
    out = mask_utils.iou(gt, pred, [0] * m)
    return np.asarray(out, dtype=np.float64).reshape(n, m)


def best_match_iou(ious: np.ndarray) -> np.ndarray:
    """For each ground-truth row of an (N, M) IoU matrix, the IoU of its best prediction.

    Returns:
        float64 (N,); 0.0 for every row when there are no predictions (M == 0).
    """
    ious = np.asarray(ious, dtype=np.float64)
    if ious.ndim != 2:
        raise InvalidInputError(f"best_match_iou expects an (N, M) matrix, got {ious.shape}")
    if ious.shape[1] == 0:
        return np.zeros(ious.shape[0], dtype=np.float64)
    return ious.max(axis=1)


def recall_at(best_ious: np.ndarray, thresholds: Sequence[float]) -> dict[float, float]:
    """Fraction of ground-truth masks whose best-matching prediction reaches each IoU threshold.

    A ground-truth mask counts as recalled at threshold t when some prediction has IoU >= t with
    it (the paper's "matched" masks; a prediction may match several ground-truth masks).

    Args:
        best_ious: (N,) best-match IoU per ground-truth mask (see :func:`best_match_iou`).
        thresholds: IoU thresholds in [0, 1].

    Returns:
        {threshold: recall in [0, 1]}; recall is 0.0 for every threshold when N == 0.
    """
    best = np.asarray(best_ious, dtype=np.float64).reshape(-1)
    out: dict[float, float] = {}
    for t in thresholds:
        if not 0.0 <= float(t) <= 1.0:
            raise InvalidInputError(f"IoU thresholds must lie in [0, 1], got {t}")
        out[float(t)] = float((best >= t).mean()) if best.size else 0.0
    return out


def mean_or_nan(values: Sequence[float] | np.ndarray) -> float:
    """Mean of ``values`` as a float; NaN when empty (a protocol with nothing scored)."""
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()) if arr.size else float("nan")


def histogram(values: Sequence[float] | np.ndarray, bins: int = 10) -> list[int]:
    """Counts of ``values`` in ``bins`` equal bins over [0, 1]: value v goes to bin
    ``floor(v * bins)`` (so 0.6 is in the bin [0.6, 0.7)), 1.0 to the last bin."""
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if np.any((arr < 0.0) | (arr > 1.0)):
        raise InvalidInputError("histogram expects values in [0, 1]")
    index = np.minimum(np.floor(arr * bins).astype(np.int64), bins - 1)
    return [int(c) for c in np.bincount(index, minlength=bins)]


def calibration_error(
    predicted: Sequence[float] | np.ndarray, actual: Sequence[float] | np.ndarray
) -> tuple[float, float]:
    """How well predicted IoUs match the real ones: (mean |predicted - actual|, Pearson r).

    A calibrated IoU head has a small error (the automatic generator's thresholds then mean
    what they say); the correlation says whether it at least ranks masks right. NaN for no
    pairs; r is NaN when either side is constant (fewer than 2 pairs included).
    """
    p = np.asarray(predicted, dtype=np.float64).reshape(-1)
    a = np.asarray(actual, dtype=np.float64).reshape(-1)
    if p.shape != a.shape:
        raise InvalidInputError(f"predicted and actual differ in length: {p.size} vs {a.size}")
    if p.size == 0:
        return float("nan"), float("nan")
    mae = float(np.abs(p - a).mean())
    if p.size < 2 or p.std() == 0 or a.std() == 0:
        return mae, float("nan")
    return mae, float(np.corrcoef(p, a)[0, 1])


def reliability_bins(
    predicted: Sequence[float] | np.ndarray, actual: Sequence[float] | np.ndarray, bins: int = 10
) -> list[tuple[float, float, int, float, float]]:
    """The reliability diagram: predictions in ``bins`` equal bins over [0, 1] (values outside are
    clipped into the end bins); per bin (low, high, count, mean predicted, mean actual)."""
    p = np.asarray(predicted, dtype=np.float64).reshape(-1)
    a = np.asarray(actual, dtype=np.float64).reshape(-1)
    index = np.clip((p * bins).astype(np.int64), 0, bins - 1)
    out = []
    for b in range(bins):
        sel = index == b
        n = int(sel.sum())
        out.append(
            (
                b / bins,
                (b + 1) / bins,
                n,
                float(p[sel].mean()) if n else float("nan"),
                float(a[sel].mean()) if n else float("nan"),
            )
        )
    return out


def _rle_bytes(rle: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise InvalidInputError("expected a COCO RLE dict with 'size' and 'counts'")
    counts = rle["counts"]
    if isinstance(counts, list):
        from pycocotools import mask as mask_utils

        h, w = rle["size"]
        return mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": counts}
