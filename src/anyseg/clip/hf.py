"""Hugging Face ``CLIPModel`` weights in OpenAI's layout.

``text_model.*`` / ``vision_model.*`` become the OpenAI names, the separate q/k/v projections of
each block are stacked into ``attn.in_proj_weight`` (rows q, k, v), and the projection Linear
layers (E, W) become OpenAI's (W, E) parameters. ``pre_layrnorm`` is spelled as in transformers.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from anyseg.errors import CheckpointError

_RENAMES: tuple[tuple[str, str], ...] = (
    ("text_model.embeddings.token_embedding.weight", "token_embedding.weight"),
    ("text_model.embeddings.position_embedding.weight", "positional_embedding"),
    ("text_model.final_layer_norm.", "ln_final."),
    ("vision_model.embeddings.class_embedding", "visual.class_embedding"),
    ("vision_model.embeddings.patch_embedding.weight", "visual.conv1.weight"),
    ("vision_model.embeddings.position_embedding.weight", "visual.positional_embedding"),
    ("vision_model.pre_layrnorm.", "visual.ln_pre."),
    ("vision_model.post_layernorm.", "visual.ln_post."),
    ("logit_scale", "logit_scale"),
)
_BLOCK = re.compile(r"^(text|vision)_model\.encoder\.layers\.(\d+)\.(.+)$")
_BLOCK_PARTS = {
    "layer_norm1.": "ln_1.",
    "layer_norm2.": "ln_2.",
    "mlp.fc1.": "mlp.c_fc.",
    "mlp.fc2.": "mlp.c_proj.",
    "self_attn.out_proj.": "attn.out_proj.",
}
_SKIP = re.compile(r"(^|\.)position_ids$")


def from_hf_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """OpenAI-layout state dict of a ``CLIPModel`` state dict (ViT image tower)."""
    out: dict[str, torch.Tensor] = {}
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    unknown = []
    for key, value in sd.items():
        if _SKIP.search(key):
            continue
        if key in ("visual_projection.weight", "text_projection.weight"):
            name = "visual.proj" if key.startswith("visual") else "text_projection"
            out[name] = value.t().contiguous()  # (E, W) -> (W, E)
            continue
        m = _BLOCK.match(key)
        if m:
            tower, index, rest = m.groups()
            prefix = f"{'visual.' if tower == 'vision' else ''}transformer.resblocks.{index}."
            qm = re.match(r"self_attn\.([qkv])_proj\.(weight|bias)$", rest)
            if qm:
                qkv.setdefault(prefix + "attn.in_proj_" + qm.group(2), {})[qm.group(1)] = value
                continue
            for old, new in _BLOCK_PARTS.items():
                if rest.startswith(old):
                    out[prefix + new + rest[len(old) :]] = value
                    break
            else:
                unknown.append(key)
            continue
        for old, new in _RENAMES:
            if key == old or (old.endswith(".") and key.startswith(old)):
                out[new + key[len(old) :]] = value
                break
        else:
            unknown.append(key)
    for name, parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise CheckpointError(f"{name}: found only the {sorted(parts)} projections")
        out[name] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)  # rows q, k, v
    if unknown:
        raise CheckpointError(
            f"Hugging Face CLIP weights with keys this loader does not know: {unknown[:6]}"
        )
    return out


def hf_config_options(path: Path) -> dict[str, Any]:
    """Head counts and activation from a ``CLIPModel`` ``config.json``."""
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
        text, vision = cfg["text_config"], cfg["vision_config"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: not a CLIPModel config.json ({exc})") from None
    acts = {text.get("hidden_act", "quick_gelu"), vision.get("hidden_act", "quick_gelu")}
    if len(acts) > 1 or not acts <= {"quick_gelu", "gelu"}:
        raise CheckpointError(f"{path}: unsupported activation(s) {sorted(acts)}")
    return {
        "heads": (
            int(vision.get("num_attention_heads", 12)),
            int(text.get("num_attention_heads", 8)),
        ),
        "activation": acts.pop(),
    }
