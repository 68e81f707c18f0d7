"""Build MobileSAM's and SAM-HQ's own reference code beside anyseg (read-only checkouts).

Used by ``scripts/make_family_fixtures.py`` (the parity fixtures in ``tests/fixtures/families``),
by ``tests/test_family_parity.py`` when ``ANYSEG_MOBILESAM_REFERENCE`` / ``ANYSEG_SAMHQ_REFERENCE``
name checkouts, and by ``bench/bench_model.py --family``.

Both packages import torchvision (image resizing, box NMS) and MobileSAM's and SAM-HQ's TinyViT
imports timm (``DropPath``, ``to_2tuple``, ``trunc_normal_``, ``register_model``). Neither is
installable beside this torch, so process-local stand-ins are registered in ``sys.modules`` of
the calling process only (torchvision's from ``_reference.py``; timm's below: stochastic depth,
a pair helper, PyTorch's own truncated-normal init and a no-op registry decorator). Nothing is
written to disk.

The checkouts: ChaoningZhang/MobileSAM (package ``mobile_sam``) and SysCV/sam-hq (package
``segment_anything``, which shadows the original's name: do not import both in one process).
"""

from __future__ import annotations

import importlib
import os
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _reference import _install_torchvision_stand_in

# Reference commits the fixtures were made with (see tests/fixtures/families/README.md).
MOBILESAM_COMMIT = "34bbbfdface3c18e5221aa7de6032d7220c6c6a1"
SAMHQ_COMMIT = "fb181f8eff6d0c01b47921ced472e8cdaa69a71d"
ENV = {"mobile_sam": "ANYSEG_MOBILESAM_REFERENCE", "sam_hq": "ANYSEG_SAMHQ_REFERENCE"}
PACKAGE = {"mobile_sam": "mobile_sam", "sam_hq": "segment_anything"}


class _DropPath(nn.Module):
    """timm's DropPath: identity in eval mode (all the references need)."""

    def __init__(self, drop_prob: float = 0.0, scale_by_keep: bool = True) -> None:
        super().__init__()
        self.drop_prob = drop_prob
        self.scale_by_keep = scale_by_keep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not self.drop_prob:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep if self.scale_by_keep else x * mask


def _to_2tuple(x: Any) -> tuple[Any, Any]:
    return tuple(x) if isinstance(x, (tuple, list)) else (x, x)  # type: ignore[return-value]


def install_timm_stand_in() -> None:
    """Register the minimal ``timm`` the TinyViT references import (process-local)."""
    if "timm" in sys.modules:
        return
    root = types.ModuleType("timm")
    models = types.ModuleType("timm.models")
    layers = types.ModuleType("timm.models.layers")
    registry = types.ModuleType("timm.models.registry")
    layers.DropPath = _DropPath  # type: ignore[attr-defined]
    layers.to_2tuple = _to_2tuple  # type: ignore[attr-defined]
    layers.trunc_normal_ = nn.init.trunc_normal_  # type: ignore[attr-defined]
    registry.register_model = lambda fn: fn  # type: ignore[attr-defined]
    models.layers = layers  # type: ignore[attr-defined]
    models.registry = registry  # type: ignore[attr-defined]
    root.models = models  # type: ignore[attr-defined]
    for name, module in {
        "timm": root,
        "timm.models": models,
        "timm.models.layers": layers,
        "timm.models.registry": registry,
    }.items():
        sys.modules[name] = module


def reference_root(repo: str, path: str | os.PathLike[str] | None = None) -> Path | None:
    """The checkout for ``repo`` ("mobile_sam" or "sam_hq"): ``path``, else the env var."""
    root = path or os.environ.get(ENV[repo])
    if not root or not (Path(root) / PACKAGE[repo] / "__init__.py").is_file():
        return None
    return Path(root)


def import_reference(repo: str, path: str | os.PathLike[str] | None = None) -> Any:
    """The reference package of ``repo``, or None when no checkout is given."""
    root = reference_root(repo, path)
    if root is None:
        return None
    _install_torchvision_stand_in()
    install_timm_stand_in()
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return importlib.import_module(PACKAGE[repo])


# ------------------------------------------------------------------------ architectures
@dataclass(frozen=True)
class TinyViTSpec:
    embed_dims: tuple[int, ...] = (64, 128, 160, 320)
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (2, 4, 5, 10)
    window_sizes: tuple[int, ...] = (7, 7, 14, 7)
    mlp_ratio: float = 4.0
    mbconv_expand_ratio: float = 4.0
    num_classes: int = 1000
    # TinyViT hard-codes a 256-wide neck; a fixture may rebuild it narrower (None: keep it).
    neck_chans: int | None = None


@dataclass(frozen=True)
class ViTSpec:
    img_size: int = 1024
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    window_size: int = 14
    global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)


