"""Client input checks: prompts, compressed RLE strings (vs pycocotools) and labels."""

from __future__ import annotations

import numpy as np
import pytest

from anyseg.errors import InvalidInputError
from anyseg.ops.rle import encode_mask
from anyseg.server.validation import (
    rle_counts_total,
    validate_label,
    validate_prompt,
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


def test_prompt_validation() -> None:
    p = validate_prompt([[0, 0], [10, 8]], [1, 0], [1, 1, 5, 5], (8, 10))
    assert p.points_xy == ((0.0, 0.0), (10.0, 8.0)) and p.labels == (1, 0)
    assert p.positive_points() == [[0.0, 0.0]]
    assert p.to_json() == {
        "points": [[0.0, 0.0], [10.0, 8.0]],
        "labels": [1, 0],
        "box": [1, 1, 5, 5],
    }
    bad = [
        (([[11, 0]], [1], None), "outside the 10x8"),
        (([[0, -1]], [1], None), "outside"),
        (([[0, 0]], [], None), "one label per point"),
        (([[0, 0]], [2], None), "label 0 must be"),
        (([[0, 0]], [True], None), "label 0 must be"),
        (([[0, "x"]], [1], None), "must be a number"),
        (([[0, float("nan")]], [1], None), "finite"),
        (([[0, 0, 0]], [1], None), "must be \\[x, y\\]"),
        (([], [], None), "at least one point or a box"),
        (([], [], [5, 5, 1, 1]), "x0 < x1"),
        (([], [], [0, 0, 11, 5]), "outside"),
        (([[1, 1]] * 65, [1] * 65, None), "at most 64"),
    ]
    for (points, labels, box), message in bad:
        with pytest.raises(InvalidInputError, match=message):
            validate_prompt(points, labels, box, (8, 10))


def test_labels() -> None:
    assert validate_label("  red   car ") == "red car"
    assert validate_label("   ") is None and validate_label(None) is None
    with pytest.raises(InvalidInputError):
        validate_label(3)
    with pytest.raises(InvalidInputError):
        validate_label("x" * 201)
