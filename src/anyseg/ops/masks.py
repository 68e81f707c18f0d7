"""Mask operations: stability score, tight boxes, small-region clean-up.

Masks are ``(..., H, W)`` tensors (bool for binary masks, float for logits) in pixels of the
frame they were predicted in. Boxes are XYXY with *inclusive* right/bottom pixel indices, as in
the original SAM (a one-pixel mask at (x, y) has box ``(x, y, x, y)``).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from anyseg.errors import InvalidInputError


def stability_score(logits: torch.Tensor, mask_threshold: float, offset: float) -> torch.Tensor:
    """IoU between the masks binarised at ``mask_threshold + offset`` and ``- offset`` (paper §4).

    The high-threshold mask is always inside the low-threshold one, so the IoU is the ratio of
    their pixel counts; the counts are taken from one boolean comparison at a time, never from
    float copies of the masks.

    Args:
        logits: (..., H, W) mask logits.
        mask_threshold: the model's binarisation threshold (0.0 for SAM).
        offset: how far the threshold moves up and down.

    Returns:
        (...) float32 scores in [0, 1]; NaN where the low-threshold mask is empty (as the
        original).
    """
    if logits.ndim < 2:
        raise InvalidInputError(
            f"stability_score expects (..., H, W) logits, got {tuple(logits.shape)}"
        )
    high = _count_above(logits, mask_threshold + offset)
    low = _count_above(logits, mask_threshold - offset)
    return high.float() / low.float()


def _count_above(x: torch.Tensor, threshold: float) -> torch.Tensor:
    """Number of elements > threshold over the last two dims, as int64."""
    return torch.count_nonzero(x > threshold, dim=(-2, -1))


def mask_to_box(masks: torch.Tensor) -> torch.Tensor:
    """Tight XYXY boxes (inclusive last pixel) of binary masks; ``[0, 0, 0, 0]`` for empty ones.

    Args:
        masks: (..., H, W) bool (any dtype: nonzero is foreground).

    Returns:
        (..., 4) int64 boxes ``(x0, y0, x1, y1)``.
    """
    if masks.ndim < 2:
        raise InvalidInputError(f"mask_to_box expects (..., H, W) masks, got {tuple(masks.shape)}")
    h, w = masks.shape[-2:]
    lead = masks.shape[:-2]
    if masks.numel() == 0:
        return torch.zeros(*lead, 4, dtype=torch.int64, device=masks.device)
    masks = masks.bool()
    rows = masks.any(dim=-1)  # (..., H)
    cols = masks.any(dim=-2)  # (..., W)
    # argmax returns the first maximal position: first/last True along the axis.
    y0 = rows.byte().argmax(dim=-1)
    y1 = h - 1 - rows.flip(-1).byte().argmax(dim=-1)
    x0 = cols.byte().argmax(dim=-1)
    x1 = w - 1 - cols.flip(-1).byte().argmax(dim=-1)
    boxes = torch.stack([x0, y0, x1, y1], dim=-1)
    return boxes * rows.any(dim=-1, keepdim=True)


def remove_small_regions(
    mask: np.ndarray, area_thresh: float, mode: Literal["holes", "islands"]
) -> tuple[np.ndarray, bool]:
    """Fill holes or drop islands smaller than ``area_thresh`` pixels (8-connectivity).

    ``holes`` fills background components (including ones touching the border) smaller than the
    threshold. ``islands`` removes foreground components smaller than the threshold, keeping the
    largest one when all are small.

    Args:
        mask: (H, W) bool.
        area_thresh: components with fewer pixels than this are small.
        mode: ``"holes"`` or ``"islands"``.

    Returns:
        The (H, W) bool mask and whether it changed (the input is returned as is if not).
    """
    import cv2

    if mode not in ("holes", "islands"):
        raise InvalidInputError(f"mode must be 'holes' or 'islands', got {mode!r}")
    if mask.ndim != 2:
        raise InvalidInputError(f"remove_small_regions expects an (H, W) mask, got {mask.shape}")
    fill_holes = mode == "holes"
    # Components of the background (holes mode) or of the foreground (islands mode).
    working = (mask != fill_holes).astype(np.uint8)
    n_labels, labels, stats, _ = cv2.connectedComponentsWithStats(working, connectivity=8)
    sizes = stats[1:, cv2.CC_STAT_AREA]  # label 0 is the other class
    small = np.flatnonzero(sizes < area_thresh) + 1
    if small.size == 0:
        return mask, False
    if fill_holes:
        # Foreground = the old foreground (label 0) plus the small background components.
        fill = np.concatenate([[0], small])
    else:
        # Foreground = the big foreground components; the largest if none is big.
        fill = np.setdiff1d(np.arange(1, n_labels), small)
        if fill.size == 0:
            fill = np.array([int(np.argmax(sizes)) + 1])
    lut = np.zeros(n_labels, dtype=bool)
    lut[fill] = True
    return lut[labels], True
