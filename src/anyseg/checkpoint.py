"""Loading and saving SAM checkpoints of every family.

Any checkpoint whose keys follow a family's own release loads: SAM's official layout, MobileSAM's
``mobile_sam.pt`` (TinyViT encoder keys under ``image_encoder.``), SAM-HQ's ``sam_hq_vit_*.pth``
(``mask_decoder.hf_token`` and the fusion layers), and the Hugging Face ``SamModel`` layout (its
names mapped onto the official ones by :mod:`anyseg.hf_layout`). The family and the architecture
(encoder depth, width, heads, MLP ratio, window size, which blocks are global, image size,
decoder sizes, TinyViT stages) are read from the tensor names and shapes, never from a file name.
``.pth``/``.pt``/``.bin`` files are read with ``weights_only=True`` on the CPU; ``.safetensors``
files too (those written by :func:`save` also carry the exact config), and a Hugging Face model
folder or sharded index. The released files and their download: :mod:`anyseg.releases`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from anyseg import hf_layout
from anyseg.clip.loading import ClipOptions
from anyseg.config import (
    AmgThresholds,
    EncoderConfig,
    HQConfig,
    ImageEncoderConfig,
    MaskDecoderConfig,
    Mode,
    PromptEncoderConfig,
    SamConfig,
    TextClipRecord,
    TinyViTConfig,
)
from anyseg.errors import CheckpointError, InvalidInputError
from anyseg.io import atomic_path
from anyseg.modeling import Sam
from anyseg.settings import opt

CONFIG_METADATA_KEY = "anyseg_config"
#: Which CLIP a text-path model was trained with (:class:`~anyseg.config.TextClipRecord`).
TEXT_CLIP_METADATA_KEY = "anyseg_text_clip"
#: The automatic generator's thresholds a model recommends (:class:`~anyseg.config.AmgThresholds`).
AMG_THRESHOLDS_METADATA_KEY = "anyseg_amg_thresholds"
WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "default.safetensors"


# ---------------------------------------------------------------------- reading
def read_state_dict(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read tensors (and safetensors metadata) from a checkpoint: a ``.pth``/``.pt``/``.bin`` or
    ``.safetensors`` file, a Hugging Face model folder, or a sharded ``*.index.json``. Names are
    returned as stored (see :func:`official_names`)."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint not found: {p}")
    files = hf_layout.weight_files(p)
    if files != [p]:  # a folder or the shards of an index
        sd: dict[str, torch.Tensor] = {}
        metadata: dict[str, str] = {}
        for f in files:
            part, meta = _read_file(f)
            overlap = sorted(set(sd) & set(part))
            if overlap:
                raise CheckpointError(f"{f}: tensors also in another shard: {_short(overlap)}")
            sd.update(part)
            metadata = metadata or meta
        return sd, metadata
    return _read_file(p)


def _read_file(p: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    if p.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(p), framework="pt", device="cpu") as f:
                metadata = dict(f.metadata() or {})
                return {k: f.get_tensor(k) for k in f.keys()}, metadata  # noqa: SIM118
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{p} is not a readable safetensors file: {exc}") from None
    obj = load_tensors_only(p, "PyTorch checkpoint")
    if isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
        obj = obj["model"]  # training checkpoints wrap the weights
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{p} does not hold a state dict of tensors")
    return {str(k): v for k, v in obj.items()}, {}


def load_tensors_only(path: str | os.PathLike[str], what: str = "checkpoint") -> Any:
    """``torch.load`` a ``.pth``/``.pt`` file on the CPU with ``weights_only=True``.

    anyseg never loads code from a checkpoint: a file that pickles Python objects (a whole model,
    an optimizer class, ...) is refused with a message that says so, not torch's advice to turn
    the protection off.

    Raises:
        CheckpointError: the file is corrupt, not a PyTorch file, or holds more than tensors
            and plain values.
    """
    import pickle

    p = Path(path)
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "global" not in str(exc).lower():  # no class or function in it: a corrupt file
            raise CheckpointError(
                f"{p} is not a readable {what} (not a PyTorch tensor file)"
            ) from None
        raise CheckpointError(
            f"{p} holds Python objects besides tensors (e.g. a pickled model or class), and "
            "anyseg never runs code from a checkpoint file; save the model's state_dict() (its "
            "tensors only) and load that"
        ) from None
    except Exception as exc:  # torch raises many types for corrupt files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{p} is not a readable {what}: {first}") from None


def official_names(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict under the official names: Hugging Face ``SamModel`` names are mapped,
    every other family's release already uses them."""
    return hf_layout.to_official(sd) if hf_layout.is_hf_layout(sd) else dict(sd)


