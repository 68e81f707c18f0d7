"""Losses against hand-computed values; the min-over-3 selection; the IoU target."""

from __future__ import annotations

import math

import pytest
import torch

from anyseg.training.config import LossConfig
from anyseg.training.losses import dice_loss, mask_iou, sam_mask_loss, sigmoid_focal_loss


def test_focal_loss_matches_hand_computation() -> None:
    # One 1x2 mask: pixel 0 logit 0 with target 1, pixel 1 logit ln(3) with target 0.
    logits = torch.tensor([[[0.0, math.log(3.0)]]])
    targets = torch.tensor([[[1.0, 0.0]]])
    # pixel 0: p = 0.5, ce = ln 2, (1 - p_t)^2 = 0.25, alpha_t = 0.25
    # pixel 1: p = 0.75, p_t = 0.25, ce = -ln(0.25) = ln 4, (0.75)^2, alpha_t = 0.75
    expected = (0.25 * 0.25 * math.log(2) + 0.75 * 0.5625 * math.log(4)) / 2
    got = sigmoid_focal_loss(logits, targets, alpha=0.25, gamma=2.0)
    assert got.shape == (1,)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_focal_loss_ignores_invalid_pixels() -> None:
    logits = torch.tensor([[[0.0, 5.0]]])
    targets = torch.tensor([[[1.0, 0.0]]])
    valid = torch.tensor([[[True, False]]])
    expected = 0.25 * 0.25 * math.log(2)  # pixel 0 alone
    assert sigmoid_focal_loss(logits, targets, valid).item() == pytest.approx(expected, rel=1e-6)


def test_dice_loss_matches_hand_computation() -> None:
    logits = torch.tensor([[[0.0, math.log(3.0)], [-math.log(3.0), 0.0]]])  # p = .5 .75 .25 .5
    targets = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])
    inter = 0.5 + 0.75
    denominator = (0.5 + 0.75 + 0.25 + 0.5) + 2.0
    expected = 1 - (2 * inter + 1) / (denominator + 1)
    assert dice_loss(logits, targets).item() == pytest.approx(expected, rel=1e-6)


def test_mask_iou_of_thresholded_prediction() -> None:
    logits = torch.tensor([[[1.0, 1.0, -1.0, 0.5]]])  # predicts pixels 0, 1, 3
    targets = torch.tensor([[[1.0, 0.0, 1.0, 1.0]]])  # gt pixels 0, 2, 3
    assert mask_iou(logits, targets).item() == pytest.approx(2 / 4)
    empty = mask_iou(torch.full((1, 2, 2), -1.0), torch.zeros(1, 2, 2))
    assert empty.item() == 1.0


def test_min_over_three_backpropagates_only_the_lowest_loss_mask() -> None:
    gt = torch.zeros(2, 8, 8)
    gt[:, 2:6, 2:6] = 1.0
    good = gt * 20 - 10  # matches gt
    bad = -good  # the opposite
    mid = torch.full((8, 8), -10.0)  # all background
    # mask 0: best is output 2; mask 1: best is output 0
    logits = torch.stack([torch.stack([bad[0], mid, good[0]]), torch.stack([good[1], bad[1], mid])])
    logits.requires_grad_(True)
    iou_pred = torch.full((2, 3), 0.5, requires_grad=True)
    cfg = LossConfig()
    out = sam_mask_loss(logits, iou_pred, gt, cfg)
    assert out.selected.tolist() == [2, 0]
    out.total.sum().backward()
    assert logits.grad is not None
    # Only the selected outputs get a mask-loss gradient.
    grad_norms = logits.grad.abs().sum(dim=(2, 3))
    assert grad_norms[0, 2] > 0 and grad_norms[1, 0] > 0
    assert grad_norms[0, 0] == 0 and grad_norms[0, 1] == 0
    assert grad_norms[1, 1] == 0 and grad_norms[1, 2] == 0
    # IoU targets: good -> 1, bad -> 0, all-background -> 0; the head is trained on all three.
    assert out.iou.tolist() == [1.0, 1.0]
    expected_mse = ((0.5 - 0.0) ** 2 + (0.5 - 0.0) ** 2 + (0.5 - 1.0) ** 2) / 3
    assert out.iou_mse[0].item() == pytest.approx(expected_mse)
    assert iou_pred.grad is not None and (iou_pred.grad != 0).all()
    # Total = 20 focal + dice + 1 iou_mse of the selected output.
    assert out.total[0].item() == pytest.approx(
        20 * out.focal[0].item() + out.dice[0].item() + expected_mse, rel=1e-5
    )


def test_iou_supervision_best_only_trains_the_selected_output() -> None:
    gt = torch.zeros(1, 4, 4)
    gt[:, :2] = 1.0
    logits = torch.stack([gt * 20 - 10, -(gt * 20 - 10), torch.full_like(gt, -10.0)], dim=1)
    iou_pred = torch.zeros(1, 3, requires_grad=True)
    out = sam_mask_loss(logits, iou_pred, gt, LossConfig(iou_supervision="best"))
    out.total.sum().backward()
    assert out.selected.item() == 0
    assert out.iou_mse.item() == pytest.approx(1.0)  # (0 - 1)^2 for the selected output
    assert iou_pred.grad is not None
    assert iou_pred.grad[0, 0] != 0 and (iou_pred.grad[0, 1:] == 0).all()


def test_single_output_has_no_selection() -> None:
    gt = torch.ones(3, 4, 4)
    logits = torch.randn(3, 1, 4, 4)
    out = sam_mask_loss(logits, torch.rand(3, 1), gt, LossConfig())
    assert out.selected.tolist() == [0, 0, 0]
    assert out.total.shape == (3,)


def test_best_match_iou_target_scores_a_mask_by_the_object_it_covers() -> None:
    """A candidate that segments another valid object of the image (the panel under an emblem
    click) gets IoU 1 as its target under "best_match", ~0 under "prompted"."""
    from dataclasses import replace

    from anyseg.training.config import LossConfig
    from anyseg.training.losses import best_match_iou, sam_mask_loss

    emblem = torch.zeros(1, 8, 8)
    emblem[0, 3:5, 3:5] = 1
    panel = torch.zeros(1, 8, 8)
    panel[0, 1:7, 1:7] = 1
    logits = torch.stack([panel[0] * 20 - 10, emblem[0] * 20 - 10])[None]  # (1, 2, 8, 8)
    alternatives = torch.stack([emblem[0], panel[0], torch.zeros(8, 8)])[None]  # (1, 3, 8, 8)
    best = best_match_iou(logits, alternatives)
    assert best.tolist() == [[1.0, 1.0]]
    iou_pred = torch.tensor([[1.0, 1.0]])
    prompted = sam_mask_loss(logits, iou_pred, emblem, LossConfig(iou_target="prompted"))
    matched = sam_mask_loss(
        logits, iou_pred, emblem, replace(LossConfig(), iou_target="best_match"), None, alternatives
    )
    assert matched.iou_mse.item() == pytest.approx(0.0)
    assert prompted.iou_mse.item() == pytest.approx((1 - 4 / 36) ** 2 / 2)
    # An empty padding mask never matches, not even an empty prediction.
    empty = torch.full((1, 1, 8, 8), -10.0)
    assert best_match_iou(empty, torch.zeros(1, 2, 8, 8)).item() == 0.0
