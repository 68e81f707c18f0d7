"""Prompt placement on hand-made masks with known answers (mask centre, error regions, boxes)."""

from __future__ import annotations

import numpy as np
import pytest

from anyseg.errors import InvalidInputError
from anyseg.evaluation.prompts import (
    ClickPoint,
    boundary_distance,
    center_point,
    next_click,
    random_point,
    region_center,
    tight_box,
)


def _rect(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def _slow_boundary_distance(region: np.ndarray) -> np.ndarray:
    """Brute force: Euclidean distance to the nearest non-region pixel, image border outside."""
    padded = np.pad(region, 1)
    bys, bxs = np.nonzero(~padded)
    out = np.zeros(region.shape)
    for y, x in zip(*np.nonzero(region), strict=True):
        out[y, x] = np.sqrt(((bys - (y + 1)) ** 2 + (bxs - (x + 1)) ** 2).min())
    return out


def test_boundary_distance_is_exact_euclidean() -> None:
    rng = np.random.default_rng(1)
    for _ in range(3):
        region = rng.random((15, 18)) > 0.25
        np.testing.assert_allclose(
            boundary_distance(region), _slow_boundary_distance(region), atol=1e-4
        )


def test_center_of_rectangle() -> None:
    # Rows 4..8, columns 6..12: depth 3 on row 6 for columns 8, 9, 10; the tie goes to the middle.
    mask = _rect(20, 20, 4, 9, 6, 13)
    assert center_point(mask) == ClickPoint(x=9, y=6, label=1, depth=3.0)


def test_center_of_rectangle_touching_the_border() -> None:
    # The image border counts as boundary: the centre of a corner square is its own centre.
    mask = _rect(10, 10, 0, 5, 0, 5)
    assert center_point(mask) == ClickPoint(x=2, y=2, label=1, depth=3.0)


def test_center_of_even_rectangle_is_deterministic() -> None:
    # Rows 2..5, columns 2..7: 8 pixels at depth 2 (rows 3-4, columns 3-6); the 4 nearest their
    # mean (3.5, 4.5) tie again and the first in row-major order wins.
    mask = _rect(10, 10, 2, 6, 2, 8)
    assert center_point(mask) == ClickPoint(x=4, y=3, label=1, depth=2.0)


def test_center_of_l_shape_is_in_the_corner_not_at_the_centroid() -> None:
    # Two 7-pixel-thick arms: columns 5..11 (rows 5..34) and rows 28..34 (columns 5..34). The
    # centroid (x 14.5, y 24.5) lies in the empty notch. Along the corner's diagonal
    # (y, x) = (27 + t, 12 - t) the distances are 8 - t to the left/bottom background and t*sqrt(2)
    # to the notch corner (27, 12): the best integer is t = 3, pixel (x 9, y 30), depth sqrt(18).
    mask = np.zeros((40, 40), dtype=bool)
    mask[5:35, 5:12] = True
    mask[28:35, 5:35] = True
    ys, xs = np.nonzero(mask)
    assert not mask[int(ys.mean()), int(xs.mean())]
    click = center_point(mask)
    assert (click.x, click.y, click.label) == (9, 30, 1)
    assert click.depth == pytest.approx(np.sqrt(18), abs=1e-5)
    assert click.depth == pytest.approx(_slow_boundary_distance(mask).max(), abs=1e-5)


def test_empty_mask_is_an_error() -> None:
    with pytest.raises(InvalidInputError, match="non-empty"):
        center_point(np.zeros((5, 5), bool))
    with pytest.raises(InvalidInputError, match="non-empty"):
        tight_box(np.zeros((5, 5), bool))
    with pytest.raises(InvalidInputError, match=r"2-D"):
        center_point(np.zeros((2, 5, 5), bool))
    assert region_center(np.zeros((4, 4), bool)) is None


def test_next_click_false_negative_is_positive() -> None:
    gt = _rect(20, 20, 5, 15, 5, 15)
    pred = _rect(20, 20, 5, 15, 10, 15)  # the left half (columns 5..9) is missed
    # Missed part: 10 rows x 5 columns -> depth 3 at column 7, rows 7..12; tie -> row 9.
    assert next_click(pred, gt) == ClickPoint(x=7, y=9, label=1, depth=3.0)


def test_next_click_false_positive_is_negative() -> None:
    gt = _rect(20, 20, 5, 15, 5, 15)
    pred = gt | _rect(20, 20, 16, 19, 0, 20)  # a 3-row spill along the bottom
    # Spill rows 16..18 -> depth 2 on row 17 for columns 1..18; tie -> column 9.
    assert next_click(pred, gt) == ClickPoint(x=9, y=17, label=0, depth=2.0)


def test_next_click_picks_the_deeper_error() -> None:
    gt = _rect(20, 20, 5, 15, 5, 15)
    pred = _rect(20, 20, 5, 15, 10, 15) | _rect(20, 20, 16, 19, 0, 20)
    # Missed half (depth 3) beats the spill (depth 2).
    assert next_click(pred, gt) == ClickPoint(x=7, y=9, label=1, depth=3.0)
    # A thicker spill (rows 15..19, depth 3 against the image border) ties: false negatives win.
    pred_tie = _rect(20, 20, 5, 15, 10, 15) | _rect(20, 20, 15, 20, 0, 20)
    assert next_click(pred_tie, gt).label == 1
    # A spill 7 rows deep wins.
    gt_small = _rect(20, 20, 0, 4, 0, 4)
    pred_big = _rect(20, 20, 0, 4, 1, 4) | _rect(20, 20, 10, 17, 0, 20)
    click = next_click(pred_big, gt_small)
    assert click is not None and click.label == 0 and click.y == 13 and click.depth == 4.0


def test_next_click_none_when_perfect() -> None:
    gt = _rect(8, 8, 1, 5, 2, 6)
    assert next_click(gt.copy(), gt) is None
    with pytest.raises(InvalidInputError, match="equal shape"):
        next_click(gt, gt[:4])


def test_tight_box_inclusive_xyxy() -> None:
    mask = _rect(20, 30, 4, 9, 6, 13)
    np.testing.assert_array_equal(tight_box(mask), [6, 4, 12, 8])
    single = np.zeros((5, 5), bool)
    single[3, 1] = True
    np.testing.assert_array_equal(tight_box(single), [1, 3, 1, 3])


def test_random_point_inside_and_seeded() -> None:
    mask = np.zeros((30, 30), dtype=bool)
    mask[2:28, 2:6] = True
    mask[18:27, 2:28] = True
    a = [random_point(mask, np.random.default_rng(7)) for _ in range(2)]
    assert a[0] == a[1]
    draws = {random_point(mask, np.random.default_rng(s))[:2] for s in range(20)}
    assert len(draws) > 10
    for x, y in draws:
        assert mask[y, x]


def test_region_center_matches_the_full_image_distance_map() -> None:
    # region_center works on the region's bounding box; the answer is the full map's maximum.
    rng = np.random.default_rng(4)
    for _ in range(5):
        region = np.zeros((40, 50), dtype=bool)
        region[8:30, 5:44] = rng.random((22, 39)) > 0.2
        x, y, depth = region_center(region)
        full = boundary_distance(region)
        assert depth == pytest.approx(float(full.max()), abs=1e-6)
        assert full[y, x] == pytest.approx(depth, abs=1e-6)
