"""Mask and IoU-head losses (SAM paper §3 and appendix A, "Losses" and "Resolving ambiguity").

All functions take per-mask tensors and return per-mask losses, so the caller chooses how to
average (the training step averages over the masks of an image, then over images). Pixels outside
the image (the padding to the square input) are excluded with an optional ``valid`` mask.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from anyseg.training.config import LossConfig


def _masked_mean(values: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """Mean over the last two dims, over valid pixels only. (..., H, W) -> (...)"""
    if valid is None:
        return values.mean(dim=(-2, -1))
    valid = valid.to(values.dtype)
    return (values * valid).sum(dim=(-2, -1)) / valid.sum(dim=(-2, -1)).clamp(min=1.0)


def sigmoid_focal_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    valid: torch.Tensor | None = None,
    alpha: float = 0.25,
    gamma: float = 2.0,
) -> torch.Tensor:
    """Focal loss (Lin et al. 2017) per mask, averaged over (valid) pixels.

    Args:
        logits: (..., H, W) mask logits.
        targets: (..., H, W) ground truth in [0, 1] (soft values allowed), broadcastable.
        valid: optional (..., H, W) bool/0-1 weight of the pixels that count.
        alpha: weight of the positive class (1 - alpha for the negative); < 0 disables it.
        gamma: focusing exponent.

    Returns:
        (...) loss per mask.
    """
    targets = targets.to(logits.dtype)
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets.expand_as(logits), reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return _masked_mean(loss, valid)


def dice_loss(
    logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Soft dice loss per mask: ``1 - (2 Σ p·t + 1) / (Σ p + Σ t + 1)`` with p = sigmoid(logits).

    Args:
        logits: (..., H, W) mask logits.
        targets: (..., H, W) ground truth in [0, 1], broadcastable.
        valid: optional (..., H, W) weight of the pixels that count.

    Returns:
        (...) loss per mask, in [0, 1).
    """
    prob = logits.sigmoid()
    targets = targets.to(prob.dtype).expand_as(prob)
    if valid is not None:
        w = valid.to(prob.dtype)
        prob, targets = prob * w, targets * w
    numerator = 2 * (prob * targets).sum(dim=(-2, -1))
    denominator = prob.sum(dim=(-2, -1)) + targets.sum(dim=(-2, -1))
    return 1 - (numerator + 1) / (denominator + 1)


