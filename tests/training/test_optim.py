"""Layer-wise lr decay groups and the warmup + step-decay schedule."""

from __future__ import annotations

import pytest
import torch

from anyseg.config import PRESETS
from anyseg.modeling import build_sam
from anyseg.training.config import OptimConfig
from anyseg.training.optim import (
    build_optimizer,
    encoder_layer_id,
    lr_factor,
    param_groups,
    restrict_trainable,
)


def test_encoder_layer_ids() -> None:
    assert encoder_layer_id("image_encoder.patch_embed.proj.weight", 4) == 0
    assert encoder_layer_id("image_encoder.pos_embed", 4) == 0
    assert encoder_layer_id("image_encoder.blocks.0.attn.qkv.weight", 4) == 1
    assert encoder_layer_id("image_encoder.blocks.3.mlp.lin1.bias", 4) == 4
    assert encoder_layer_id("image_encoder.neck.0.weight", 4) == 5
    assert encoder_layer_id("mask_decoder.iou_token.weight", 4) is None


def test_param_groups_scale_lr_by_depth_and_skip_decay_for_norms() -> None:
    model = build_sam(PRESETS["test"])
    depth = model.config.image_encoder.depth
    cfg = OptimConfig(lr=1e-3, layer_decay=0.5, weight_decay=0.1)
    groups, infos = param_groups(model, cfg, depth)
    by_name = {n: info for info in infos for n in info.names}
    assert by_name["image_encoder.patch_embed.proj.weight"].lr_scale == pytest.approx(0.5**3)
    assert by_name["image_encoder.blocks.0.attn.qkv.weight"].lr_scale == pytest.approx(0.5**2)
    assert by_name["image_encoder.blocks.1.attn.qkv.weight"].lr_scale == pytest.approx(0.5)
    assert by_name["image_encoder.neck.0.weight"].lr_scale == 1.0
    assert by_name["mask_decoder.iou_token.weight"].lr_scale == 1.0
    assert by_name["image_encoder.blocks.0.norm1.weight"].weight_decay == 0.0
    assert by_name["image_encoder.pos_embed"].weight_decay == 0.0
    assert by_name["image_encoder.blocks.1.attn.rel_pos_h"].weight_decay == 0.0
    assert by_name["image_encoder.blocks.1.attn.qkv.weight"].weight_decay == 0.1
    n_params = sum(1 for p in model.parameters() if p.requires_grad)
    assert sum(len(g["params"]) for g in groups) == n_params  # type: ignore[arg-type]
    for g in groups:
        assert g["lr"] == pytest.approx(1e-3 * g["lr_scale"])  # type: ignore[operator]


def test_frozen_encoder_params_are_left_out() -> None:
    model = build_sam(PRESETS["test"])
    model.image_encoder.requires_grad_(False)
    _, infos = param_groups(model, OptimConfig(), model.config.image_encoder.depth)
    names = [n for info in infos for n in info.names]
    assert names and not any(n.startswith("image_encoder.") for n in names)


def test_train_only_keeps_the_named_modules_and_names_a_typo() -> None:
    model = build_sam(PRESETS["test"])
    restrict_trainable(model, ("mask_decoder.iou_prediction_head", "prompt_encoder.point_"))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(
        n.startswith(("mask_decoder.iou_prediction_head.", "prompt_encoder.point_embeddings."))
        for n in trainable
    )
    assert any(n.startswith("prompt_encoder.point_embeddings.") for n in trainable)
    _, infos = param_groups(model, OptimConfig(), model.config.image_encoder.depth)
    assert {n for info in infos for n in info.names} == trainable
    with pytest.raises(ValueError, match=r"mask_decoder\.iou_head"):
        restrict_trainable(build_sam(PRESETS["test"]), ("mask_decoder.iou_head",))


def test_lr_schedule_warmup_then_step_decay() -> None:
    cfg = OptimConfig(warmup_steps=250, decay_fractions=(60000 / 90000, 86666 / 90000))
    assert lr_factor(0, 90000, cfg) == pytest.approx(1 / 250)
    assert lr_factor(124, 90000, cfg) == pytest.approx(0.5)
    assert lr_factor(249, 90000, cfg) == 1.0
    assert lr_factor(59999, 90000, cfg) == 1.0
    assert lr_factor(60000, 90000, cfg) == pytest.approx(0.1)
    assert lr_factor(86665, 90000, cfg) == pytest.approx(0.1)
    assert lr_factor(86666, 90000, cfg) == pytest.approx(0.01)


def test_optimizer_applies_schedule_to_every_group() -> None:
    model = build_sam(PRESETS["test"])
    cfg = OptimConfig(lr=1e-2, layer_decay=0.5, warmup_steps=2, decay_fractions=(0.5,))
    opt, sched = build_optimizer(model, cfg, model.config.image_encoder.depth, total_steps=10)
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.defaults["betas"] == (0.9, 0.999)
    lrs = []
    for _ in range(6):
        lrs.append({g["lr_scale"]: g["lr"] for g in opt.param_groups})
        opt.step()
        sched.step()
    assert lrs[0][1.0] == pytest.approx(5e-3) and lrs[1][1.0] == pytest.approx(1e-2)
    assert lrs[5][1.0] == pytest.approx(1e-3)
    assert lrs[5][0.25] == pytest.approx(0.25e-3)


def test_prompt_localizing_init_is_selectable_from_the_config() -> None:
    from anyseg.training.config import config_from_dict
    from anyseg.training.state import build_training_model

    cfg = config_from_dict({"model": {"preset": "test", "init": "prompt_localizing"}})
    attn = build_training_model(cfg).mask_decoder.transformer.final_attn_token_to_image
    assert torch.equal(attn.q_proj.weight, attn.k_proj.weight)
    plain = build_training_model(config_from_dict({"model": {"preset": "test"}}))
    attn = plain.mask_decoder.transformer.final_attn_token_to_image
    assert not torch.equal(attn.q_proj.weight, attn.k_proj.weight)