# ---------------------------------------------------------------- config inference
def _block_indices(keys: list[str], prefix: str) -> list[int]:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return sorted({int(m.group(1)) for k in keys if (m := pattern.match(k))})


def _get(sd: Mapping[str, torch.Tensor], key: str) -> torch.Tensor:
    try:
        return sd[key]
    except KeyError:
        raise CheckpointError(
            f"not a SAM checkpoint in the official layout: key {key!r} is missing"
        ) from None


def infer_config(sd: Mapping[str, torch.Tensor], decoder_num_heads: int = 8) -> SamConfig:
    """Recover the family and architecture of a checkpoint (official key names) from its
    tensor shapes.

    A TinyViT encoder (MobileSAM) is told apart from SAM's ViT by its key names, SAM-HQ's decoder
    by its HQ token. Only the decoder's head count (8 in every released model) and a TinyViT's
    input size (1024 in every released model) leave no trace in the shapes.
    """
    keys = list(sd)
    if not any(k.startswith("image_encoder.") for k in keys) or not any(
        k.startswith("mask_decoder.") for k in keys
    ):
        sample = ", ".join(keys[:5]) or "(no tensors)"
        raise CheckpointError(
            "not a SAM checkpoint: expected keys under image_encoder., prompt_encoder. and "
            f"mask_decoder., found e.g. {sample}"
        )
    encoder: EncoderConfig
    if "image_encoder.patch_embed.seq.0.c.weight" in sd:
        encoder = _tinyvit_encoder(sd, keys)
    else:
        encoder = _vit_encoder(sd, keys)
    text = sd.get("prompt_encoder.text_mlp.layers.0.weight")  # (C, E): the CLIP width E
    prompt = PromptEncoderConfig(
        embed_dim=int(_get(sd, "prompt_encoder.point_embeddings.0.weight").shape[1]),
        mask_in_chans=int(_get(sd, "prompt_encoder.mask_downscaling.3.weight").shape[0]),
        text_embed_dim=0 if text is None else int(text.shape[1]),
    )
    dim = int(_get(sd, "mask_decoder.iou_token.weight").shape[1])
    internal = int(
        _get(sd, "mask_decoder.transformer.final_attn_token_to_image.q_proj.weight").shape[0]
    )
    iou_layers = _block_indices(keys, "mask_decoder.iou_prediction_head.layers.")
    decoder = MaskDecoderConfig(
        transformer_dim=dim,
        depth=len(_block_indices(keys, "mask_decoder.transformer.layers.")),
        num_heads=decoder_num_heads,
        mlp_dim=int(_get(sd, "mask_decoder.transformer.layers.0.mlp.lin1.weight").shape[0]),
        attention_downsample_rate=dim // internal,
        num_multimask_outputs=int(_get(sd, "mask_decoder.mask_tokens.weight").shape[0]) - 1,
        iou_head_depth=len(iou_layers),
        iou_head_hidden_dim=int(
            _get(sd, "mask_decoder.iou_prediction_head.layers.0.weight").shape[0]
        ),
    )
    hq = None
    if "mask_decoder.hf_token.weight" in sd:  # SAM-HQ's output token
        hq = HQConfig()
        early = int(_get(sd, "mask_decoder.compress_vit_feat.0.weight").shape[0])
        if early != encoder.early_dim:
            raise CheckpointError(
                f"SAM-HQ fusion expects {early}-channel early features, but the encoder's "
                f"early features have {encoder.early_dim}"
            )
    return SamConfig(image_encoder=encoder, prompt_encoder=prompt, mask_decoder=decoder, hq=hq)


