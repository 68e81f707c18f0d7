"""The Hugging Face ``transformers`` ``SamModel`` layout, mapped to and from the official one.

``SamModel`` holds the same tensors as the official release under other names:
``vision_encoder.layers.N.layer_norm1`` for ``image_encoder.blocks.N.norm1``, named convolutions
for the official ``nn.Sequential`` indices (``neck.conv1`` for ``neck.0``, ``mask_embed.conv2``
for ``mask_downscaling.3``, ``upscale_conv1`` for ``output_upscaling.0``), MLPs split into
``proj_in`` / ``layers.*`` / ``proj_out``, and the random-Fourier matrix as
``shared_image_embedding.positional_embedding`` (tied to
``prompt_encoder.shared_embedding.positional_embedding``). :func:`to_official` and
:func:`from_official` rename one into the other; no tensor value changes.

Files: ``model.safetensors`` or ``pytorch_model.bin``, or a model folder holding them, or a sharded
checkpoint (``*.index.json`` with its ``weight_map``): :func:`weight_files` lists what to read.
The folder's ``config.json`` gives the decoder's head count (:func:`decoder_num_heads`), the one
number the shapes do not carry.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path

import torch

from anyseg.config import ImageEncoderConfig, SamConfig
from anyseg.errors import CheckpointError
from anyseg.io import atomic_path

HF_PREFIXES = ("vision_encoder.", "shared_image_embedding.")
_PE_OFFICIAL = "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"
_PE_HF = "shared_image_embedding.positional_embedding"
_PE_HF_TIED = "prompt_encoder.shared_embedding.positional_embedding"
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")

# (official, Hugging Face) name patterns, applied in order; the MLPs are handled apart.
_RENAMES: tuple[tuple[str, str], ...] = (
    (r"^image_encoder\.", "vision_encoder."),
    (r"^vision_encoder\.blocks\.", "vision_encoder.layers."),
    (r"^(vision_encoder\.layers\.\d+)\.norm([12])\.", r"\1.layer_norm\2."),
    (r"^vision_encoder\.patch_embed\.proj\.", "vision_encoder.patch_embed.projection."),
    (r"^vision_encoder\.neck\.0\.", "vision_encoder.neck.conv1."),
    (r"^vision_encoder\.neck\.1\.", "vision_encoder.neck.layer_norm1."),
    (r"^vision_encoder\.neck\.2\.", "vision_encoder.neck.conv2."),
    (r"^vision_encoder\.neck\.3\.", "vision_encoder.neck.layer_norm2."),
    (r"^prompt_encoder\.mask_downscaling\.0\.", "prompt_encoder.mask_embed.conv1."),
    (r"^prompt_encoder\.mask_downscaling\.1\.", "prompt_encoder.mask_embed.layer_norm1."),
    (r"^prompt_encoder\.mask_downscaling\.3\.", "prompt_encoder.mask_embed.conv2."),
    (r"^prompt_encoder\.mask_downscaling\.4\.", "prompt_encoder.mask_embed.layer_norm2."),
    (r"^prompt_encoder\.mask_downscaling\.6\.", "prompt_encoder.mask_embed.conv3."),
    (r"^prompt_encoder\.point_embeddings\.", "prompt_encoder.point_embed."),
    (r"^(mask_decoder\.transformer\.layers\.\d+)\.norm(\d)\.", r"\1.layer_norm\2."),
    (
        r"^mask_decoder\.transformer\.norm_final_attn\.",
        "mask_decoder.transformer.layer_norm_final_attn.",
    ),
    (r"^mask_decoder\.output_upscaling\.0\.", "mask_decoder.upscale_conv1."),
    (r"^mask_decoder\.output_upscaling\.1\.", "mask_decoder.upscale_layer_norm."),
    (r"^mask_decoder\.output_upscaling\.3\.", "mask_decoder.upscale_conv2."),
)
# Official MLPs (``<mlp>.layers.i``) that Hugging Face splits into proj_in / layers / proj_out.
_MLP = re.compile(
    r"^(mask_decoder\.(?:output_hypernetworks_mlps\.\d+|iou_prediction_head))\.(\w+?)(?:\.(\d+))?\.(weight|bias)$"
)


def is_hf_layout(sd: Mapping[str, torch.Tensor]) -> bool:
    """Whether a state dict uses ``SamModel``'s names."""
    return any(k.startswith(HF_PREFIXES) for k in sd)


def _rename(name: str, rules: list[tuple[re.Pattern[str], str]]) -> str:
    for pattern, repl in rules:
        name = pattern.sub(repl, name)
    return name


def _mlp_sizes(names: list[str], hf: bool) -> dict[str, int]:
    """Number of linear layers of every decoder MLP in ``names``."""
    sizes: dict[str, int] = {}
    for name in names:
        m = _MLP.match(name)
        if m is None:
            continue
        mlp, part, index = m.group(1), m.group(2), m.group(3)
        if hf and part == "layers":
            sizes[mlp] = max(sizes.get(mlp, 2), int(index) + 3)
        elif hf:
            sizes.setdefault(mlp, 2)
        elif part == "layers":
            sizes[mlp] = max(sizes.get(mlp, 0), int(index) + 1)
    return sizes


