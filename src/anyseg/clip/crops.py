"""Crops around masks for CLIP, as SAM's text training makes them (Kirillov et al. 2023, D.5).

The mask's box is enlarged by a factor (random in [1, 2] for training), made square with side
``factor * max(w, h)`` around the box centre (so the object keeps its aspect ratio), zero-padded
where the square leaves the image, and resized to the CLIP input size; with probability 0.5 the
pixels outside the mask are zeroed. The crop's mask comes along, for masked attention
(:func:`anyseg.clip.model.patch_mask`).

Frames: boxes are XYXY in image pixels (floats, the right/bottom edge exclusive); crops are RGB
uint8 (S, S, 3) and masks bool (S, S).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from anyseg.clip.config import OPENAI_MEAN, OPENAI_STD
from anyseg.errors import InvalidInputError


@dataclass(frozen=True, eq=False)
class MaskCrop:
    """A square crop around a mask.

    Attributes:
        image: RGB uint8 (S, S, 3); zero where the square leaves the image (and outside the mask
            when the background was zeroed).
        mask: bool (S, S), the mask in the crop.
        box_xyxy: the square in image pixels (x0, y0, x1, y1), x1 - x0 == y1 - y0.
    """

    image: np.ndarray
    mask: np.ndarray
    box_xyxy: tuple[int, int, int, int]


def mask_box_xyxy(mask: np.ndarray) -> tuple[int, int, int, int]:
    """The tight box (x0, y0, x1, y1) of a bool (H, W) mask, edges exclusive."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if not len(rows):
        raise InvalidInputError("the mask is empty: no crop around it")
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def square_box(box_xyxy: Sequence[float], scale: float) -> tuple[int, int, int, int]:
    """The square of side ``scale * max(w, h)`` (at least 1 px) centred on a box, in whole
    pixels."""
    x0, y0, x1, y1 = (float(v) for v in box_xyxy)
    side = max(1, round(scale * max(x1 - x0, y1 - y0)))
    left = math.floor((x0 + x1) / 2 - side / 2 + 0.5)
    top = math.floor((y0 + y1) / 2 - side / 2 + 0.5)
    return left, top, left + side, top + side


def mask_crop(
    image: np.ndarray,
    mask: np.ndarray,
    size: int,
    *,
    scale: float = 1.5,
    zero_background: bool = False,
    mask_offset_xy: tuple[int, int] = (0, 0),
    box_xyxy: Sequence[float] | None = None,
) -> MaskCrop:
    """The crop of ``image`` around ``mask`` (module docstring), resized to ``size``.

    Args:
        image: RGB uint8 (H, W, 3).
        mask: bool (h, w): the whole (H, W) mask, or the part of it inside its box placed at
            ``mask_offset_xy`` (saves decoding full masks of large images).
        size: crop side in pixels (the CLIP input size).
        scale: box enlargement factor (the paper draws it from [1, 2]).
        zero_background: zero the pixels outside the mask.
        mask_offset_xy: where ``mask[0, 0]`` lies in the image.
        box_xyxy: the mask's box if known (else computed).
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise InvalidInputError(
            f"expected an RGB uint8 image (H, W, 3), got {image.dtype} {image.shape}"
        )
    if not scale > 0:
        raise InvalidInputError(f"scale must be > 0, got {scale}")
    ox, oy = mask_offset_xy
    if box_xyxy is None:
        bx0, by0, bx1, by1 = mask_box_xyxy(mask)
        box_xyxy = (bx0 + ox, by0 + oy, bx1 + ox, by1 + oy)
    x0, y0, x1, y1 = square_box(box_xyxy, scale)
    side = x1 - x0
    h, w = image.shape[:2]
    region = np.zeros((side, side, 3), np.uint8)
    region_mask = np.zeros((side, side), bool)
    # The part of the square inside the image, and inside the given mask array.
    ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if ix1 > ix0 and iy1 > iy0:
        region[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] = image[iy0:iy1, ix0:ix1]
    mh, mw = mask.shape
    mx0, my0, mx1, my1 = max(x0, ox), max(y0, oy), min(x1, ox + mw), min(y1, oy + mh)
    if mx1 > mx0 and my1 > my0:
        region_mask[my0 - y0 : my1 - y0, mx0 - x0 : mx1 - x0] = mask[
            my0 - oy : my1 - oy, mx0 - ox : mx1 - ox
        ]
    if zero_background:
        region[~region_mask] = 0
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    crop = cv2.resize(region, (size, size), interpolation=interp)
    cover = cv2.resize(region_mask.astype(np.float32), (size, size), interpolation=interp)
    return MaskCrop(crop, cover >= 0.5, (x0, y0, x1, y1))


def random_mask_crop(
    image: np.ndarray,
    mask: np.ndarray,
    size: int,
    rng: np.random.Generator,
    *,
    scale_range: tuple[float, float] = (1.0, 2.0),
    zero_background_prob: float = 0.5,
    mask_offset_xy: tuple[int, int] = (0, 0),
    box_xyxy: Sequence[float] | None = None,
) -> MaskCrop:
    """:func:`mask_crop` with the paper's random factor (uniform in ``scale_range``) and the
    background zeroed with probability ``zero_background_prob``."""
    lo, hi = scale_range
    if not 0 < lo <= hi or not 0.0 <= zero_background_prob <= 1.0:
        raise InvalidInputError(
            f"need 0 < scale_range[0] <= scale_range[1] and a probability in [0, 1], got "
            f"{scale_range}, {zero_background_prob}"
        )
    return mask_crop(
        image,
        mask,
        size,
        scale=float(rng.uniform(lo, hi)),
        zero_background=bool(rng.random() < zero_background_prob),
        mask_offset_xy=mask_offset_xy,
        box_xyxy=box_xyxy,
    )


def to_pixels(
    crops: np.ndarray | torch.Tensor,
    mean: Sequence[float] = OPENAI_MEAN,
    std: Sequence[float] = OPENAI_STD,
) -> torch.Tensor:
    """Normalised CLIP input (N, 3, S, S) float32 from RGB uint8 crops (N, S, S, 3)."""
    x = torch.as_tensor(crops)
    if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != torch.uint8:
        raise InvalidInputError(
            f"expected uint8 crops (N, S, S, 3), got {x.dtype} {tuple(x.shape)}"
        )
    x = x.permute(0, 3, 1, 2).float().div_(255.0)  # (N, S, S, 3) -> (N, 3, S, S)
    m = torch.tensor(mean, dtype=x.dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - m) / s
