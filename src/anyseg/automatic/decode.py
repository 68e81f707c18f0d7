"""The automatic generator's decode recipe around the shared-image decoder.

The original decodes every prompt to three low-res masks, upscales all of them to the image size
and only then filters by predicted IoU. The generator instead decodes tokens and IoUs first and
low-res masks only for the prompts that pass the IoU filter
(:mod:`anyseg.modeling.shared_decode`, the model maths); this module holds the rest of the
recipe:

- :func:`upscale_logits` brings low-res logits to the crop's size in chunks (bounded memory),
  skipping the rows/columns of the padded model input that are cropped away anyway; it is
  bit-identical to ``Sam.postprocess_masks``.
- In fast mode, :func:`low_res_stability` lets the generator drop masks that are clearly
  unstable before upscaling them (the fast arithmetic itself is the predictor's,
  :mod:`anyseg.precision`).
"""

from __future__ import annotations

import torch

from anyseg.modeling import Sam
from anyseg.modeling.shared_decode import CHUNK_BYTES
from anyseg.ops import transforms
from anyseg.ops.masks import stability_score


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
    """Low-res logits (K, 4h, 4w) -> logits at the crop's size (K, H, W), bit for bit
    ``model.postprocess_masks`` (see :func:`anyseg.ops.transforms.upscale_logits`)."""
    return transforms.upscale_logits(low_res, model.img_size, input_hw, crop_hw)


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
