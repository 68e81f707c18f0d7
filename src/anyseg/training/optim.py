"""Optimizer and learning-rate schedule (SAM paper appendix A, "Training recipe").

AdamW with layer-wise lr decay for the image encoder (Clark et al. 2020; as in MAE/ViTDet
fine-tuning): the patch embedding and absolute position embedding are layer 0, block i is
layer i + 1, the neck is layer depth + 1, and a parameter of layer l gets
``lr × layer_decay ** (depth + 1 - l)``. The prompt encoder and mask decoder train at the full lr,
except the prompt encoder's text path (``prompt_encoder.text_*``) at ``lr × text_lr_scale``: a new
path learns from scratch while the rest is fine-tuned.
Biases, norm weights, position embeddings and relative-position tables get no weight decay.
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

import torch
from torch import nn

from anyseg.training.config import OptimConfig

_BLOCK = re.compile(r"^image_encoder\.blocks\.(\d+)\.")
_TEXT_PATH = ("prompt_encoder.text_mlp.", "prompt_encoder.text_embed.")


def encoder_layer_id(name: str, depth: int) -> int | None:
    """Layer index of a parameter name of ``Sam`` for layer-wise decay; None outside the
    image encoder."""
    if not name.startswith("image_encoder."):
        return None
    match = _BLOCK.match(name)
    if match:
        return int(match.group(1)) + 1
    if name.startswith(("image_encoder.patch_embed", "image_encoder.pos_embed")):
        return 0
    return depth + 1  # neck (and anything after the blocks)


def _no_weight_decay(name: str, param: torch.Tensor) -> bool:
    return (
        param.ndim <= 1 or name.endswith("pos_embed") or name.endswith(("rel_pos_h", "rel_pos_w"))
    )


def restrict_trainable(model: nn.Module, prefixes: tuple[str, ...]) -> None:
    """Freeze every parameter whose name starts with none of ``prefixes``.

    Raises:
        ValueError: a prefix that names no parameter (a typo would otherwise train nothing).
    """
    names = [name for name, _ in model.named_parameters()]
    unknown = [p for p in prefixes if not any(n.startswith(p) for n in names)]
    if unknown:
        modules = sorted({n.rsplit(".", 2)[0] for n in names})
        raise ValueError(
            f"optim.train_only: no parameter starts with {', '.join(map(repr, unknown))}; "
            f"modules with parameters include {', '.join(modules[-8:])}"
        )
    for name, param in model.named_parameters():
        if not name.startswith(prefixes):
            param.requires_grad_(False)


class GroupInfo(NamedTuple):
    """How a parameter group was formed (for logging and tests)."""

    lr_scale: float
    weight_decay: float
    names: tuple[str, ...]


def param_groups(
    model: nn.Module, cfg: OptimConfig, encoder_depth: int
) -> tuple[list[dict[str, object]], list[GroupInfo]]:
    """Parameter groups of a ``Sam`` for :class:`torch.optim.AdamW`.

    Frozen parameters (``requires_grad=False``, e.g. the encoder in frozen-encoder fine-tuning)
    are left out. Each group carries ``lr_scale``, which :func:`build_optimizer`'s scheduler
    multiplies into the scheduled lr.

    Returns:
        (groups for the optimizer, a description of each group in the same order).
    """
    buckets: dict[tuple[float, float], list[tuple[str, nn.Parameter]]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        layer = encoder_layer_id(name, encoder_depth)
        scale = 1.0 if layer is None else cfg.layer_decay ** (encoder_depth + 1 - layer)
        if name.startswith(_TEXT_PATH):
            scale = cfg.text_lr_scale
        wd = 0.0 if _no_weight_decay(name, param) else cfg.weight_decay
        buckets.setdefault((scale, wd), []).append((name, param))
    groups: list[dict[str, object]] = []
    infos: list[GroupInfo] = []
    for (scale, wd), members in sorted(buckets.items(), key=lambda kv: (-kv[0][0], -kv[0][1])):
        groups.append(
            {
                "params": [p for _, p in members],
                "lr": cfg.lr * scale,
                "lr_scale": scale,
                "weight_decay": wd,
            }
        )
        infos.append(GroupInfo(scale, wd, tuple(n for n, _ in members)))
    return groups, infos


def lr_factor(step: int, total_steps: int, cfg: OptimConfig) -> float:
    """Multiplier of the peak lr at optimizer step ``step`` (0-based): linear warmup from
    1/warmup to 1 over ``warmup_steps``, then × ``decay_factor`` at each of ``decay_fractions``
    of ``total_steps``."""
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    factor = 1.0
    for fraction in cfg.decay_fractions:
        if step >= math.floor(fraction * total_steps):
            factor *= cfg.decay_factor
    return factor


def build_optimizer(
    model: nn.Module, cfg: OptimConfig, encoder_depth: int, total_steps: int
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over :func:`param_groups` and a per-step LambdaLR applying :func:`lr_factor`."""
    groups, _ = param_groups(model, cfg, encoder_depth)
    if not groups:
        raise ValueError("no trainable parameters (is everything frozen?)")
    optimizer = torch.optim.AdamW(
        groups,  # type: ignore[arg-type]
        lr=cfg.lr,
        betas=(cfg.beta1, cfg.beta2),
        eps=cfg.eps,
        weight_decay=cfg.weight_decay,
    )
    # LambdaLR multiplies each group's *initial* lr (already scaled per layer) by the factor.
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, cfg)
    )
    return optimizer, scheduler
