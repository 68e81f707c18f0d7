"""Point grids and crop boxes of automatic mask generation (paper appendix B).

Grids are (N, 2) arrays of (x, y) in [0, 1], scaled to each crop's pixels at use. Crops are
XYXY boxes in image pixels (exclusive right/bottom); layer 0 is the whole image and layer i
(i >= 1) tiles the image with (2**i)**2 overlapping crops.
"""

from __future__ import annotations

import math
from itertools import product
from typing import NamedTuple

import numpy as np

from anyseg.errors import InvalidInputError


def build_point_grid(n_per_side: int) -> np.ndarray:
    """(n_per_side**2, 2) cell centres of a regular grid over [0, 1]^2, row by row (y outer)."""
    if n_per_side < 1:
        raise InvalidInputError(f"n_per_side must be >= 1, got {n_per_side}")
    half_cell = 1 / (2 * n_per_side)
    side = np.linspace(half_cell, 1 - half_cell, n_per_side)
    xs = np.broadcast_to(side[None, :], (n_per_side, n_per_side))
    ys = np.broadcast_to(side[:, None], (n_per_side, n_per_side))
    return np.stack([xs, ys], axis=-1).reshape(-1, 2)  # (n, n, 2) -> (n*n, 2)


def build_all_layer_point_grids(
    n_per_side: int, n_layers: int, scale_per_layer: int
) -> list[np.ndarray]:
    """One grid per crop layer 0..n_layers; layer i has ``int(n_per_side / scale**i)`` per side."""
    return [build_point_grid(int(n_per_side / (scale_per_layer**i))) for i in range(n_layers + 1)]


class CropBox(NamedTuple):
    """A crop in image pixels, XYXY with exclusive right/bottom, and its layer index."""

    x0: int
    y0: int
    x1: int
    y1: int
    layer: int

    @property
    def xyxy(self) -> tuple[int, int, int, int]:
        return (self.x0, self.y0, self.x1, self.y1)


def generate_crop_boxes(
    size_hw: tuple[int, int], n_layers: int, overlap_ratio: float
) -> list[CropBox]:
    """The whole image, then for each layer i = 1..n_layers a (2**i x 2**i) tiling.

    In layer i the crops overlap by ``int(overlap_ratio * short_side * 2 / 2**i)`` pixels; each
    crop has the same size ``ceil((overlap * (n - 1) + side) / n)`` (clipped at the image edge).
    Crops of a layer are listed column by column (x outer, y inner), as the original.
    """
    h, w = (int(v) for v in size_hw)
    if h < 1 or w < 1:
        raise InvalidInputError(f"image size must be positive, got {size_hw}")
    crops = [CropBox(0, 0, w, h, 0)]
    short_side = min(h, w)
    for layer in range(1, n_layers + 1):
        n = 2**layer
        overlap = int(overlap_ratio * short_side * (2 / n))
        crop_w = math.ceil((overlap * (n - 1) + w) / n)
        crop_h = math.ceil((overlap * (n - 1) + h) / n)
        x0s = [int((crop_w - overlap) * i) for i in range(n)]
        y0s = [int((crop_h - overlap) * i) for i in range(n)]
        for x0, y0 in product(x0s, y0s):
            crops.append(CropBox(x0, y0, min(x0 + crop_w, w), min(y0 + crop_h, h), layer))
    return crops
