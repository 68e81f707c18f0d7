"""Loading and saving SAM checkpoints in the official layout; downloading the official files.

Any checkpoint whose keys follow the official release loads: the architecture (encoder depth,
width, heads, MLP ratio, window size, which blocks are global, image size, decoder sizes) is read
from the tensor shapes. ``.pth`` files are read with ``weights_only=True`` on the CPU;
``.safetensors`` files too, and those written by :func:`save` also carry the exact config.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from anyseg.config import (
    ImageEncoderConfig,
    MaskDecoderConfig,
    Mode,
    PromptEncoderConfig,
    SamConfig,
)
from anyseg.errors import CheckpointError, DownloadError, InvalidInputError
from anyseg.io import atomic_path
from anyseg.modeling import Sam
from anyseg.settings import opt

CONFIG_METADATA_KEY = "anyseg_config"
WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "default.safetensors"


@dataclass(frozen=True)
class OfficialCheckpoint:
    """A released SAM checkpoint: where it is published and its SHA-256."""

    name: str
    url: str
    sha256: str
    size_bytes: int


OFFICIAL_CHECKPOINTS: dict[str, OfficialCheckpoint] = {
    "vit_h": OfficialCheckpoint(
        "sam_vit_h_4b8939.pth",
        "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
        "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
        2564550879,
    ),
    "vit_l": OfficialCheckpoint(
        "sam_vit_l_0b3195.pth",
        "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
        "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
        1249524607,
    ),
    "vit_b": OfficialCheckpoint(
        "sam_vit_b_01ec64.pth",
        "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
        "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
        375042383,
    ),
}


# ---------------------------------------------------------------------- reading
def read_state_dict(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read tensors (and safetensors metadata) from a ``.pth``/``.pt`` or ``.safetensors`` file."""
    p = Path(path)
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
    """Recover the architecture of a checkpoint in the official layout from its tensor shapes.

    Only the decoder's head count leaves no trace in the shapes; every official model uses 8.
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
    encoder = ImageEncoderConfig(
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
    prompt = PromptEncoderConfig(
        embed_dim=int(_get(sd, "prompt_encoder.point_embeddings.0.weight").shape[1]),
        mask_in_chans=int(_get(sd, "prompt_encoder.mask_downscaling.3.weight").shape[0]),
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
    return SamConfig(image_encoder=encoder, prompt_encoder=prompt, mask_decoder=decoder)


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
    """Build the right SAM for a checkpoint in the official layout and load its weights.

    Args:
        path: ``.pth``/``.pt`` (official release, or a training checkpoint with a ``model``
            entry) or ``.safetensors``.
        device: where to put the model.
        config: force an architecture instead of reading it from the file.

    Returns:
        The model in eval mode, float32.
    """
    sd, metadata = read_state_dict(path)
    if config is None:
        if CONFIG_METADATA_KEY in metadata:
            try:
                config = SamConfig.from_dict(json.loads(metadata[CONFIG_METADATA_KEY]))
            except (ValueError, TypeError) as exc:
                raise CheckpointError(
                    f"{path}: bad {CONFIG_METADATA_KEY} metadata: {exc}"
                ) from None
        else:
            config = infer_config(sd)
    model = Sam(config)
    load_state_dict_strict(model, sd, source=str(path))
    return model.to(resolve_device(device)).eval()


def save(model: Sam, path: str | os.PathLike[str], half: bool = False) -> Path:
    """Write the model's weights in the official layout, atomically.

    ``.safetensors`` files also store the exact config as metadata; ``.pth`` files hold the
    bare state dict, like the released checkpoints. ``half`` stores float16 tensors.
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
            "model weights (.pth or .safetensors in a layout anyseg loads); default: the "
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


# ---------------------------------------------------------------------- download
def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def download(
    name: str,
    dest_dir: str | os.PathLike[str] = ".",
    url: str | None = None,
    sha256: str | None = None,
    timeout: float = 10.0,
    progress: bool = True,
) -> Path:
    """Download an official checkpoint (``vit_b``, ``vit_l``, ``vit_h``) and verify its SHA-256.

    The file is streamed to a temporary file beside the destination and renamed only once the
    hash matches; an existing file with the right hash is kept. ``url``/``sha256`` override the
    published ones (mirrors, tests).
    """
    if name not in OFFICIAL_CHECKPOINTS:
        raise DownloadError(
            f"unknown checkpoint {name!r}; choose one of {', '.join(OFFICIAL_CHECKPOINTS)}"
        )
    info = OFFICIAL_CHECKPOINTS[name]
    url = url or info.url
    expected = (sha256 or info.sha256).lower()
    dest = Path(dest_dir) / info.name
    if dest.is_file() and sha256_file(dest) == expected:
        return dest
    digest = hashlib.sha256()
    with atomic_path(dest, suffix=".part") as tmp:
        with open(tmp, "wb") as out:
            _stream(url, out, digest, timeout=timeout, progress=progress, desc=info.name)
        actual = digest.hexdigest()
        if actual != expected:
            raise DownloadError(
                f"SHA-256 mismatch for {url}: expected {expected}, got {actual}; file discarded"
            )
    return dest


def _stream(url: str, out: Any, digest: Any, *, timeout: float, progress: bool, desc: str) -> None:
    """Copy ``url`` to the open file ``out``, updating ``digest``; errors as DownloadError."""
    try:
        response = urllib.request.urlopen(url, timeout=timeout)
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason: object = getattr(exc, "reason", exc)
        if isinstance(exc, urllib.error.HTTPError):
            reason = f"HTTP {exc.code} {exc.reason}"
        raise DownloadError(f"cannot download {url}: {reason} (are you offline?)") from None
    with response:
        total = int(response.headers.get("Content-Length") or 0) or None
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=total, unit="B", unit_scale=True, desc=desc)
        try:
            while block := response.read(1 << 20):
                digest.update(block)
                out.write(block)
                if bar is not None:
                    bar.update(len(block))
        except (TimeoutError, OSError) as exc:
            raise DownloadError(f"download of {url} broke off: {exc}") from None
        finally:
            if bar is not None:
                bar.close()