def _vit_encoder(sd: Mapping[str, torch.Tensor], keys: list[str]) -> ImageEncoderConfig:
    """SAM's ViT from the shapes of its patch embedding, blocks and relative-position tables."""
    patch_w = _get(sd, "image_encoder.patch_embed.proj.weight")  # (D, 3, p, p)
    embed_dim, in_chans, patch_size = (
        int(patch_w.shape[0]),
        int(patch_w.shape[1]),
        int(patch_w.shape[2]),
    )
    blocks = _block_indices(keys, "image_encoder.blocks.")
    if not blocks or blocks != list(range(len(blocks))):
        raise CheckpointError(f"image encoder blocks must be numbered 0..N-1, found {blocks}")
    depth = len(blocks)
    pos = sd.get("image_encoder.pos_embed")
    use_rel_pos = "image_encoder.blocks.0.attn.rel_pos_h" in sd
    if pos is not None:
        grid = int(pos.shape[1])
    elif use_rel_pos:  # the largest relative table belongs to a global block: 2 * grid - 1
        grid = max(
            (int(sd[f"image_encoder.blocks.{i}.attn.rel_pos_h"].shape[0]) + 1) // 2 for i in blocks
        )
    else:
        raise CheckpointError("cannot infer the image size: no pos_embed and no relative positions")
    img_size = grid * patch_size
    if use_rel_pos:
        head_dim = int(sd["image_encoder.blocks.0.attn.rel_pos_h"].shape[1])
        num_heads = embed_dim // head_dim
        sizes = [
            (int(sd[f"image_encoder.blocks.{i}.attn.rel_pos_h"].shape[0]) + 1) // 2 for i in blocks
        ]
        global_idx = tuple(i for i, s in zip(blocks, sizes, strict=True) if s == grid)
        local = {s for s in sizes if s != grid}
        if len(local) > 1:
            raise CheckpointError(f"blocks disagree on the window size: {sorted(local)}")
        window = local.pop() if local else 0
    else:
        num_heads, global_idx, window = max(1, embed_dim // 64), tuple(blocks), 0
    mlp_dim = int(_get(sd, "image_encoder.blocks.0.mlp.lin1.weight").shape[0])
    out_chans = int(_get(sd, "image_encoder.neck.0.weight").shape[0])
    return ImageEncoderConfig(
        img_size=img_size,
        patch_size=patch_size,
        in_chans=in_chans,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads,
        mlp_ratio=mlp_dim / embed_dim,
        out_chans=out_chans,
        qkv_bias="image_encoder.blocks.0.attn.qkv.bias" in sd,
        use_abs_pos=pos is not None,
        use_rel_pos=use_rel_pos,
        window_size=window,
        global_attn_indexes=global_idx,
    )


def _tinyvit_encoder(sd: Mapping[str, torch.Tensor], keys: list[str]) -> TinyViTConfig:
    """MobileSAM's TinyViT from its stage widths, block counts and attention-bias tables."""
    stages = _block_indices(keys, "image_encoder.layers.")
    if stages != [0, 1, 2, 3]:
        raise CheckpointError(f"a TinyViT encoder has stages 0..3, found {stages}")
    dims, depths, heads, windows = [], [], [], []
    for i in stages:
        prefix = f"image_encoder.layers.{i}.blocks."
        blocks = _block_indices(keys, prefix)
        if not blocks or blocks != list(range(len(blocks))):
            raise CheckpointError(f"TinyViT stage {i}: blocks must be numbered 0..N-1, {blocks}")
        depths.append(len(blocks))
        if i == 0:  # MBConv: (hidden, dim, 1, 1) expansion
            dims.append(int(_get(sd, prefix + "0.conv1.c.weight").shape[1]))
            heads.append(1)
            windows.append(7)  # unused by the convolutional stage; TinyViT's default
            continue
        dims.append(int(_get(sd, prefix + "0.attn.proj.weight").shape[0]))
        biases = _get(sd, prefix + "0.attn.attention_biases")  # (heads, window**2)
        heads.append(int(biases.shape[0]))
        windows.append(round(int(biases.shape[1]) ** 0.5))
    attn0 = "image_encoder.layers.1.blocks.0."
    expand = _get(sd, "image_encoder.layers.0.blocks.0.conv1.c.weight").shape[0] / dims[0]
    return TinyViTConfig(
        in_chans=int(_get(sd, "image_encoder.patch_embed.seq.0.c.weight").shape[1]),
        embed_dims=tuple(dims),
        depths=tuple(depths),
        num_heads=tuple(heads),
        window_sizes=tuple(windows),
        mlp_ratio=int(_get(sd, attn0 + "mlp.fc1.weight").shape[0]) / dims[1],
        mbconv_expand_ratio=float(expand),
        local_conv_size=int(_get(sd, attn0 + "local_conv.c.weight").shape[-1]),
        out_chans=int(_get(sd, "image_encoder.neck.0.weight").shape[0]),
        num_classes=int(_get(sd, "image_encoder.head.weight").shape[0]),
    )


# ----------------------------------------------------------------------- loading
def load_state_dict_strict(
    model: Sam, sd: Mapping[str, torch.Tensor], source: str = "checkpoint"
) -> None:
    """Load ``sd`` into ``model`` strictly, with an error naming missing/unexpected keys and
    mismatched shapes."""
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    shapes = [
        f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {_short(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_short(unexpected)}")
    if shapes:
        problems.append(f"wrong shapes {_short(shapes)}")
    if problems:
        raise CheckpointError(f"{source} does not match the model: " + "; ".join(problems))
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in sd.items()}, strict=True)


def _short(items: list[str], n: int = 6) -> str:
    more = f" (+{len(items) - n} more)" if len(items) > n else ""
    return "[" + ", ".join(items[:n]) + "]" + more


def load(
    path: str | os.PathLike[str],
    device: str | torch.device = "cpu",
    config: SamConfig | None = None,
) -> Sam:
    """Build the right SAM for a checkpoint of any family and load its weights strictly.

    Args:
        path: ``.pth``/``.pt`` (a family's release, or a training checkpoint with a ``model``
            entry), ``.safetensors``, or a Hugging Face ``SamModel`` file, folder or index.
        device: where to put the model.
        config: force an architecture instead of reading it from the file.

    Returns:
        The model in eval mode, float32.
    """
    sd, metadata = read_state_dict(path)
    hf = hf_layout.is_hf_layout(sd)
    sd = official_names(sd)
    if config is None:
        if CONFIG_METADATA_KEY in metadata:
            try:
                config = SamConfig.from_dict(json.loads(metadata[CONFIG_METADATA_KEY]))
            except (ValueError, TypeError) as exc:
                raise CheckpointError(
                    f"{path}: bad {CONFIG_METADATA_KEY} metadata: {exc}"
                ) from None
        else:
            heads = hf_layout.decoder_num_heads(Path(path)) if hf else None
            config = infer_config(sd, decoder_num_heads=heads or 8)
    model = Sam(config)
    load_state_dict_strict(model, sd, source=str(path))
    model.text_clip = _text_clip_record(metadata, model, str(path))
    model.amg_thresholds = _amg_thresholds(metadata, str(path))
    return model.to(resolve_device(device)).eval()


def _amg_thresholds(metadata: Mapping[str, str], source: str) -> AmgThresholds | None:
    text = metadata.get(AMG_THRESHOLDS_METADATA_KEY)
    if text is None:
        return None
    try:
        return AmgThresholds.from_dict(json.loads(text))
    except (ValueError, TypeError) as exc:
        raise CheckpointError(
            f"{source}: bad {AMG_THRESHOLDS_METADATA_KEY} metadata: {exc}"
        ) from None


def _text_clip_record(
    metadata: Mapping[str, str], model: Sam, source: str
) -> TextClipRecord | None:
    """The CLIP a text-path model records in its metadata (checked against the path's width)."""
    text = metadata.get(TEXT_CLIP_METADATA_KEY)
    if text is None:
        return None
    try:
        record = TextClipRecord.from_dict(json.loads(text))
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{source}: bad {TEXT_CLIP_METADATA_KEY} metadata: {exc}") from None
    width = model.config.prompt_encoder.text_embed_dim
    if record.embed_dim != width:
        raise CheckpointError(
            f"{source}: records a CLIP of width {record.embed_dim}, but its text path takes "
            f"{width}-wide embeddings"
        )
    return record


def save(model: Sam, path: str | os.PathLike[str], half: bool = False) -> Path:
    """Write the model's weights in the official layout, atomically.

    ``.safetensors`` files also store the exact config as metadata, for a text-path model the
    CLIP it was trained with (:attr:`Sam.text_clip`), and the automatic generator's thresholds
    the model recommends (:attr:`Sam.amg_thresholds`, when set); ``.pth`` files hold the bare state
    dict, like the released checkpoints. ``half`` stores float16 tensors.
    """
    p = Path(path)
    if p.suffix not in (".pth", ".pt", ".safetensors"):
        raise CheckpointError(
            f"unsupported checkpoint extension {p.suffix!r}: use .pth or .safetensors"
        )
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if half:
        sd = {k: v.half() if v.is_floating_point() else v for k, v in sd.items()}
    with atomic_path(p) as tmp:
        if p.suffix == ".safetensors":
            from safetensors.torch import save_file

            config = getattr(model, "config", None)
            meta = {CONFIG_METADATA_KEY: json.dumps(config.to_dict())} if config else {}
            record = getattr(model, "text_clip", None)
            if record is not None:
                meta[TEXT_CLIP_METADATA_KEY] = json.dumps(record.to_dict())
            thresholds = getattr(model, "amg_thresholds", None)
            if thresholds is not None:
                meta[AMG_THRESHOLDS_METADATA_KEY] = json.dumps(thresholds.to_dict())
            save_file(sd, tmp, metadata=meta)
        else:
            torch.save(sd, tmp)
    return p


# ------------------------------------------------------------------ default model
def default_model_available() -> bool:
    """Whether the embedded default model ships with this installation."""
    return DEFAULT_WEIGHTS.is_file()


def load_default(device: str | torch.device = "auto") -> Sam:
    """The embedded default model (trained by this project on synthetic scenes)."""
    if not default_model_available():
        raise CheckpointError(
            "no default model is bundled with this installation yet; pass --checkpoint PATH "
            "(e.g. an official sam_vit_b_01ec64.pth from `anyseg download vit_b`)"
        )
    return load(DEFAULT_WEIGHTS, device=device)


@dataclass(frozen=True)
class ModelOptions:
    """Which model a command runs, where, and how."""

    checkpoint: Path | None = field(
        default=None,
        metadata=opt(
            "model weights of any family (.pth, .safetensors, a Hugging Face folder); default: the "
            "bundled model",
            metavar="PATH",
        ),
    )
    device: str = field(
        default="auto",
        metadata=opt(
            "torch device: auto (CUDA when available, else CPU), cpu, cuda, cuda:1, ...",
            metavar="DEVICE",
        ),
    )
    mode: Mode = field(
        default="exact",
        metadata=opt(
            "exact: float32, the original implementation's numbers; fast: trades a little "
            "fidelity for speed"
        ),
    )
    # The CLIP of text prompts: --clip and the options of real CLIP files (--clip-activation, ...).
    clip: ClipOptions = field(default_factory=ClipOptions)


def load_model(
    checkpoint: str | os.PathLike[str] | None, device: str | torch.device = "auto"
) -> Sam:
    """``load(checkpoint)`` if given, else the default model: what every CLI command does."""
    return load_default(device) if checkpoint is None else load(checkpoint, device=device)


def resolve_device(device: str | torch.device) -> torch.device:
    """A usable torch device for ``device``; ``"auto"`` is CUDA when available, else the CPU.

    Raises:
        InvalidInputError: an unknown device name, or a CUDA device on a machine without CUDA
            (or without that many GPUs): one clear message instead of torch's assertion.
    """
    if isinstance(device, torch.device):
        parsed = device
    elif device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            parsed = torch.device(device)
        except (RuntimeError, TypeError):
            raise InvalidInputError(
                f"unknown device {device!r}: use auto, cpu, cuda or cuda:N"
            ) from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise InvalidInputError(
                f"device {str(parsed)!r} asked for, but this machine has no usable CUDA GPU "
                "(use --device cpu, or auto to pick CUDA only when present)"
            )
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise InvalidInputError(
                f"device {str(parsed)!r} asked for, but this machine has {count} CUDA GPU(s)"
            )
    elif parsed.type not in ("cpu", "mps", "xpu", "meta"):
        raise InvalidInputError(f"unsupported device {str(parsed)!r}: use auto, cpu or cuda[:N]")
    return parsed


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """SHA-256 of a checkpoint file; of a Hugging Face model folder or sharded index, of its
    weight files' bytes in order (one identity for the checkpoint, whatever holds it)."""
    digest = hashlib.sha256()
    for file in hf_layout.weight_files(Path(path)):
        with open(file, "rb") as f:
            while block := f.read(chunk):
                digest.update(block)
    return digest.hexdigest()
