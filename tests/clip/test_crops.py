"""The paper's crop around a mask: enlarged, square, zero-padded, background zeroed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anyseg.clip import mask_crop, random_mask_crop, to_pixels
from anyseg.clip.crops import mask_box_xyxy, square_box
from anyseg.errors import InvalidInputError


def _scene() -> tuple[np.ndarray, np.ndarray]:
    image = np.full((100, 120, 3), 200, np.uint8)
    mask = np.zeros((100, 120), bool)
    mask[40:60, 30:70] = True  # a 40 x 20 box
    image[mask] = (255, 0, 0)
    return image, mask


def test_square_box_keeps_the_centre_and_takes_the_long_side() -> None:
    assert square_box((30, 40, 70, 60), 1.0) == (30, 30, 70, 70)
    assert square_box((30, 40, 70, 60), 2.0) == (10, 10, 90, 90)


def test_mask_crop_geometry_and_background() -> None:
    image, mask = _scene()
    crop = mask_crop(image, mask, 32, scale=1.0)
    assert crop.image.shape == (32, 32, 3) and crop.mask.shape == (32, 32)
    assert crop.box_xyxy == (30, 30, 70, 70)
    # The 40 x 20 mask fills the middle half of the square crop's rows (aspect ratio kept).
    rows = np.flatnonzero(crop.mask.any(1))
    assert rows[0] == 8 and rows[-1] == 23 and crop.mask.all(1)[8:24].all()
    assert (crop.image[0, 0] == 200).all()  # background kept
    zeroed = mask_crop(image, mask, 32, scale=1.0, zero_background=True)
    assert (zeroed.image[~zeroed.mask] == 0).all()
    assert (zeroed.image[12:20, 4:28] == (255, 0, 0)).all()


def test_crop_past_the_border_is_zero_padded() -> None:
    image, _ = _scene()
    mask = np.zeros((100, 120), bool)
    mask[0:10, 110:120] = True  # in the top-right corner
    crop = mask_crop(image, mask, 40, scale=2.0)
    assert crop.box_xyxy == (105, -5, 125, 15)
    assert (crop.image[:, -8:] == 0).all() and (crop.image[:8] == 0).all()
    assert (crop.image[12:, :16] == 200).all()
    # A mask given within its box (offset) crops the same as the full mask.
    part = mask_crop(image, mask[0:10, 110:120], 40, scale=2.0, mask_offset_xy=(110, 0))
    assert np.array_equal(part.mask, crop.mask) and np.array_equal(part.image, crop.image)


def test_random_crop_draws_the_paper_factors() -> None:
    image, mask = _scene()
    rng = np.random.default_rng(0)
    sides, zeroed = [], 0
    for _ in range(200):
        c = random_mask_crop(image, mask, 32, rng)
        sides.append(c.box_xyxy[2] - c.box_xyxy[0])
        zeroed += int((c.image[0, 0] == 0).all())  # a background corner
    assert 40 <= min(sides) < 45 and 75 < max(sides) <= 80  # 1x..2x of the long side 40
    assert 70 < zeroed < 130  # background zeroed about half the time
    with pytest.raises(InvalidInputError):
        random_mask_crop(image, mask, 32, rng, scale_range=(2.0, 1.0))


def test_errors_and_pixels() -> None:
    image, mask = _scene()
    with pytest.raises(InvalidInputError, match="empty"):
        mask_box_xyxy(np.zeros((4, 4), bool))
    with pytest.raises(InvalidInputError, match="RGB uint8"):
        mask_crop(image.astype(np.float32), mask, 32)
    px = to_pixels(np.stack([mask_crop(image, mask, 32).image]))
    assert px.shape == (1, 3, 32, 32) and px.dtype == torch.float32
    assert torch.allclose(
        px[0, :, 0, 0],
        (200 / 255 - torch.tensor([0.4815, 0.4578, 0.4082]))
        / torch.tensor([0.2686, 0.2613, 0.2758]),
        atol=1e-3,
    )
