"""Client input checks besides prompts (tests/ops/test_prompts.py): compressed RLE strings
(vs pycocotools), labels, authors and scores."""

from __future__ import annotations

import numpy as np
import pytest

from anyseg.errors import InvalidInputError
from anyseg.ops.rle import encode_mask
from anyseg.server.validation import (
    rle_counts_total,
    validate_author,
    validate_label,
    validate_score,
    validate_segmentation,
)


def test_rle_counts_total_matches_pycocotools() -> None:
    rng = np.random.default_rng(0)
    for h, w, p in ((1, 1, 0.5), (7, 13, 0.3), (64, 48, 0.02), (200, 300, 0.7)):
        mask = rng.random((h, w)) < p
        mask[h // 3 :, w // 4 : w // 2] = True  # long runs need multi-character counts
        rle = encode_mask(mask)
        assert rle_counts_total(rle["counts"]) == h * w
        assert validate_segmentation(rle, (h, w)) == rle


@pytest.mark.parametrize(
    "seg, message",
    [
        ({"size": [8, 10]}, "COCO RLE"),
        ({"size": [8, 11], "counts": "P1"}, "the image's"),
        ({"size": [8, 10], "counts": [80]}, "compressed string"),
        ({"size": [8, 10], "counts": "0"}, "covers 0 pixels"),
        ({"size": [8, 10], "counts": "o"}, "truncated"),
        ({"size": [8, 10], "counts": "\x10"}, "invalid character"),
    ],
)
def test_bad_segmentations(seg: dict, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        validate_segmentation(seg, (8, 10))


def test_labels() -> None:
    assert validate_label("  red   car ") == "red car"
    assert validate_label("   ") is None and validate_label(None) is None
    with pytest.raises(InvalidInputError):
        validate_label(3)
    with pytest.raises(InvalidInputError):
        validate_label("x" * 201)


def test_authors_and_scores() -> None:
    assert validate_author("  ann  lee ") == "ann lee" and validate_author(" ") is None
    for bad in (True, 3, "x" * 201):
        with pytest.raises(InvalidInputError):
            validate_author(bad)
    assert validate_score(None) is None and validate_score(1) == 1.0
    for bad in (True, "0.5", float("nan"), float("inf"), 10**400):
        with pytest.raises(InvalidInputError):
            validate_score(bad)
