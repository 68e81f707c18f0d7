"""Box ops against slow, obvious references (NMS: a transcription of torchvision's kernel)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anyseg.errors import InvalidInputError
from anyseg.ops.boxes import (
    batched_nms,
    box_area,
    box_iou,
    box_xywh_to_xyxy,
    box_xyxy_to_xywh,
    is_box_near_crop_edge,
    nms,
    uncrop_boxes_xyxy,
    uncrop_masks,
    uncrop_points,
)


def slow_nms(boxes: list[list[float]], scores: list[float], thr: float) -> list[int]:
    """Greedy NMS, one pair at a time, in float32 like torchvision's CPU kernel."""
    f = np.float32
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    b = [[f(v) for v in box] for box in boxes]
    area = [(x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in b]
    suppressed = [False] * len(b)
    keep = []
    for pos, i in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(i)
        for j in order[pos + 1 :]:
            if suppressed[j]:
                continue
            w = max(f(0), min(b[i][2], b[j][2]) - max(b[i][0], b[j][0]))
            h = max(f(0), min(b[i][3], b[j][3]) - max(b[i][1], b[j][1]))
            inter = w * h
            with np.errstate(invalid="ignore"):
                iou = inter / (area[i] + area[j] - inter)
            if float(iou) > thr:
                suppressed[j] = True
    return keep


def random_boxes(n: int, seed: int, integer: bool = True) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = torch.randint(0, 60, (n, 2), generator=g)
    wh = torch.randint(0, 40, (n, 2), generator=g)
    boxes = torch.cat([xy, xy + wh], dim=1)
    return boxes if integer else boxes.float() + torch.rand(n, 4, generator=g)


def test_xyxy_xywh_round_trip() -> None:
    boxes = random_boxes(20, 0)
    xywh = box_xyxy_to_xywh(boxes)
    assert torch.equal(xywh[:, :2], boxes[:, :2])
    assert torch.equal(xywh[:, 2:], boxes[:, 2:] - boxes[:, :2])
    assert torch.equal(box_xywh_to_xyxy(xywh), boxes)
    assert box_xyxy_to_xywh(torch.zeros(0, 4)).shape == (0, 4)
    with pytest.raises(InvalidInputError):
        box_xyxy_to_xywh(torch.zeros(3, 5))


def test_area_and_iou_against_reference() -> None:
    a = random_boxes(7, 1, integer=False)
    b = random_boxes(5, 2, integer=False)
    iou = box_iou(a, b)
    assert iou.shape == (7, 5)
    for i in range(7):
        for j in range(5):
            ax0, ay0, ax1, ay1 = a[i].tolist()
            bx0, by0, bx1, by1 = b[j].tolist()
            inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(
                0.0, min(ay1, by1) - max(ay0, by0)
            )
            union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
            expected = inter / union if union > 0 else float("nan")
            assert iou[i, j].item() == pytest.approx(expected, rel=1e-5, nan_ok=True)
    assert torch.equal(box_area(torch.tensor([[1, 2, 4, 7]])), torch.tensor([15]))
    assert box_iou(torch.zeros(0, 4), b).shape == (0, 5)


@pytest.mark.parametrize("thr", [0.0, 0.3, 0.5, 0.7, 1.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nms_matches_slow_reference(thr: float, seed: int) -> None:
    boxes = random_boxes(60, seed, integer=seed != 2)
    # Few distinct scores, so ties exercise the stable order.
    scores = torch.randint(0, 5, (60,), generator=torch.Generator().manual_seed(seed)).float()
    kept = nms(boxes, scores, thr)
    assert kept.dtype == torch.int64
    assert kept.tolist() == slow_nms(boxes.tolist(), scores.tolist(), thr)


def test_nms_edge_cases() -> None:
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).shape == (0,)
    # Identical boxes: only the best survives unless the threshold is >= 1.
    same = torch.tensor([[0, 0, 10, 10]] * 3, dtype=torch.float32)
    assert nms(same, torch.tensor([0.1, 0.9, 0.5]), 0.7).tolist() == [1]
    assert nms(same, torch.tensor([0.1, 0.9, 0.5]), 1.0).tolist() == [1, 2, 0]
    # Empty (zero-area) boxes give IoU 0/0 = NaN and never suppress each other.
    empty = torch.zeros(3, 4)
    assert nms(empty, torch.tensor([3.0, 2.0, 1.0]), 0.0).tolist() == [0, 1, 2]
    with pytest.raises(InvalidInputError):
        nms(same, torch.zeros(2), 0.5)


def test_nms_threshold_compared_in_float64() -> None:
    # The float32 IoU of these boxes is float32(1/3) = 0.33333334 > 1/3: torchvision compares in
    # float64 and suppresses; a float32 comparison (0.33333334 > 0.33333334) would not.
    boxes = torch.tensor([[0.0, 0.0, 3.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    scores = torch.tensor([1.0, 0.5])
    assert nms(boxes, scores, 1 / 3).tolist() == [0]
    assert nms(boxes, scores, 0.34).tolist() == [0, 1]


def test_batched_nms_categories_and_order() -> None:
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60]]).float()
    scores = torch.tensor([0.5, 0.9, 0.8, 0.7])
    cats = torch.tensor([0, 0, 1, 1])
    # Box 0 is suppressed by box 1 (same category), box 2 is not (other category).
    assert batched_nms(boxes, scores, cats, 0.5).tolist() == [1, 2, 3]
    assert batched_nms(boxes, scores, torch.zeros(4, dtype=torch.long), 0.5).tolist() == [1, 3]
    assert batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0), 0.5).shape == (0,)


