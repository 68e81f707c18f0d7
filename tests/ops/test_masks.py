"""Mask ops against slow, obvious references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anyseg.errors import InvalidInputError
from anyseg.ops.masks import mask_to_box, remove_small_regions, stability_score


def test_stability_score_against_reference() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 17, 23, generator=g) * 3
    score = stability_score(logits, 0.0, 1.0)
    assert score.shape == (2, 3)
    assert score.dtype == torch.float32
    for idx in np.ndindex(2, 3):
        x = logits[idx].numpy()
        expected = np.float32((x > 1.0).sum()) / np.float32((x > -1.0).sum())
        assert score[idx].item() == expected
    # Empty low-threshold mask: 0 / 0, as the original.
    assert torch.isnan(stability_score(torch.full((1, 4, 4), -5.0), 0.0, 1.0)).all()
    assert stability_score(torch.zeros(0, 4, 4), 0.0, 1.0).shape == (0,)
    with pytest.raises(InvalidInputError):
        stability_score(torch.zeros(4), 0.0, 1.0)


def slow_box(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return [0, 0, 0, 0]
    return [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]


def test_mask_to_box_against_reference() -> None:
    g = torch.Generator().manual_seed(1)
    masks = torch.rand(4, 5, 9, 13, generator=g) > 0.97
    masks[0, 0] = False  # an empty mask
    masks[0, 1] = False
    masks[0, 1, 8, 12] = True  # a single corner pixel
    boxes = mask_to_box(masks)
    assert boxes.shape == (4, 5, 4)
    assert boxes.dtype == torch.int64
    for idx in np.ndindex(4, 5):
        assert boxes[idx].tolist() == slow_box(masks[idx].numpy())
    assert mask_to_box(masks[0, 1]).tolist() == [12, 8, 12, 8]
    assert mask_to_box(torch.zeros(0, 9, 13, dtype=torch.bool)).shape == (0, 4)


def test_remove_small_regions_islands_and_holes() -> None:
    mask = np.zeros((20, 20), dtype=bool)
    mask[2:12, 2:12] = True  # a 100 px blob ...
    mask[5, 5] = False  # ... with a 1 px hole
    mask[15:17, 15:17] = True  # a 4 px island
    filled, changed = remove_small_regions(mask, 5, "holes")
    assert changed and filled[5, 5] and filled.sum() == mask.sum() + 1
    cleaned, changed = remove_small_regions(mask, 5, "islands")
    assert changed and not cleaned[15:17, 15:17].any() and cleaned.sum() == mask.sum() - 4
    same, changed = remove_small_regions(mask, 1, "islands")
    assert not changed and same is mask
    # Every island small: the largest stays.
    only, changed = remove_small_regions(mask, 1000, "islands")
    assert changed and only.sum() == 99 and not only[15, 15]
    # Diagonal neighbours are connected (8-connectivity).
    diag = np.zeros((6, 6), dtype=bool)
    diag[1, 1] = diag[2, 2] = diag[3, 3] = True
    kept, changed = remove_small_regions(diag, 3, "islands")
    assert not changed and kept.sum() == 3
    empty, changed = remove_small_regions(np.zeros((4, 4), dtype=bool), 10, "islands")
    assert not changed and not empty.any()
    with pytest.raises(InvalidInputError):
        remove_small_regions(mask, 5, "both")  # type: ignore[arg-type]
