"""The prompt simulator: points in the right regions with the right labels, boxes in bounds."""

from __future__ import annotations

import torch

from anyseg.training.prompts import (
    NEGATIVE,
    PADDING,
    POSITIVE,
    error_region_points,
    jitter_boxes,
    masks_to_boxes_xyxy,
    pass_schedule,
    sample_uniform_pixels,
)


def _random_masks(n: int, h: int, w: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, h, w, generator=g) < 0.3


def test_uniform_pixels_lie_in_the_region_and_cover_it() -> None:
    region = torch.zeros(1, 6, 7, dtype=torch.bool)
    region[0, 1, 2] = region[0, 4, 5] = region[0, 5, 0] = True
    seen = set()
    for u in torch.linspace(0, 0.999, 60):
        xy, found = sample_uniform_pixels(region, u[None])
        assert found.item()
        x, y = xy[0].tolist()
        assert region[0, y, x]
        seen.add((x, y))
    assert seen == {(2, 1), (5, 4), (0, 5)}
    xy, found = sample_uniform_pixels(torch.zeros(1, 3, 3, dtype=torch.bool), torch.tensor([0.5]))
    assert not found.item() and xy.tolist() == [[0, 0]]


def test_error_points_only_in_error_regions_with_right_labels() -> None:
    n, h, w = 64, 20, 24
    pred = _random_masks(n, h, w, 0)
    gt = _random_masks(n, h, w, 1)
    valid = torch.ones(n, h, w, dtype=torch.bool)
    valid[:, :, 18:] = False  # padding on the right
    gt[-1] = pred[-1]  # no error at all for the last mask
    g = torch.Generator().manual_seed(2)
    for _ in range(5):
        u = torch.rand(n, 3, generator=g)
        points, labels = error_region_points(pred, gt, valid, u)
        for i in range(n):
            x, y = (int(v) for v in points[i].tolist())
            if labels[i] == POSITIVE:
                assert gt[i, y, x] and not pred[i, y, x] and valid[i, y, x]
            elif labels[i] == NEGATIVE:
                assert pred[i, y, x] and not gt[i, y, x] and valid[i, y, x]
            else:
                assert labels[i] == PADDING
                assert not ((pred[i] ^ gt[i]) & valid[i]).any()
        assert labels[-1] == PADDING
        assert (labels[:-1] != PADDING).all()


def test_error_points_on_a_coarse_grid_fall_in_their_cell() -> None:
    pred = torch.zeros(1, 4, 4, dtype=torch.bool)
    gt = torch.zeros(1, 4, 4, dtype=torch.bool)
    gt[0, 2, 1] = True  # one false-negative cell: x in [4, 8), y in [8, 12) at stride 4
    valid = torch.ones(1, 4, 4, dtype=torch.bool)
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        points, labels = error_region_points(pred, gt, valid, torch.rand(1, 3, generator=g), 4)
        x, y = points[0].tolist()
        assert labels.item() == POSITIVE
        assert 4 <= x < 8 and 8 <= y < 12 and x == int(x) and y == int(y)


def test_boxes_are_tight_then_jittered_within_the_noise_bounds() -> None:
    masks = torch.zeros(3, 300, 300, dtype=torch.bool)
    masks[0, 10:20, 30:70] = True  # 40 wide, 10 high
    masks[1, 0:300, 0:300] = True  # whole image: big box, noise capped at 20 px
    masks[2, 100:101, 100:101] = True  # single pixel
    boxes = masks_to_boxes_xyxy(masks)
    assert boxes.tolist() == [[30, 10, 69, 19], [0, 0, 299, 299], [100, 100, 100, 100]]
    bounds = torch.tensor([[300, 300]] * 3)
    g = torch.Generator().manual_seed(0)
    offsets = []
    for _ in range(400):
        noise = torch.randn(3, 4, generator=g)
        jittered = jitter_boxes(boxes, noise, 0.1, 20.0, bounds)
        assert (jittered >= 0).all() and (jittered <= 299).all()
        assert (jittered[:, 0] <= jittered[:, 2]).all() and (jittered[:, 1] <= jittered[:, 3]).all()
        d = jittered - boxes
        # side-relative cap: std 10% of the side -> |offset| <= |noise| * 0.1 * side
        side = torch.tensor([[39.0, 9.0, 39.0, 9.0]])
        assert (d[0].abs() <= noise[0].abs() * 0.1 * side[0] + 1e-4).all()
        assert (d.abs() <= 20.0 + 1e-4).all()
        offsets.append(d[0])
    d0 = torch.stack(offsets)
    # Empirical std of the (unclipped here) offsets of box 0 is 10% of its sides.
    assert abs(d0[:, 0].std().item() - 3.9) < 0.6
    assert abs(d0[:, 1].std().item() - 0.9) < 0.15
    # The single-pixel box has no side: no noise.
    assert torch.equal(jittered[2], boxes[2])


def test_pass_schedule_places_mask_only_passes() -> None:
    g = torch.Generator().manual_seed(0)
    positions = set()
    for _ in range(200):
        s = pass_schedule(8, 2, g)
        assert len(s) == 10 and s.count(False) == 2 and s[-1] is False
        positions.add(s.index(False))
    assert positions == set(range(8))  # uniformly among the 8 sampled points
    assert pass_schedule(3, 1, g) == (True, True, True, False)
    assert pass_schedule(0, 0, g) == ()
    assert pass_schedule(0, 2, g) == (False, False)