@torch.no_grad()
def best_match_iou(
    logits: torch.Tensor, masks: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """For every predicted mask, its highest IoU with any of the given masks.

    Args:
        logits: (N, K, H, W) predictions (foreground where > 0).
        masks: (N, A, H, W) masks in [0, 1] (> 0.5 is foreground); all-empty ones never match.
        valid: optional (N, H, W) pixels inside the image.

    Returns:
        (N, K) float32; 0 where no mask matches at all.
    """
    pred = (logits > 0).flatten(2).float()  # (N, K, HW)
    alt = (masks > 0.5).flatten(2).float()  # (N, A, HW)
    if valid is not None:
        v = valid.flatten(1)[:, None].float()  # (N, 1, HW)
        pred, alt = pred * v, alt * v
    inter = pred @ alt.transpose(1, 2)  # (N, K, A)
    union = pred.sum(-1)[..., None] + alt.sum(-1)[:, None, :] - inter
    iou = torch.where(union > 0, inter / union.clamp(min=1.0), torch.zeros_like(inter))
    iou = iou.masked_fill(alt.sum(-1)[:, None, :] == 0, 0.0)  # padding masks never match
    return iou.max(dim=-1).values if iou.shape[-1] else torch.zeros(pred.shape[:2])


def mask_iou(
    logits: torch.Tensor,
    targets: torch.Tensor,
    valid: torch.Tensor | None = None,
    threshold: float = 0.0,
) -> torch.Tensor:
    """IoU of the thresholded prediction (logits > threshold) with the ground truth (> 0.5).

    No gradient flows through it (it is the IoU head's regression target). Both masks empty
    counts as IoU 1.

    Args:
        logits: (..., H, W); targets: (..., H, W) in [0, 1], broadcastable; valid: (..., H, W).

    Returns:
        (...) IoU per mask, float32.
    """
    pred = logits > threshold
    gt = (targets > 0.5).expand_as(pred)
    if valid is not None:
        v = valid.bool().expand_as(pred)
        pred, gt = pred & v, gt & v
    inter = (pred & gt).sum(dim=(-2, -1)).float()
    union = (pred | gt).sum(dim=(-2, -1)).float()
    return torch.where(union > 0, inter / union.clamp(min=1.0), torch.ones_like(union))


class MaskLoss(NamedTuple):
    """Per-mask losses of one decoder pass; every field has shape (N,)."""

    total: torch.Tensor  # focal_weight·focal + dice_weight·dice + iou_weight·iou_mse
    focal: torch.Tensor  # of the selected output
    dice: torch.Tensor  # of the selected output
    iou_mse: torch.Tensor  # over all outputs or the selected one (LossConfig.iou_supervision)
    selected: torch.Tensor  # long: index of the output the mask loss back-propagates through
    iou: torch.Tensor  # true IoU of the selected output (no grad)


def sam_mask_loss(
    logits: torch.Tensor,
    iou_pred: torch.Tensor,
    targets: torch.Tensor,
    cfg: LossConfig,
    valid: torch.Tensor | None = None,
    alternatives: torch.Tensor | None = None,
) -> MaskLoss:
    """The paper's loss for one decoder pass with K = 1 or 3 outputs per mask.

    With K > 1 (ambiguity-aware output) the mask loss of each output is computed and only the
    lowest is back-propagated (min-over-K, appendix A). The IoU head regresses the IoU of the
    thresholded prediction with the ground truth (MSE, no gradient through the target) for every
    output when ``cfg.iou_supervision == "all"`` (it ranks the K masks at inference), or for the
    selected one only when "best".

    Args:
        logits: (N, K, H, W) mask logits, at the resolution of ``targets``.
        iou_pred: (N, K) predicted IoU.
        targets: (N, H, W) ground truth in [0, 1].
        cfg: loss weights and options.
        valid: optional (N, H, W) pixels inside the image (padding excluded).
        alternatives: optional (N, A, H, W) masks the IoU head's target may match instead of
            ``targets`` (``cfg.iou_target == "best_match"``: the image's other masks; empty
            padding masks never match).

    Returns:
        :class:`MaskLoss` with (N,) tensors.
    """
    logits = logits.float()
    iou_pred = iou_pred.float()
    t = targets[:, None]  # (N, H, W) -> (N, 1, H, W)
    v = valid[:, None] if valid is not None else None
    focal = sigmoid_focal_loss(logits, t, v, cfg.focal_alpha, cfg.focal_gamma)  # (N, K)
    dice = dice_loss(logits, t, v)  # (N, K)
    combined = cfg.focal_weight * focal + cfg.dice_weight * dice  # (N, K)
    selected = combined.detach().argmin(dim=1)  # (N,)
    rows = torch.arange(logits.shape[0], device=logits.device)
    iou_true = mask_iou(logits.detach(), t, v)  # (N, K)
    if cfg.iou_target == "best_match" and alternatives is not None:
        iou_true = torch.maximum(iou_true, best_match_iou(logits.detach(), alternatives, valid))
    sq_err = (iou_pred - iou_true) ** 2  # (N, K)
    iou_mse = sq_err.mean(dim=1) if cfg.iou_supervision == "all" else sq_err[rows, selected]
    total = combined[rows, selected] + cfg.iou_weight * iou_mse
    return MaskLoss(
        total=total,
        focal=focal[rows, selected],
        dice=dice[rows, selected],
        iou_mse=iou_mse,
        selected=selected,
        iou=iou_true[rows, selected],
    )
