"""Metric functions on hand-made masks with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from anyseg.errors import InvalidInputError
from anyseg.evaluation.metrics import (
    best_match_iou,
    histogram,
    iou_matrix,
    mask_iou,
    mean_or_nan,
    recall_at,
    rle_iou_matrix,
)
from anyseg.ops.rle import encode_mask


def _rect(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """Bool (h, w) with rows y0..y1-1 and columns x0..x1-1 set."""
    m = np.zeros((h, w), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def test_mask_iou_known_values() -> None:
    a = _rect(4, 4, 0, 2, 0, 2)  # 4 px
    b = _rect(4, 4, 0, 2, 1, 3)  # 4 px, 2 shared -> 2 / 6
    c = _rect(4, 4, 2, 4, 2, 4)  # disjoint from a
    pred = np.stack([a, a, a])
    gt = np.stack([a, b, c])
    np.testing.assert_array_equal(mask_iou(pred, gt), [1.0, 1 / 3, 0.0])
    assert float(mask_iou(a, b)) == pytest.approx(1 / 3, abs=0)
    # A 10x10 square against its 10x8 part: 80 / 100.
    assert float(mask_iou(_rect(20, 20, 5, 15, 5, 15), _rect(20, 20, 5, 15, 5, 13))) == 0.8


def test_mask_iou_empty_and_errors() -> None:
    empty = np.zeros((3, 3), dtype=bool)
    assert float(mask_iou(empty, empty)) == 1.0
    assert float(mask_iou(empty, _rect(3, 3, 0, 1, 0, 1))) == 0.0
    with pytest.raises(InvalidInputError, match="equal shape"):
        mask_iou(np.zeros((2, 3, 3), bool), np.zeros((2, 3, 4), bool))
    with pytest.raises(InvalidInputError, match=r"\(H, W\)"):
        mask_iou(np.zeros(5, bool), np.zeros(5, bool))


def test_iou_matrix_matches_pairwise_and_pycocotools() -> None:
    rng = np.random.default_rng(0)
    a = rng.random((4, 13, 17)) > 0.5
    b = rng.random((3, 13, 17)) > 0.6
    mat = iou_matrix(a, b)
    assert mat.shape == (4, 3)
    for i in range(4):
        for j in range(3):
            assert mat[i, j] == pytest.approx(float(mask_iou(a[i], b[j])), abs=1e-12)
    coco = rle_iou_matrix([encode_mask(m) for m in a], [encode_mask(m) for m in b])
    np.testing.assert_allclose(coco, mat, atol=1e-12)
    assert iou_matrix(a, b[:0]).shape == (4, 0)
    assert rle_iou_matrix([encode_mask(m) for m in a], []).shape == (4, 0)
    with pytest.raises(InvalidInputError, match="one size"):
        rle_iou_matrix([encode_mask(a[0])], [encode_mask(np.zeros((5, 5), bool))])


def test_recall_and_best_match() -> None:
    ious = np.array([[0.9, 0.1], [0.2, 0.6], [0.3, 0.0], [0.75, 0.74]])
    best = best_match_iou(ious)
    np.testing.assert_array_equal(best, [0.9, 0.6, 0.3, 0.75])
    # Thresholds are inclusive: 0.75 counts at 0.75.
    assert recall_at(best, (0.5, 0.75)) == {0.5: 0.75, 0.75: 0.5}
    assert recall_at(np.zeros(0), (0.5,)) == {0.5: 0.0}
    np.testing.assert_array_equal(best_match_iou(np.zeros((2, 0))), [0.0, 0.0])
    with pytest.raises(InvalidInputError, match=r"\[0, 1\]"):
        recall_at(best, (1.5,))


def test_histogram_and_mean() -> None:
    assert histogram([0.0, 0.05, 0.55, 0.95, 1.0]) == [2, 0, 0, 0, 0, 1, 0, 0, 0, 2]
    assert mean_or_nan([0.5, 1.0]) == 0.75
    assert np.isnan(mean_or_nan([]))


def test_calibration_error_hand_made_cases() -> None:
    from anyseg.evaluation.metrics import calibration_error, reliability_bins

    actual = [0.2, 0.5, 0.9, 0.4]
    assert calibration_error(actual, actual) == (0.0, pytest.approx(1.0))
    # Predicting half the real IoU (the bundled model's old habit): error = mean/2, r still 1.
    mae, r = calibration_error([a / 2 for a in actual], actual)
    assert mae == pytest.approx(sum(actual) / 8) and r == pytest.approx(1.0)
    mae, r = calibration_error([0.8, 0.5, 0.1, 0.6], actual)  # mirrored: r = -1
    assert mae == pytest.approx((0.6 + 0.0 + 0.8 + 0.2) / 4) and r == pytest.approx(-1.0)
    mae, r = calibration_error([0.5, 0.5, 0.5, 0.5], actual)  # constant prediction
    assert mae == pytest.approx((0.3 + 0.0 + 0.4 + 0.1) / 4) and np.isnan(r)
    assert all(np.isnan(v) for v in calibration_error([], []))
    with pytest.raises(InvalidInputError, match="differ in length"):
        calibration_error([0.1], [0.1, 0.2])
    bins = reliability_bins([0.05, 0.15, 0.12, 1.3, -0.2], [0.0, 0.3, 0.1, 1.0, 0.5], bins=10)
    assert [b[2] for b in bins] == [2, 2, 0, 0, 0, 0, 0, 0, 0, 1]  # outside values clipped in
    assert bins[1][3] == pytest.approx(0.135) and bins[1][4] == pytest.approx(0.2)
    assert np.isnan(bins[5][3])