@dataclass(frozen=True)
class FamilySpec:
    """One reference model: which repository builds it, its encoder, and its decoder sizes."""

    repo: str  # "mobile_sam" or "sam_hq"
    encoder: TinyViTSpec | ViTSpec
    hq: bool
    prompt_dim: int = 256
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    iou_hidden: int = 256
    extra: dict[str, Any] = field(default_factory=dict)


_SMALL_TINYVIT = TinyViTSpec(
    embed_dims=(8, 16, 24, 320),  # 320: the width at which TinyViT's last merging keeps stride 1
    depths=(1, 1, 2, 1),
    num_heads=(1, 2, 3, 10),
    window_sizes=(7, 7, 14, 7),
    mlp_ratio=0.5,
    mbconv_expand_ratio=2.0,
    num_classes=8,
    neck_chans=32,
)
_SMALL = {"prompt_dim": 32, "mask_in_chans": 8, "decoder_mlp_dim": 64, "iou_hidden": 32}

# The fixture models (small) and the released architectures (the env-var comparison).
FIXTURE_SPECS: dict[str, FamilySpec] = {
    "mobile_sam": FamilySpec("mobile_sam", _SMALL_TINYVIT, hq=False, **_SMALL),
    "sam_hq": FamilySpec(
        "sam_hq",
        ViTSpec(256, 32, 4, 2, 6, (1, 3)),
        hq=True,
        **_SMALL,
    ),
    "light_hq_sam": FamilySpec("sam_hq", _SMALL_TINYVIT, hq=True, **_SMALL),
}
RELEASED_SPECS: dict[str, FamilySpec] = {
    "mobile_sam": FamilySpec("mobile_sam", TinyViTSpec(), hq=False),
    "sam_hq": FamilySpec("sam_hq", ViTSpec(1024, 96, 4, 3, 14, (1, 3)), hq=True),  # tiny ViT
    "light_hq_sam": FamilySpec("sam_hq", TinyViTSpec(), hq=True),
}


def build_reference(module: Any, spec: FamilySpec) -> nn.Module:
    """The reference ``Sam`` for ``spec`` from the reference package ``module`` (random weights,
    train mode: call :func:`finish` after changing its weights)."""
    from functools import partial

    m = module.modeling
    enc = spec.encoder
    if isinstance(enc, TinyViTSpec):
        img_size = 1024  # TinyViT hard-codes the 64x64 embedding of a 1024 px input
        encoder = m.TinyViT(
            img_size=1024,
            in_chans=3,
            num_classes=enc.num_classes,
            embed_dims=list(enc.embed_dims),
            depths=list(enc.depths),
            num_heads=list(enc.num_heads),
            window_sizes=list(enc.window_sizes),
            mlp_ratio=enc.mlp_ratio,
            drop_rate=0.0,
            drop_path_rate=0.0,
            use_checkpoint=False,
            mbconv_expand_ratio=enc.mbconv_expand_ratio,
            local_conv_size=3,
            layer_lr_decay=0.8,
        )
        if enc.neck_chans is not None:
            norm = sys.modules[encoder.neck[1].__class__.__module__].LayerNorm2d
            c = enc.neck_chans
            encoder.neck = nn.Sequential(
                nn.Conv2d(enc.embed_dims[-1], c, kernel_size=1, bias=False),
                norm(c),
                nn.Conv2d(c, c, kernel_size=3, padding=1, bias=False),
                norm(c),
            )
        early_dim = enc.embed_dims[2]
    else:
        img_size = enc.img_size
        encoder = m.ImageEncoderViT(
            depth=enc.depth,
            embed_dim=enc.embed_dim,
            img_size=enc.img_size,
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=enc.num_heads,
            patch_size=16,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=list(enc.global_attn_indexes),
            window_size=enc.window_size,
            out_chans=spec.prompt_dim,
        )
        early_dim = enc.embed_dim
    grid = img_size // 16
    decoder_kwargs: dict[str, Any] = {
        "num_multimask_outputs": 3,
        "transformer": m.TwoWayTransformer(
            depth=spec.decoder_depth,
            embedding_dim=spec.prompt_dim,
            mlp_dim=spec.decoder_mlp_dim,
            num_heads=8,
        ),
        "transformer_dim": spec.prompt_dim,
        "iou_head_depth": 3,
        "iou_head_hidden_dim": spec.iou_hidden,
    }
    decoder = (
        m.MaskDecoderHQ(vit_dim=early_dim, **decoder_kwargs)
        if spec.hq
        else m.MaskDecoder(**decoder_kwargs)
    )
    return m.Sam(
        image_encoder=encoder,
        prompt_encoder=m.PromptEncoder(
            embed_dim=spec.prompt_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(img_size, img_size),
            mask_in_chans=spec.mask_in_chans,
        ),
        mask_decoder=decoder,
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )


@torch.no_grad()
def perturb(model: nn.Module, seed: int = 1, scale: float = 0.1) -> None:
    """As the original's fixtures: ``p += scale * randn`` for every parameter in
    ``named_parameters()`` order; then BatchNorm statistics (means shifted, variances scaled by
    ``exp(scale * randn)``) so that loading them matters; then every stored float rounded to
    float16 (so a float16 file holds the exact weights; the pixel mean/std, not stored, stay)."""
    gen = torch.Generator().manual_seed(seed)
    for _, p in model.named_parameters():
        p.add_(scale * torch.randn(p.shape, generator=gen))
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            assert module.running_mean is not None and module.running_var is not None
            module.running_mean.add_(scale * torch.randn(module.running_mean.shape, generator=gen))
            module.running_var.mul_(
                torch.exp(scale * torch.randn(module.running_var.shape, generator=gen))
            )
    for t in model.state_dict(keep_vars=True).values():  # persistent tensors only
        if t.is_floating_point():
            t.copy_(t.half().float())


def finish(model: nn.Module) -> nn.Module:
    """Eval mode. TinyViT caches its attention biases in ``eval()``, so this must come after the
    weights change (MobileSAM's README calls ``eval()`` after loading, too)."""
    return model.eval()


def saved_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The weights as the family's release stores them (``torch.save(state_dict)``), in
    float16 (exact: see :func:`perturb`)."""
    return {
        k: (v.half() if v.is_floating_point() else v).contiguous()
        for k, v in model.state_dict().items()
    }


# -------------------------------------------------------------------------------- cases
def prompts(size_hw: tuple[int, int]) -> dict[str, dict[str, Any]]:
    """The prompt cases for an image of (H, W) pixels (points and boxes in its pixels)."""
    h, w = size_hw
    return {
        "pt1_mm": {
            "point_coords": np.array([[0.55 * w, 0.4 * h]]),
            "point_labels": np.array([1]),
            "multimask_output": True,
        },
        "pt3_single": {
            "point_coords": np.array([[0.3 * w, 0.3 * h], [0.7 * w, 0.6 * h], [0.5 * w, 0.9 * h]]),
            "point_labels": np.array([1, 1, 0]),
            "multimask_output": False,
        },
        "box": {"box": np.array([0.1 * w, 0.2 * h, 0.8 * w, 0.9 * h]), "multimask_output": False},
        "box_neg": {
            "box": np.array([0.1 * w, 0.2 * h, 0.8 * w, 0.9 * h]),
            "point_coords": np.array([[0.45 * w, 0.5 * h]]),
            "point_labels": np.array([0]),
            "multimask_output": False,
        },
    }


def run_cases(predictor: Any, size_hw: tuple[int, int], hq: bool) -> dict[str, np.ndarray]:
    """Run every case on a predictor whose image is set (anyseg's or a reference's).

    Keys per case: ``<case>.masks`` (bool), ``.logits`` (float32, original size),
    ``.iou_predictions``, ``.low_res_logits``, and every input as passed (``.point_coords``,
    ``.multimask_output``, ...); ``maskin_pt2`` feeds ``pt1_mm``'s best low-res logits (rounded to
    float16) back with a second point; HQ models also run ``box_hqonly`` (the HQ mask alone).
    """
    cases = prompts(size_hw)
    if hq:
        cases["box_hqonly"] = {**cases["box"], "hq_token_only": True}
    out: dict[str, np.ndarray] = {}

    def run(name: str, kwargs: dict[str, Any]) -> None:
        for key, value in kwargs.items():  # the inputs exactly as passed
            out[f"{name}.{key}"] = np.asarray(value)
        masks, iou, low_res = predictor.predict(**kwargs)
        logits, _, _ = predictor.predict(return_logits=True, **kwargs)
        out[f"{name}.masks"] = masks
        out[f"{name}.logits"] = logits.astype(np.float32)
        out[f"{name}.iou_predictions"] = iou.astype(np.float32)
        out[f"{name}.low_res_logits"] = low_res.astype(np.float32)

    for name, kwargs in cases.items():
        run(name, kwargs)
    best = int(np.argmax(out["pt1_mm.iou_predictions"]))
    mask_input = out["pt1_mm.low_res_logits"][best][None].astype(np.float16).astype(np.float32)
    h, w = size_hw
    run(
        "maskin_pt2",
        {
            "point_coords": np.array([[0.55 * w, 0.4 * h], [0.35 * w, 0.65 * h]]),
            "point_labels": np.array([1, 1]),
            "mask_input": mask_input,
            "multimask_output": False,
        },
    )
    return out