def _map_mlp(name: str, sizes: Mapping[str, int], to_hf: bool) -> str | None:
    """The other layout's name of a decoder MLP parameter (None if ``name`` is not one)."""
    m = _MLP.match(name)
    if m is None or m.group(1) not in sizes:
        return None
    mlp, part, index, kind = m.group(1), m.group(2), m.group(3), m.group(4)
    n = sizes[mlp]
    if to_hf:
        i = int(index)
        hf = "proj_in" if i == 0 else "proj_out" if i == n - 1 else f"layers.{i - 1}"
        return f"{mlp}.{hf}.{kind}"
    i = {"proj_in": 0, "proj_out": n - 1}.get(part, int(index) + 1 if index else -1)
    return f"{mlp}.layers.{i}.{kind}"


def _convert(
    sd: Mapping[str, torch.Tensor],
    rename: Callable[[str], str],
    sizes: Mapping[str, int],
    to_hf: bool,
) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for name, tensor in sd.items():
        new = _map_mlp(name, sizes, to_hf) or rename(name)
        if new in out:
            raise CheckpointError(f"two tensors map onto {new!r}")
        out[new] = tensor
    return out


_TO_HF = [(re.compile(a), b) for a, b in _RENAMES]


def from_official(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official names -> ``SamModel`` names (what ``save_pretrained`` writes)."""
    if any(k.startswith(("image_encoder.layers.", "mask_decoder.hf_token")) for k in sd):
        raise CheckpointError(
            "the Hugging Face SamModel layout holds SAM's ViT models only (not MobileSAM's "
            "TinyViT or SAM-HQ)"
        )
    if any(k.startswith(("prompt_encoder.text_mlp.", "prompt_encoder.text_embed.")) for k in sd):
        raise CheckpointError(
            "the Hugging Face SamModel layout has no text prompts: this model's text path "
            "(prompt_encoder.text_*) cannot be converted"
        )
    sizes = _mlp_sizes(list(sd), hf=False)
    renamed = {k: v for k, v in sd.items() if k != _PE_OFFICIAL}
    out = _convert(renamed, lambda k: _rename(k, _TO_HF), sizes, to_hf=True)
    if _PE_OFFICIAL in sd:
        out[_PE_HF] = sd[_PE_OFFICIAL]
    return out


def to_official(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``SamModel`` names -> official names. The tied copy of the positional matrix may be
    present or not; if both are, they must be equal."""
    sd = dict(sd)
    pe = sd.pop(_PE_HF, None)
    tied = sd.pop(_PE_HF_TIED, None)
    if pe is not None and tied is not None and not torch.equal(pe, tied):
        raise CheckpointError(f"{_PE_HF} and its tied copy {_PE_HF_TIED} differ")
    pe = pe if pe is not None else tied
    sizes = _mlp_sizes(list(sd), hf=True)
    inverse = _inverse_names(sd)
    out = _convert(sd, lambda k: inverse.get(k, k), sizes, to_hf=False)
    if pe is not None:
        out[_PE_OFFICIAL] = pe
    return out


def _inverse_names(sd: Mapping[str, torch.Tensor]) -> dict[str, str]:
    """HF name -> official name for the non-MLP tensors of ``sd``, by reversing the rules."""
    inverse: dict[str, str] = {}
    for name in sd:
        official = name
        official = _rename(official, _FROM_HF)
        if _rename(official, _TO_HF) != name:
            raise CheckpointError(f"unknown tensor {name!r} in a Hugging Face SAM checkpoint")
        inverse[name] = official
    return inverse


# Hugging Face -> official: the rules of _RENAMES inverted, in the same order. to_official checks
# every name against _RENAMES, so the two lists cannot drift apart silently.
_FROM_HF = [
    (re.compile(a), b)
    for a, b in (
        (r"^vision_encoder\.", "image_encoder."),
        (r"^(image_encoder)\.layers\.", r"\1.blocks."),
        (r"^(image_encoder\.blocks\.\d+)\.layer_norm([12])\.", r"\1.norm\2."),
        (r"^image_encoder\.patch_embed\.projection\.", "image_encoder.patch_embed.proj."),
        (r"^image_encoder\.neck\.conv1\.", "image_encoder.neck.0."),
        (r"^image_encoder\.neck\.layer_norm1\.", "image_encoder.neck.1."),
        (r"^image_encoder\.neck\.conv2\.", "image_encoder.neck.2."),
        (r"^image_encoder\.neck\.layer_norm2\.", "image_encoder.neck.3."),
        (r"^prompt_encoder\.mask_embed\.conv1\.", "prompt_encoder.mask_downscaling.0."),
        (r"^prompt_encoder\.mask_embed\.layer_norm1\.", "prompt_encoder.mask_downscaling.1."),
        (r"^prompt_encoder\.mask_embed\.conv2\.", "prompt_encoder.mask_downscaling.3."),
        (r"^prompt_encoder\.mask_embed\.layer_norm2\.", "prompt_encoder.mask_downscaling.4."),
        (r"^prompt_encoder\.mask_embed\.conv3\.", "prompt_encoder.mask_downscaling.6."),
        (r"^prompt_encoder\.point_embed\.", "prompt_encoder.point_embeddings."),
        (r"^(mask_decoder\.transformer\.layers\.\d+)\.layer_norm(\d)\.", r"\1.norm\2."),
        (
            r"^mask_decoder\.transformer\.layer_norm_final_attn\.",
            "mask_decoder.transformer.norm_final_attn.",
        ),
        (r"^mask_decoder\.upscale_conv1\.", "mask_decoder.output_upscaling.0."),
        (r"^mask_decoder\.upscale_layer_norm\.", "mask_decoder.output_upscaling.1."),
        (r"^mask_decoder\.upscale_conv2\.", "mask_decoder.output_upscaling.3."),
    )
]


# -------------------------------------------------------------------------------- files
def weight_files(path: Path) -> list[Path]:
    """The files holding a checkpoint's tensors: ``path`` itself, or for a model folder or a
    sharded index (``*.index.json``) the weight files it names."""
    if path.is_dir():
        for name in _INDEX_FILES:
            if (path / name).is_file():
                return weight_files(path / name)
        for name in _WEIGHT_FILES:
            if (path / name).is_file():
                return [path / name]
        raise CheckpointError(
            f"{path} holds no model weights ({', '.join(_WEIGHT_FILES + _INDEX_FILES)})"
        )
    if path.name.endswith(".index.json"):
        try:
            weight_map = json.loads(path.read_text())["weight_map"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{path} is not a sharded-checkpoint index: {exc}") from None
        shards = sorted(set(weight_map.values()))
        missing = [s for s in shards if not (path.parent / s).is_file()]
        if missing:
            raise CheckpointError(f"{path}: shard files missing: {missing}")
        return [path.parent / s for s in shards]
    return [path]


def decoder_num_heads(path: Path) -> int | None:
    """The decoder's head count from the ``config.json`` beside a Hugging Face checkpoint."""
    folder = path if path.is_dir() else path.parent
    try:
        config = json.loads((folder / "config.json").read_text())
        return int(config["mask_decoder_config"]["num_attention_heads"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def hf_config(config: SamConfig) -> dict[str, object]:
    """The ``config.json`` of a ``transformers`` ``SamModel`` with the architecture ``config``."""
    enc, pe, dec = config.image_encoder, config.prompt_encoder, config.mask_decoder
    if not isinstance(enc, ImageEncoderConfig) or config.hq is not None:
        raise CheckpointError(
            f"the Hugging Face SamModel layout holds SAM's ViT models only, not {config.family}"
        )
    return {
        "architectures": ["SamModel"],
        "model_type": "sam",
        "vision_config": {
            "hidden_size": enc.embed_dim,
            "output_channels": enc.out_chans,
            "num_hidden_layers": enc.depth,
            "num_attention_heads": enc.num_heads,
            "num_channels": enc.in_chans,
            "image_size": enc.img_size,
            "patch_size": enc.patch_size,
            "mlp_ratio": enc.mlp_ratio,
            "mlp_dim": int(enc.embed_dim * enc.mlp_ratio),
            "qkv_bias": enc.qkv_bias,
            "use_abs_pos": enc.use_abs_pos,
            "use_rel_pos": enc.use_rel_pos,
            "window_size": enc.window_size,
            "global_attn_indexes": list(enc.global_attn_indexes),
            "num_pos_feats": pe.embed_dim // 2,
            "layer_norm_eps": 1e-6,
        },
        "prompt_encoder_config": {
            "hidden_size": pe.embed_dim,
            "image_size": enc.img_size,
            "patch_size": enc.patch_size,
            "mask_input_channels": pe.mask_in_chans,
            "layer_norm_eps": 1e-6,
        },
        "mask_decoder_config": {
            "hidden_size": dec.transformer_dim,
            "mlp_dim": dec.mlp_dim,
            "num_hidden_layers": dec.depth,
            "num_attention_heads": dec.num_heads,
            "attention_downsample_rate": dec.attention_downsample_rate,
            "num_multimask_outputs": dec.num_multimask_outputs,
            "iou_head_depth": dec.iou_head_depth,
            "iou_head_hidden_dim": dec.iou_head_hidden_dim,
            "layer_norm_eps": 1e-6,
        },
    }


def save_hf(sd: Mapping[str, torch.Tensor], config: SamConfig, folder: Path) -> Path:
    """Write a ``SamModel`` folder (``model.safetensors`` under Hugging Face names and
    ``config.json``) from an official-layout state dict: ``SamModel.from_pretrained(folder)``
    reads it. Each file is written atomically."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in from_official(sd).items()}
    config_text = json.dumps(hf_config(config), indent=2) + "\n"
    with atomic_path(folder / "model.safetensors") as tmp:
        save_file(tensors, tmp, metadata={"format": "pt"})
    with atomic_path(folder / "config.json") as tmp:
        Path(tmp).write_text(config_text)
    return folder
