"""Encoder distillation, MobileSAM's recipe (Zhang et al. 2023, "Faster Segment Anything", §3).

MobileSAM "decouples" distillation: a small image encoder (TinyViT) is trained alone to reproduce
a teacher SAM's image embeddings (MSE, the teacher frozen), and the teacher's prompt encoder and
mask decoder are then used unchanged on the student's embeddings, since they already expect
those. A fine-tuning stage with the usual mask losses can follow (``run.steps`` of the training
loop, from the distilled weights).

:func:`distill_encoder` runs the first stage: the student's architecture is ``model`` of the
training config (e.g. a TinyViT preset with overrides), with the teacher's prompt encoder, mask
decoder and normalisation; its embedding must have the teacher's shape. It writes
``<out_dir>/distill.csv`` (step, lr, mse, seconds) and ``<out_dir>/distilled.safetensors`` (every
``distill.save_every`` steps and at the end), and returns the latter.
"""

from __future__ import annotations

import csv
import math
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch.nn import functional as F

from anyseg.checkpoint import load, save
from anyseg.data.dataset import SegmentationDataset, collate
from anyseg.errors import InvalidInputError
from anyseg.modeling import Sam, build_sam
from anyseg.training.config import TrainConfig
from anyseg.training.state import sam_config_from_spec


def student_of(teacher: Sam, cfg: TrainConfig) -> Sam:
    """The student: ``cfg.model``'s image encoder with the teacher's prompt encoder, mask
    decoder and normalisation (their weights copied), in train mode."""
    encoder = sam_config_from_spec(cfg.model, cfg.optim.drop_path_rate).image_encoder
    config = replace(teacher.config, image_encoder=encoder)
    t_enc = teacher.config.image_encoder
    ours = (encoder.img_size, encoder.embedding_size, encoder.out_chans)
    theirs = (t_enc.img_size, t_enc.embedding_size, t_enc.out_chans)
    if ours != theirs:
        raise InvalidInputError(
            f"the student's (image size, embedding side, channels) {ours} must be the teacher's "
            f"{theirs}: set model.image_encoder to match (a TinyViT's stride is 4 x 2 x 2 / 2 per "
            "kept merging, see keep_res_merges)"
        )
    student = build_sam(config)
    student.prompt_encoder.load_state_dict(teacher.prompt_encoder.state_dict())
    student.mask_decoder.load_state_dict(teacher.mask_decoder.state_dict())
    return student.train()


def _lr(step: int, total: int, base: float, warmup: int) -> float:
    """Linear warmup, then cosine decay to 0."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * progress))


def distill_encoder(
    cfg: TrainConfig,
    dataset: SegmentationDataset,
    device: torch.device,
    progress: bool = True,
) -> Path:
    """Train the student encoder on the teacher's embeddings of ``dataset``'s images.

    Args:
        cfg: the training config; ``cfg.distill`` holds the teacher and the schedule.
        dataset: the training images (their masks are not used here).
        device: where to train.
        progress: print a line every ``run.log_every`` steps.

    Returns:
        The distilled weights (``<out_dir>/distilled.safetensors``): the student encoder with
        the teacher's prompt encoder and decoder.
    """
    d = cfg.distill
    teacher = load(d.teacher, device=device).eval().requires_grad_(False)
    student = student_of(teacher.cpu(), cfg).to(device)
    teacher.to(device)
    out_dir = Path(cfg.run.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / "distilled.safetensors"
    params = [p for p in student.image_encoder.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=d.lr, weight_decay=d.weight_decay)
    gen = torch.Generator().manual_seed(cfg.run.seed)
    loader = torch.utils.data.DataLoader(
        dataset,  # type: ignore[arg-type]
        batch_size=d.images_per_step,
        shuffle=True,
        generator=gen,
        collate_fn=collate,
        num_workers=cfg.data.num_workers,
        drop_last=len(dataset) >= d.images_per_step,
    )
    batches = iter(loader)
    n_params = sum(p.numel() for p in params)
    if progress:
        print(
            f"anyseg train: distilling {d.teacher}'s image encoder into a "
            f"{student.config.image_encoder.kind} of {n_params / 1e6:.2f}M parameters, "
            f"{d.steps} steps of {d.images_per_step} images ({len(dataset)} images)",
            flush=True,
        )
    start = time.perf_counter()
    with (out_dir / "distill.csv").open("w", newline="") as log:
        writer = csv.writer(log)
        writer.writerow(["step", "lr", "mse", "seconds"])
        for step in range(d.steps):
            try:
                batch = next(batches)
            except StopIteration:  # next epoch
                batches = iter(loader)
                batch = next(batches)
            images = batch.images.to(device)
            with torch.no_grad():
                target = teacher.image_encoder(images)  # (B, C, h, w), frozen
            lr = _lr(step, d.steps, d.lr, d.warmup_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss = F.mse_loss(student.image_encoder(images), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            mse = float(loss.detach())
            if not math.isfinite(mse):
                raise RuntimeError(f"distillation diverged at step {step + 1}: mse {mse}")
            done = step + 1
            elapsed = time.perf_counter() - start
            writer.writerow([done, f"{lr:.6g}", f"{mse:.6g}", f"{elapsed:.1f}"])
            if done % cfg.run.log_every == 0 or done == d.steps:
                log.flush()
                if progress:
                    print(
                        f"distill step {done}/{d.steps}  mse {mse:.5f}  lr {lr:.2e}  "
                        f"{elapsed / done:.2f} s/step",
                        flush=True,
                    )
            if done % d.save_every == 0 or done == d.steps:
                save(student.eval(), weights)
                student.train()
    return weights