@pytest.mark.parametrize("n", [50, 1500])
def test_batched_nms_single_category_equals_torchvision_order(n: int) -> None:
    """Up to 1000 boxes: nms order; above: torch's default sort of the kept set (torchvision)."""
    boxes = random_boxes(n, 3)
    scores = torch.randint(0, 4, (n,), generator=torch.Generator().manual_seed(4)).float()
    kept = batched_nms(boxes, scores, torch.zeros(n, dtype=torch.long), 0.3)
    plain = nms(boxes, scores, 0.3)
    assert sorted(kept.tolist()) == sorted(plain.tolist())
    if n <= 1000:
        assert kept.tolist() == plain.tolist()
    else:
        ascending = plain.sort().values
        assert kept.tolist() == ascending[scores[ascending].sort(descending=True)[1]].tolist()


def test_is_box_near_crop_edge() -> None:
    crop = [100, 0, 300, 200]
    image = [0, 0, 300, 400]
    boxes_in_crop = torch.tensor(
        [
            [50, 50, 150, 150],  # interior
            [0, 50, 100, 150],  # touches the crop's left edge (x=100 in the image): drop
            [50, 50, 200, 150],  # touches the right edge, which is also the image's: keep
            [50, 0, 100, 100],  # top edge, also the image's: keep
            [50, 100, 100, 185],  # within 20 px of the crop's bottom (not the image's): drop
        ]
    )
    assert is_box_near_crop_edge(boxes_in_crop, crop, image).tolist() == [
        False,
        True,
        False,
        False,
        True,
    ]
    assert is_box_near_crop_edge(torch.zeros(0, 4), crop, image).shape == (0,)


def test_uncrop() -> None:
    boxes = torch.tensor([[1, 2, 3, 4]])
    assert uncrop_boxes_xyxy(boxes, [10, 20, 50, 60]).tolist() == [[11, 22, 13, 24]]
    assert uncrop_points(torch.tensor([[1.5, 2.0]]), [10, 20, 50, 60]).tolist() == [[11.5, 22.0]]
    masks = torch.ones(2, 3, 4, dtype=torch.bool)
    full = uncrop_masks(masks, [1, 2, 5, 5], 6, 7)
    assert full.shape == (2, 6, 7)
    assert full.sum().item() == 24
    assert full[:, 2:5, 1:5].all()
    same = torch.ones(1, 6, 7, dtype=torch.bool)
    assert uncrop_masks(same, [0, 0, 7, 6], 6, 7) is same
    with pytest.raises(InvalidInputError):
        uncrop_masks(masks, [0, 0, 5, 5], 6, 7)
