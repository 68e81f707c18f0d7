"""The automatic generator's decode recipe around the shared-image decoder.

The original decodes every prompt to three low-res masks, upscales all of them to the image size
and only then filters by predicted IoU. The generator instead decodes tokens and IoUs first and
low-res masks only for the prompts that pass the IoU filter
(:mod:`anyseg.modeling.shared_decode`, the model maths); this module holds the rest of the
recipe:

- :func:`upscale_logits` brings low-res logits to the crop's size in chunks (bounded memory),
  skipping the rows/columns of the padded model input that are cropped away anyway; it is
  bit-identical to ``Sam.postprocess_masks``.
- Fast mode runs the encoder under bfloat16 autocast (:func:`precision`) and the decoder as a
  bfloat16 copy (:func:`bfloat16_decoder`); :func:`low_res_stability` lets the generator drop
  masks that are clearly unstable before upscaling them.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterator

import torch
from torch.nn import functional as F

from anyseg.modeling import Sam
from anyseg.modeling.mask_decoder import MaskDecoder
from anyseg.modeling.shared_decode import CHUNK_BYTES
from anyseg.ops.masks import stability_score


@contextlib.contextmanager
def precision(fast: bool, device: torch.device) -> Iterator[None]:
    """bfloat16 autocast on ``device`` when ``fast``, else plain float32."""
    if fast:
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            yield
    else:
        yield


def bfloat16_decoder(model: Sam) -> MaskDecoder:
    """A bfloat16 copy of the model's mask decoder (fast mode: about 2x less decoder time)."""
    return copy.deepcopy(model.mask_decoder).to(torch.bfloat16)


def upscale_chunk_size(model: Sam, crop_hw: tuple[int, int]) -> int:
    """How many masks :func:`upscale_logits` should take at once to stay within budget."""
    side = model.img_size
    per_mask = 4 * (side * side + crop_hw[0] * crop_hw[1])
    return max(1, CHUNK_BYTES // per_mask)


def upscale_logits(
    model: Sam,
    low_res: torch.Tensor,
    input_hw: tuple[int, int],
    crop_hw: tuple[int, int],
) -> torch.Tensor:
    """Low-res logits (K, 4h, 4w) -> logits at the crop's size (K, H, W).

    Same result, bit for bit, as ``model.postprocess_masks`` (bilinear to the padded input size,
    crop to ``input_hw``, bilinear to ``crop_hw``), but the low-res rows/columns that only feed
    the padding are not upscaled: with the scale kept at exactly 4 (input side S = 4 * 4h), the
    interpolation weights of the kept pixels are unchanged, and the kept pixels read at most one
    low-res row/column past ``ceil(input / 4)``.
    """
    s = model.img_size
    lh, lw = low_res.shape[-2:]
    factor = s // lh
    rows = min(lh, math.ceil(input_hw[0] / factor) + 1)
    cols = min(lw, math.ceil(input_hw[1] / factor) + 1)
    if factor * lh != s or factor * lw != s:  # not an integer scale: the plain recipe
        rows, cols = lh, lw
    x = low_res[:, None, :rows, :cols]  # (K, 4h, 4w) -> (K, 1, rows, cols)
    x = F.interpolate(
        x, (rows * s // lh, cols * s // lw), mode="bilinear", align_corners=False
    )  # same scale factor as upscaling (4h, 4w) to (S, S)
    x = x[..., : input_hw[0], : input_hw[1]]
    x = F.interpolate(x, tuple(crop_hw), mode="bilinear", align_corners=False)
    return x[:, 0]


def low_res_stability(
    low_res: torch.Tensor, input_hw: tuple[int, int], img_size: int, threshold: float, offset: float
) -> torch.Tensor:
    """Stability score of low-res logits (K, 4h, 4w) over the part that covers the image.

    An approximation of the full-resolution score (pixel counts at 1/16 of the area), used in
    fast mode to skip upscaling masks that are clearly unstable. Returns (K,) float32.
    """
    scale = img_size / low_res.shape[-1]
    rows = max(1, round(input_hw[0] / scale))
    cols = max(1, round(input_hw[1] / scale))
    return stability_score(low_res[:, :rows, :cols], threshold, offset)
