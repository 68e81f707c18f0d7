"""RLE round trips and byte-identity with pycocotools."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from anyseg.errors import InvalidInputError
from anyseg.ops.rle import (
    decode_rle,
    encode_mask,
    masks_to_uncompressed_rle,
    uncompressed_rle_area,
    uncompressed_rle_to_mask,
    uncompressed_to_coco_rle,
)


def slow_uncompressed(mask: np.ndarray) -> list[int]:
    counts, value, run = [], False, 0
    for pixel in mask.T.reshape(-1):
        if bool(pixel) != value:
            counts.append(run)
            value, run = not value, 0
        run += 1
    counts.append(run)
    return counts


def sample_masks() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    masks = torch.rand(6, 23, 31, generator=g) > 0.5
    masks[1] = False  # empty
    masks[2] = True  # full: first run of zeros has length 0
    masks[3] = torch.rand(23, 31, generator=g) > 0.98  # sparse
    masks[4] = False
    masks[4, 5:20, 3:9] = True  # a block
    masks[5, 0, 0] = True  # starts with foreground
    return masks


def test_uncompressed_matches_slow_reference_and_round_trips() -> None:
    masks = sample_masks()
    rles = masks_to_uncompressed_rle(masks)
    assert len(rles) == 6
    for mask, rle in zip(masks.numpy(), rles, strict=True):
        assert rle["size"] == [23, 31]
        assert rle["counts"] == slow_uncompressed(mask)
        assert np.array_equal(uncompressed_rle_to_mask(rle), mask)
        assert uncompressed_rle_area(rle) == int(mask.sum())
    assert masks_to_uncompressed_rle(torch.zeros(0, 4, 5, dtype=torch.bool)) == []
    with pytest.raises(InvalidInputError):
        masks_to_uncompressed_rle(torch.zeros(4, 5, dtype=torch.bool))


def test_coco_string_identical_to_pycocotools() -> None:
    masks = sample_masks()
    # Large runs need several 5-bit groups, negative deltas exercise sign extension.
    big = torch.zeros(1, 700, 900, dtype=torch.bool)
    big[0, 100:650, 37:890] = True
    big[0, 300, 400] = False
    pairs = [
        *zip(masks, masks_to_uncompressed_rle(masks), strict=True),
        (big[0], masks_to_uncompressed_rle(big)[0]),
    ]
    for mask, rle in pairs:
        m = mask.numpy()
        coco = uncompressed_to_coco_rle(rle)
        expected = mask_utils.frPyObjects(rle, *rle["size"])
        assert coco["counts"] == expected["counts"].decode("ascii")
        assert coco == encode_mask(m)
        assert np.array_equal(decode_rle(coco), m)


def test_uncompressed_rejects_bad_counts() -> None:
    with pytest.raises(InvalidInputError):
        uncompressed_rle_to_mask({"size": [2, 2], "counts": [1, 2]})
