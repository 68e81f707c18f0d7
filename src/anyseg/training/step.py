"""One training step of SAM: one encoder pass per image, simulated interaction per mask.

:class:`InteractiveSam` wraps a ``Sam`` so that the whole step — image encoder, the decoder passes
of the simulated interaction (paper appendix A: 1 + 8 + 2 = 11 by default) and the losses — is a
single ``forward``; that is what ``DistributedDataParallel`` needs to synchronize gradients, and
it keeps the model code free of training logic.

Choices (the paper leaves them open):

- Loss resolution (``LossConfig.resolution``): "input" upscales the low-res logits bilinearly to
  the padded input size (as ``Sam.postprocess_masks`` does) and compares with the full-resolution
  ground truth; "low_res" averages the ground truth down to the logits' grid. The padding is
  excluded from losses, IoUs and point sampling either way.
- Prompts: masks whose first prompt is a point, a box or text (a CLIP embedding, see
  :mod:`anyseg.training.text_prompts`) go through the decoder as groups (the prompt encoder takes
  one prompt layout per call). A pass predicts three masks when its prompt is exactly one point
  or text alone (the first pass of a point- or text-started mask, and a mask-only pass right
  after it), one mask otherwise. The text token stays in every later pass of its mask.
- The mask fed to the next pass and used to sample the next point is the output with the highest
  predicted IoU (paper); it is detached, so each pass is supervised on its own and gradients do
  not flow through the chain of passes.
- The step loss is the mean over passes of each mask's loss, averaged over the masks of an image,
  then over the images (so processes with one image each average to a single process's loss).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from anyseg.data.dataset import Batch
from anyseg.modeling import Sam
from anyseg.training.config import LossConfig, PromptConfig
from anyseg.training.losses import mask_iou, sam_mask_loss
from anyseg.training.prompts import (
    PromptRandomness,
    error_region_points,
    jitter_boxes,
    masks_to_boxes_xyxy,
    sample_uniform_pixels,
)
from anyseg.training.text_prompts import TextPrompts


class StepStats(NamedTuple):
    """What one step computed. ``loss`` carries the gradient; the rest are detached scalars
    (means over the masks of the batch, or of the images for ``loss``)."""

    loss: torch.Tensor
    focal: torch.Tensor
    dice: torch.Tensor
    iou_mse: torch.Tensor
    iou_first: torch.Tensor  # IoU of the mask after the first prompt
    iou_last: torch.Tensor  # IoU of the mask after the last pass
    num_masks: torch.Tensor  # long
    # Text-first masks: their IoU after the first (text) prompt, mean (0 when none), and count.
    iou_text_first: torch.Tensor = torch.zeros(())
    num_text: torch.Tensor = torch.zeros((), dtype=torch.long)


class _Group:
    """Running prompt state of the masks sharing a prompt layout (point-, box- or
    text-started)."""

    def __init__(self, idx: torch.Tensor, is_box: bool) -> None:
        self.idx = idx  # (G,) long, rows of the batch's masks
        self.is_box = is_box
        self.points = torch.zeros(0)  # (G, n, 2) float
        self.labels = torch.zeros(0)  # (G, n) long
        self.boxes: torch.Tensor | None = None  # (G, 4)
        self.text: torch.Tensor | None = None  # (G, E) CLIP embeddings
        self.mask_input: torch.Tensor | None = None  # (G, 1, 4h, 4w) logits
        self.prev_logits = torch.zeros(0)  # (G, H', W') at the loss resolution


class InteractiveSam(nn.Module):
    """``Sam`` plus the simulated-interaction training step (see the module docstring).

    Args:
        sam: the model (its parameters are this module's, under ``sam.``).
        prompts: the prompt simulator's settings.
        loss: the loss settings.
        freeze_image_encoder: run the encoder without gradient (and in eval mode, so no drop
            path) — decoder/prompt-encoder fine-tuning.
    """

    def __init__(
        self, sam: Sam, prompts: PromptConfig, loss: LossConfig, freeze_image_encoder: bool
    ) -> None:
        super().__init__()
        self.sam = sam
        self.prompts = prompts
        self.loss_cfg = loss
        self.freeze_image_encoder = freeze_image_encoder

    def train(self, mode: bool = True) -> InteractiveSam:
        super().train(mode)
        if self.freeze_image_encoder:
            self.sam.image_encoder.eval()
        return self

    def forward(
        self,
        batch: Batch,
        schedule: tuple[bool, ...],
        embeddings: torch.Tensor | None = None,
        text: TextPrompts | None = None,
    ) -> StepStats:
        """Run one step on ``batch``.

        Args:
            batch: images (B, 3, S, S) and masks (M, S, S) on this module's device.
            schedule: for each pass after the first, whether it adds a point (True) or only
                feeds the previous mask back (False) — see ``prompts.pass_schedule``.
            embeddings: (B, C, h, w) image embeddings of a frozen encoder computed elsewhere
                (the on-disk cache); None runs the encoder.
            text: which masks start from text and their CLIP embeddings
                (:class:`~anyseg.training.text_prompts.CropTextSource`); None: none do.
        """
        sam = self.sam
        cfg_p, cfg_l = self.prompts, self.loss_cfg
        if embeddings is not None:
            if not self.freeze_image_encoder or sam.is_hq:
                raise ValueError(
                    "precomputed embeddings need freeze_image_encoder, and a model without "
                    "SAM-HQ's fusion (it reads the encoder's early features too)"
                )
            emb, early = embeddings, None
        elif self.freeze_image_encoder:
            with torch.no_grad():
                emb, early = sam.encode_features(batch.images)  # (B, C, h, w)
        else:
            emb, early = sam.encode_features(batch.images)
        hq = sam.hq_features(emb, early)  # SAM-HQ's fusion belongs to the decoder: trained
        device = emb.device
        num_images, num_masks = emb.shape[0], batch.masks.shape[0]
        if num_masks == 0:
            zero = emb.float().sum() * 0.0
            z = zero.detach()
            return StepStats(zero, z, z, z, z, z, torch.zeros((), dtype=torch.long))

        size = batch.masks.shape[-1]
        image_pe = sam.prompt_encoder.get_dense_pe()  # (1, C, h, w)
        low_side = 4 * image_pe.shape[-1]
        gt = batch.masks  # (M, S, S) bool
        img_idx = batch.mask_image_index  # (M,)
        hw = batch.input_hw[img_idx]  # (M, 2)
        ar = torch.arange(size, device=device)
        valid = (ar[None, :, None] < hw[:, 0, None, None]) & (
            ar[None, None, :] < hw[:, 1, None, None]
        )
        if cfg_l.resolution == "input":
            stride = 1
            target, target_valid = gt.float(), valid
        else:
            stride = size // low_side
            target = F.avg_pool2d(gt.float()[:, None], stride)[:, 0]  # (M, S, S) -> (M, L, L)
            target_valid = F.avg_pool2d(valid.float()[:, None], stride)[:, 0] > 0
        target_bool = target > 0.5
        # The image's sampled masks, per mask: what "best_match" IoU targets may match.
        alternatives = (
            _same_image_masks(target, img_idx, num_images)
            if cfg_l.iou_target == "best_match"
            else None
        )  # (M, A, L, L)

        # Random numbers: from each image's own generator (sample-keyed, batching-independent).
        num_later = len(schedule)
        counts = torch.bincount(img_idx, minlength=num_images).tolist()
        parts = []
        for i, n in enumerate(counts):
            gen = torch.Generator(device=device)
            gen.manual_seed(int(batch.prompt_seeds[i]))
            parts.append(PromptRandomness.draw(n, num_later, gen, device))
        rand = PromptRandomness.cat(parts)

        # First prompt: text for the text-first masks; for the others a uniform foreground
        # point or a jittered box, with equal probability.
        use_box = rand.box_choice < cfg_p.box_prob
        is_text = torch.zeros_like(use_box) if text is None else text.first.to(device)
        first_xy, _ = sample_uniform_pixels(gt, rand.first_point)
        boxes = jitter_boxes(
            masks_to_boxes_xyxy(gt),
            rand.box_noise,
            cfg_p.box_noise_fraction,
            cfg_p.box_noise_max_px,
            hw,
        )
        groups = []
        for is_box in (False, True):
            idx = torch.nonzero((use_box == is_box) & ~is_text).squeeze(1)
            if idx.numel() == 0:
                continue
            g = _Group(idx, is_box)
            if is_box:
                g.points = torch.zeros(idx.numel(), 0, 2, device=device)
                g.labels = torch.zeros(idx.numel(), 0, dtype=torch.long, device=device)
                g.boxes = boxes[idx]
            else:
                g.points = first_xy[idx].float()[:, None]  # (G, 2) -> (G, 1, 2)
                g.labels = torch.ones(idx.numel(), 1, dtype=torch.long, device=device)
            groups.append(g)
        if text is not None and bool(is_text.any()):
            idx = torch.nonzero(is_text).squeeze(1)
            g = _Group(idx, is_box=False)
            g.points = torch.zeros(idx.numel(), 0, 2, device=device)
            g.labels = torch.zeros(idx.numel(), 0, dtype=torch.long, device=device)
            g.text = text.embeddings[idx].to(device)
            groups.append(g)

        num_passes = 1 + num_later
        total = torch.zeros(num_masks, device=device)
        focal = torch.zeros(num_masks, device=device)
        dice = torch.zeros(num_masks, device=device)
        iou_mse = torch.zeros(num_masks, device=device)
        iou_first = torch.zeros(num_masks, device=device)
        iou_last = torch.zeros(num_masks, device=device)
        for t in range(num_passes):
            for g in groups:
                if t > 0 and schedule[t - 1]:
                    pts, lbl = error_region_points(
                        g.prev_logits > 0,
                        target_bool[g.idx],
                        target_valid[g.idx],
                        rand.iter_uniform[t - 1, g.idx],
                        stride,
                    )
                    g.points = torch.cat([g.points, pts[:, None]], dim=1)
                    g.labels = torch.cat([g.labels, lbl[:, None]], dim=1)
                n_points = g.points.shape[1]
                sparse, dense = sam.prompt_encoder(
                    points=(g.points, g.labels) if n_points > 0 else None,
                    boxes=g.boxes,
                    masks=g.mask_input,
                    text=g.text,
                )
                # One point alone, or text alone: ambiguous, three masks (min-over-3 loss).
                multimask = (not g.is_box) and n_points == (0 if g.text is not None else 1)
                per_image = slice(None) if num_images == 1 else img_idx[g.idx]
                low, iou_pred = sam.decode(
                    emb[per_image],
                    sparse,
                    dense,
                    multimask,
                    None if hq is None else hq[per_image],
                )  # (G, K, L, L), (G, K); K = 1 for SAM-HQ
                logits = low.float()
                if cfg_l.resolution == "input":
                    logits = F.interpolate(
                        logits, (size, size), mode="bilinear", align_corners=False
                    )  # (G, K, L, L) -> (G, K, S, S)
                out = sam_mask_loss(
                    logits,
                    iou_pred,
                    target[g.idx],
                    cfg_l,
                    target_valid[g.idx],
                    None if alternatives is None else alternatives[g.idx],
                )
                total = total.index_add(0, g.idx, out.total)
                focal = focal.index_add(0, g.idx, out.focal.detach())
                dice = dice.index_add(0, g.idx, out.dice.detach())
                iou_mse = iou_mse.index_add(0, g.idx, out.iou_mse.detach())
                # The next pass continues from the output with the highest predicted IoU.
                best = iou_pred.detach().argmax(dim=1)  # (G,)
                rows = torch.arange(best.numel(), device=device)
                g.mask_input = low.detach()[rows, best][:, None]  # (G, L, L) -> (G, 1, L, L)
                g.prev_logits = logits.detach()[rows, best]
                iou_now = mask_iou(g.prev_logits, target[g.idx], target_valid[g.idx])
                if t == 0:
                    iou_first[g.idx] = iou_now
                if t == num_passes - 1:
                    iou_last[g.idx] = iou_now

        num_text = int(is_text.sum())
        iou_text = iou_first[is_text].sum() / max(num_text, 1)
        per_mask = total / num_passes  # (M,)
        counts_t = torch.tensor(counts, device=device, dtype=per_mask.dtype)
        per_image = torch.zeros(num_images, device=device).index_add(0, img_idx, per_mask)
        has = counts_t > 0
        loss = (per_image[has] / counts_t[has]).mean()
        return StepStats(
            loss=loss,
            focal=focal.mean() / num_passes,
            dice=dice.mean() / num_passes,
            iou_mse=iou_mse.mean() / num_passes,
            iou_first=iou_first.mean(),
            iou_last=iou_last.mean(),
            num_masks=torch.tensor(num_masks),
            iou_text_first=iou_text,
            num_text=torch.tensor(num_text),
        )


def schedule_generator(seed: int, step: int, micro: int) -> torch.Generator:
    """Generator of the pass schedule of one (micro) step: the same on every process."""
    gen = torch.Generator()
    gen.manual_seed((seed * 1_000_003 + step) * 131 + micro)
    return gen


def _same_image_masks(masks: torch.Tensor, img_idx: torch.Tensor, num_images: int) -> torch.Tensor:
    """(M, H, W) masks of a batch -> (M, A, H, W): for each mask, all masks of its image
    (itself included), padded with empty masks to the largest image's count A."""
    counts = torch.bincount(img_idx, minlength=num_images)
    a = int(counts.max()) if counts.numel() else 0
    per_image = masks.new_zeros((num_images, a, *masks.shape[1:]))  # (B, A, H, W)
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(masks.shape[0], device=masks.device) - starts[img_idx]
    per_image[img_idx, slot] = masks
    return per_image[img_idx]
