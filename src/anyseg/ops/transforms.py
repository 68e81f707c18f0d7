"""Resizing images, points and boxes between the original-image frame and the model frame.

The model frame is the image resized so that its long side equals the encoder input size
(1024 for the official models), rounding each side to the nearest integer; it is then
zero-padded at the bottom/right to a square (see ``Sam.preprocess``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from anyseg.ops.lanes import concat_in_lanes, lanes_available


def get_preprocess_shape(height: int, width: int, long_side: int) -> tuple[int, int]:
    """(h, w) of an image of size (height, width) resized to ``long_side`` on its long side."""
    scale = long_side * 1.0 / max(height, width)
    new_h, new_w = height * scale, width * scale
    return int(new_h + 0.5), int(new_w + 0.5)


def resize_longest_side(image: np.ndarray, long_side: int) -> np.ndarray:
    """Resize an (H, W, 3) uint8 image to the model frame with PIL's antialiased bilinear
    filter (what the original implementation does through torchvision on a PIL image)."""
    h, w = get_preprocess_shape(image.shape[0], image.shape[1], long_side)
    resized = Image.fromarray(image).resize((w, h), Image.Resampling.BILINEAR)
    return np.array(resized)  # writable copy (torch warns on read-only arrays)


def apply_coords(
    coords_xy: np.ndarray, original_size: tuple[int, int], long_side: int
) -> np.ndarray:
    """(..., 2) xy pixels of the original image -> model frame (float64)."""
    old_h, old_w = original_size
    new_h, new_w = get_preprocess_shape(old_h, old_w, long_side)
    coords = np.array(coords_xy, dtype=float, copy=True)
    coords[..., 0] = coords[..., 0] * (new_w / old_w)
    coords[..., 1] = coords[..., 1] * (new_h / old_h)
    return coords


def apply_boxes(
    boxes_xyxy: np.ndarray, original_size: tuple[int, int], long_side: int
) -> np.ndarray:
    """(B, 4) XYXY boxes of the original image -> model frame (float64)."""
    return apply_coords(np.asarray(boxes_xyxy).reshape(-1, 2, 2), original_size, long_side).reshape(
        -1, 4
    )


def apply_coords_torch(
    coords_xy: torch.Tensor, original_size: tuple[int, int], long_side: int
) -> torch.Tensor:
    """(..., 2) xy pixels of the original image -> model frame (float32)."""
    old_h, old_w = original_size
    new_h, new_w = get_preprocess_shape(old_h, old_w, long_side)
    coords = coords_xy.to(torch.float).clone()
    coords[..., 0] = coords[..., 0] * (new_w / old_w)
    coords[..., 1] = coords[..., 1] * (new_h / old_h)
    return coords


def apply_boxes_torch(
    boxes_xyxy: torch.Tensor, original_size: tuple[int, int], long_side: int
) -> torch.Tensor:
    """(B, 4) XYXY boxes of the original image -> model frame (float32)."""
    return apply_coords_torch(boxes_xyxy.reshape(-1, 2, 2), original_size, long_side).reshape(-1, 4)


def upscale_logits(
    low_res: torch.Tensor,
    long_side: int,
    input_hw: tuple[int, int],
    out_hw: tuple[int, int],
) -> torch.Tensor:
    """Low-res mask logits (..., 4h, 4w) -> logits at the original image size (..., H, W).

    Same result, bit for bit, as the original's post-processing (bilinear to the padded input
    (S, S), crop to the resized image's ``input_hw``, bilinear to ``out_hw``), but the low-res
    rows/columns that only feed the padding are not upscaled (:func:`_kept_cells`; the scale
    stays S / 4h, so the kept pixels' interpolation weights are unchanged).
    """
    lead = low_res.shape[:-2]
    lh, lw = low_res.shape[-2:]
    rows, cols = _kept_cells(lh, lw, long_side, input_hw)
    x = low_res.reshape(-1, 1, lh, lw)[..., :rows, :cols]  # (..., 4h, 4w) -> (K, 1, rows, cols)
    x = F.interpolate(
        x, (rows * long_side // lh, cols * long_side // lw), mode="bilinear", align_corners=False
    )  # the same scale factor as upscaling (4h, 4w) to (S, S)
    x = x[..., : input_hw[0], : input_hw[1]]
    x = F.interpolate(x, tuple(out_hw), mode="bilinear", align_corners=False)
    return x.reshape(*lead, *x.shape[-2:])  # (K, 1, H, W) -> (..., H, W)


# Masks upscaled at once up to which the passes are split by hand over the threads.
FEW_MASKS = 16


def upscale_logits_separable(
    low_res: torch.Tensor,
    long_side: int,
    input_hw: tuple[int, int],
    out_hw: tuple[int, int],
    above: float | None = None,
) -> torch.Tensor:
    """:func:`upscale_logits` one axis at a time: the same two resizes per axis, as 1-d linear
    passes (two taps each instead of bilinear's four, and no (S, S) intermediate: the columns
    are resized at low-res row count). Equal to it up to float32 rounding (a few 1e-6 on logits
    of ±20), not bit for bit; the predictor uses it, automatic generation keeps the bit-exact
    form (its records equal the original's). With ``above``, returns the masks ``logits >
    above`` instead of the logits.

    For a few masks each pass is split into one part per thread (:mod:`anyseg.ops.lanes`):
    lines of the first pass, output rows of the second (with the threshold).
    """
    lead = low_res.shape[:-2]
    lh, lw = low_res.shape[-2:]
    rows, cols = _kept_cells(lh, lw, long_side, input_hw)
    x = low_res.reshape(-1, lh, lw)[:, :rows, :cols]
    k = x.shape[0]
    (h, w), up_h, up_w = out_hw, rows * long_side // lh, cols * long_side // lw
    lanes = lanes_available(low_res.device) if k <= FEW_MASKS else 1
    # Rows first, on the few low-res columns: (K, rows, cols) -> (K * cols, 1, rows) -> (K, H,
    # cols); then the columns of the output rows -> (K, H, W).
    lines = x.transpose(1, 2).reshape(k * cols, 1, rows)
    y = concat_in_lanes(
        lambda start, stop: _resize_1d(lines[start:stop], up_h, input_hw[0], h),
        k * cols, lanes, like=lines, shape=(k * cols, 1, h),
    )  # fmt: skip
    by_rows = y.reshape(k, cols, h).transpose(1, 2)  # (K, H, cols)

    def second(start: int, stop: int) -> torch.Tensor:
        part = by_rows[:, start:stop].reshape(k * (stop - start), 1, cols)
        out = _resize_1d(part, up_w, input_hw[1], w).reshape(k, stop - start, w)
        return out if above is None else out > above

    dtype = torch.bool if above is not None else None
    z = concat_in_lanes(second, h, lanes, like=y, shape=(k, h, w), dim=1, dtype=dtype)
    return z.reshape(*lead, *out_hw)


def _resize_1d(x: torch.Tensor, up: int, kept: int, out: int) -> torch.Tensor:
    """(N, 1, L) -> (N, 1, up) -> the first ``kept`` -> (N, 1, out), linear, half-pixel
    centres (the per-axis form of upscale_logits' two bilinear steps)."""
    x = F.interpolate(x, up, mode="linear", align_corners=False)
    return F.interpolate(x[..., :kept], out, mode="linear", align_corners=False)


def _kept_cells(lh: int, lw: int, long_side: int, input_hw: tuple[int, int]) -> tuple[int, int]:
    """Low-res rows and columns that feed the resized image (not only its padding): with the
    scale kept at exactly S / 4h, the kept pixels read at most one cell past
    ``ceil(input / scale)``."""
    if long_side % lh or long_side % lw:  # not an integer scale: keep them all
        return lh, lw
    rows = min(lh, math.ceil(input_hw[0] / (long_side // lh)) + 1)
    cols = min(lw, math.ceil(input_hw[1] / (long_side // lw)) + 1)
    return rows, cols
