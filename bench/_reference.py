"""Import the original SAM implementation (read-only checkout) for side-by-side benchmarks.

The original imports torchvision for two things only: PIL resizing of the input image and box
NMS. torchvision is not installable here, so :func:`import_reference` registers a minimal
stand-in module named ``torchvision`` in ``sys.modules`` of the benchmark process only, backed
by PIL bilinear resizing (what torchvision does for PIL images) and by anyseg's own NMS, which
follows torchvision's kernel exactly. Nothing is written to disk; nothing outside the current
process sees the stand-in.

The checkout is located by the environment variable ``ANYSEG_REFERENCE`` (a folder that
contains ``segment_anything/``).
"""

from __future__ import annotations

import importlib
import os
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from anyseg.ops.boxes import batched_nms, box_area


def reference_path() -> Path | None:
    """The checkout named by ``ANYSEG_REFERENCE`` if it holds ``segment_anything/``, else None."""
    root = os.environ.get("ANYSEG_REFERENCE")
    if not root or not (Path(root) / "segment_anything" / "__init__.py").is_file():
        return None
    return Path(root)


def _to_pil_image(pic: Any) -> Image.Image:
    array = np.asarray(pic)
    if array.ndim != 3 or array.dtype != np.uint8:
        raise TypeError(f"stand-in to_pil_image handles uint8 (H, W, C) arrays, got {array.shape}")
    return Image.fromarray(array)


def _resize(img: Image.Image, size: tuple[int, int] | list[int]) -> Image.Image:
    height, width = size  # torchvision takes (h, w); PIL takes (w, h)
    return img.resize((int(width), int(height)), Image.BILINEAR)


def _install_torchvision_stand_in() -> None:
    if "torchvision" in sys.modules:
        return
    root = types.ModuleType("torchvision")
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    ops = types.ModuleType("torchvision.ops")
    boxes = types.ModuleType("torchvision.ops.boxes")
    functional.resize = _resize  # type: ignore[attr-defined]
    functional.to_pil_image = _to_pil_image  # type: ignore[attr-defined]
    boxes.batched_nms = batched_nms  # type: ignore[attr-defined]
    boxes.box_area = box_area  # type: ignore[attr-defined]
    ops.boxes = boxes  # type: ignore[attr-defined]
    ops.batched_nms = batched_nms  # type: ignore[attr-defined]
    transforms.functional = functional  # type: ignore[attr-defined]
    root.transforms = transforms  # type: ignore[attr-defined]
    root.ops = ops  # type: ignore[attr-defined]
    for name, module in {
        "torchvision": root,
        "torchvision.transforms": transforms,
        "torchvision.transforms.functional": functional,
        "torchvision.ops": ops,
        "torchvision.ops.boxes": boxes,
    }.items():
        sys.modules[name] = module


def import_reference() -> types.ModuleType | None:
    """The original ``segment_anything`` package, or None when ``ANYSEG_REFERENCE`` is unset."""
    root = reference_path()
    if root is None:
        return None
    _install_torchvision_stand_in()
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return importlib.import_module("segment_anything")


def build_reference_sam(
    sam_module: types.ModuleType, preset: str | Any, state_dict_path: Path
) -> Any:
    """The original's ``Sam`` with the architecture of anyseg preset ``preset`` ("vit_b", "tiny",
    "test", ...) or of a ``SamConfig``, and the weights of ``state_dict_path`` (official layout),
    loaded strictly."""
    from functools import partial

    from anyseg.config import get_preset

    cfg = get_preset(preset) if isinstance(preset, str) else preset
    enc, pe, dec = cfg.image_encoder, cfg.prompt_encoder, cfg.mask_decoder
    m = sam_module.modeling
    grid = enc.img_size // enc.patch_size
    model = m.Sam(
        image_encoder=m.ImageEncoderViT(
            depth=enc.depth,
            embed_dim=enc.embed_dim,
            img_size=enc.img_size,
            mlp_ratio=enc.mlp_ratio,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=enc.num_heads,
            patch_size=enc.patch_size,
            qkv_bias=enc.qkv_bias,
            use_rel_pos=enc.use_rel_pos,
            global_attn_indexes=tuple(enc.global_attn_indexes),
            window_size=enc.window_size,
            out_chans=enc.out_chans,
        ),
        prompt_encoder=m.PromptEncoder(
            embed_dim=pe.embed_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(enc.img_size, enc.img_size),
            mask_in_chans=pe.mask_in_chans,
        ),
        mask_decoder=m.MaskDecoder(
            num_multimask_outputs=dec.num_multimask_outputs,
            transformer=m.TwoWayTransformer(
                depth=dec.depth,
                embedding_dim=dec.transformer_dim,
                mlp_dim=dec.mlp_dim,
                num_heads=dec.num_heads,
                attention_downsample_rate=dec.attention_downsample_rate,
            ),
            transformer_dim=dec.transformer_dim,
            iou_head_depth=dec.iou_head_depth,
            iou_head_hidden_dim=dec.iou_head_hidden_dim,
        ),
        pixel_mean=list(cfg.pixel_mean),
        pixel_std=list(cfg.pixel_std),
    )
    state = torch.load(state_dict_path, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()
