"""Loading CLIP weights from local files in the OpenAI, open_clip and Hugging Face layouts, and
saving anyseg's own.

- **OpenAI** state dicts (``visual.conv1.weight``, ``transformer.resblocks.N...``): QuickGELU,
  64-wide heads. The released ``.pt`` files are TorchScript archives, which run code when loaded:
  they are refused unless ``allow_torchscript=True`` (``--clip-allow-torchscript``).
- **open_clip** checkpoints: the same keys, possibly wrapped in ``{"state_dict": ...}`` and
  prefixed ``module.``; plain GELU unless the model name says ``quickgelu`` (pass
  ``activation="quick_gelu"`` then), heads 64 wide unless ``head_width`` says otherwise.
- **Hugging Face** ``CLIPModel`` folders (``config.json`` + ``model.safetensors`` or
  ``pytorch_model.bin``) or weight files: keys renamed, q/k/v projections stacked, the
  projections transposed; heads and activation read from ``config.json`` when there is one.
- **anyseg** ``.safetensors`` (:func:`save_clip`): OpenAI keys, plus the config and the word
  tokenizer's vocabulary in the metadata. The bundled ``clip_synth.safetensors`` is one.

Nothing is downloaded. Every file is read on the CPU with ``weights_only=True``.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from anyseg.clip.config import (
    ACTIVATIONS,
    OPENAI_MEAN,
    OPENAI_STD,
    Activation,
    ClipConfig,
    config_from_state_dict,
)
from anyseg.clip.crops import to_pixels
from anyseg.clip.hf import from_hf_state_dict, hf_config_options
from anyseg.clip.model import ClipModel
from anyseg.clip.tokenizer import BPE_VOCAB_SIZE, BpeTokenizer, Tokenizer, WordTokenizer
from anyseg.errors import CheckpointError, InvalidInputError
from anyseg.settings import opt

METADATA_KEY = "anyseg_clip"
FORMAT = "anyseg-clip-1"
BUNDLED_CLIP = Path(__file__).resolve().parents[1] / "weights" / "clip_synth.safetensors"
# Entries of OpenAI's state dicts that are not weights (the original loader drops them too).
_NOT_WEIGHTS = ("input_resolution", "context_length", "vocab_size", "attn_mask")


@dataclass
class LoadedClip:
    """A CLIP ready to embed crops and texts.

    Attributes:
        model: the modules (eval mode).
        tokenizer: the matching tokenizer (BPE for OpenAI-vocabulary models, word-level for
            anyseg's own).
        sha256: SHA-256 of the weights file (recorded by models trained with this CLIP).
        source: the path it came from.
        layout: ``"anyseg"``, ``"openai"``, ``"open_clip"`` or ``"hf"``.
        mean, std: the image normalisation (RGB, 0..1 pixels).
    """

    model: ClipModel
    tokenizer: Tokenizer
    sha256: str
    source: str
    layout: str
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD

    @property
    def config(self) -> ClipConfig:
        return self.model.config

    @property
    def embed_dim(self) -> int:
        """Width of the joint embedding space."""
        return self.config.embed_dim

    @property
    def image_size(self) -> int:
        """Crop side the image tower takes, in pixels."""
        return self.config.vision.image_size

    def tokenize(self, texts: str | Sequence[str]) -> torch.Tensor:
        """Token ids (N, context length) on the model's device."""
        return self.tokenizer(texts, self.config.text.context_length).to(self.model.device)

    @torch.no_grad()
    def encode_text(self, texts: str | Sequence[str], normalize: bool = False) -> torch.Tensor:
        """Text embeddings (N, E) float32 (L2-normalised with ``normalize``)."""
        if isinstance(texts, str):
            texts = [texts]
        if not texts or any(not t.strip() for t in texts):
            raise InvalidInputError("text prompts must be non-empty")
        out = self.model.encode_text(self.tokenize(texts)).float()
        return torch.nn.functional.normalize(out, dim=-1) if normalize else out

    @torch.no_grad()
    def encode_image(
        self,
        crops: np.ndarray | torch.Tensor,
        masks: np.ndarray | torch.Tensor | None = None,
        normalize: bool = False,
    ) -> torch.Tensor:
        """Image embeddings (N, E) float32 of RGB uint8 crops (N, S, S, 3) at
        :attr:`image_size`; ``masks`` (N, S, S) restricts the last block's class token to the
        masked patches (see :mod:`anyseg.clip.model`)."""
        pixels = to_pixels(crops, self.mean, self.std).to(self.model.device)
        m = None if masks is None else torch.as_tensor(masks).to(self.model.device)
        out = self.model.encode_image(pixels, m).float()
        return torch.nn.functional.normalize(out, dim=-1) if normalize else out


@dataclass(frozen=True)
class ClipOptions:
    """Which CLIP a command uses (the ``--clip`` flags of every command that embeds text)."""

    clip: Path | None = field(
        default=None,
        metadata=opt(
            "CLIP weights: anyseg .safetensors, an OpenAI / open_clip state dict, or a Hugging "
            "Face CLIPModel folder; default: the bundled clip_synth.safetensors",
            flag="--clip",
            metavar="PATH",
        ),
    )
    activation: Activation | None = field(
        default=None,
        metadata=opt(
            "MLP activation of a file that does not say (OpenAI: quick_gelu, open_clip: gelu)",
            flag="--clip-activation",
        ),
    )
    head_width: int | None = field(
        default=None,
        metadata=opt("attention head width (default 64)", flag="--clip-head-width"),
    )
    allow_torchscript: bool = field(
        default=False,
        metadata=opt(
            "accept a TorchScript archive (OpenAI's .pt releases); this runs code from the file",
            flag="--clip-allow-torchscript",
            const=True,
        ),
    )


def load_clip_options(options: ClipOptions, device: str | torch.device = "cpu") -> LoadedClip:
    """:func:`load_clip` of the CLIP ``options`` name."""
    return load_clip(
        options.clip,
        device=device,
        activation=options.activation,
        head_width=options.head_width,
        allow_torchscript=options.allow_torchscript,
    )


def as_loaded_clip(
    source: LoadedClip | ClipOptions | str | os.PathLike[str] | None,
    device: str | torch.device = "cpu",
) -> LoadedClip:
    """The CLIP ``source`` names, on ``device``: a loaded one as it is, ``--clip`` options, a
    file, or None for the bundled one."""
    if isinstance(source, LoadedClip):
        source.model.to(device)
        return source
    if isinstance(source, ClipOptions):
        return load_clip_options(source, device)
    return load_clip(source, device=device)


def load_clip(
    path: str | os.PathLike[str] | None = None,
    *,
    device: str | torch.device = "cpu",
    activation: Activation | None = None,
    head_width: int | None = None,
    allow_torchscript: bool = False,
    bpe_vocab: str | os.PathLike[str] | None = None,
) -> LoadedClip:
    """Load a CLIP from a local file or Hugging Face folder; None: the bundled one.

    Args:
        path: weights file (``.safetensors``, ``.pt``, ``.pth``, ``.bin``) or HF folder.
        device: where to put the model.
        activation: override the MLP activation (``"quick_gelu"`` or ``"gelu"``).
        head_width: override the attention head width (default 64, or the HF config's).
        allow_torchscript: accept TorchScript archives (OpenAI's released ``.pt``); loading them
            runs code stored in the file.
        bpe_vocab: the BPE merges file, if not from the installed open_clip_torch wheel.
    """
    if path is None:
        if not BUNDLED_CLIP.is_file():
            raise CheckpointError(
                f"no CLIP is bundled with this installation ({BUNDLED_CLIP} is missing); "
                "pass --clip FILE"
            )
        path = BUNDLED_CLIP
    if activation is not None and activation not in ACTIVATIONS:
        raise InvalidInputError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    p = Path(path)
    hf_options: dict[str, Any] = {}
    if p.is_dir():
        hf_options = hf_config_options(p / "config.json") if (p / "config.json").is_file() else {}
        p = _hf_weights(p)
    if not p.is_file():
        raise CheckpointError(f"CLIP checkpoint not found: {p}")
    sd, metadata, wrapped = _read(p, allow_torchscript)
    own = metadata.get(METADATA_KEY)
    layout = "anyseg" if own else "openai"
    if any(k.startswith(("text_model.", "vision_model.")) for k in sd):
        layout = "hf"
        sd = from_hf_state_dict(sd)
    elif wrapped:
        layout = "open_clip"
    sd = {k: v for k, v in sd.items() if k not in _NOT_WEIGHTS}
    tokenizer: Tokenizer
    if own:
        info = _own_metadata(own, p)
        config = ClipConfig.from_dict(info["config"])
        if activation is not None or head_width is not None:
            raise InvalidInputError(f"{p} records its activation and heads; do not override them")
        tok = info["tokenizer"]
        tokenizer = WordTokenizer(tok["words"], int(tok["context_length"]))
    else:
        act = (
            activation
            or hf_options.get("activation")
            or ("gelu" if layout == "open_clip" else "quick_gelu")
        )
        heads = hf_options.get("heads") if head_width is None else None
        config = config_from_state_dict(sd, head_width or 64, act, heads)
        if config.text.vocab_size != BPE_VOCAB_SIZE:
            raise CheckpointError(
                f"{p}: the token table has {config.text.vocab_size} rows; only CLIP's BPE "
                f"vocabulary ({BPE_VOCAB_SIZE}) is supported for checkpoints without anyseg "
                "metadata"
            )
        tokenizer = BpeTokenizer(bpe_vocab, context_length=config.text.context_length)
    model = ClipModel(config)
    _load_strict(model, sd, str(p))
    return LoadedClip(
        model=model.to(device).eval(),
        tokenizer=tokenizer,
        sha256=_sha256(p),
        source=str(p),
        layout=layout,
    )


def clip_file_metadata(model: ClipModel, tokenizer: WordTokenizer) -> dict[str, str]:
    """The safetensors metadata :func:`save_clip` writes (config and vocabulary)."""
    info = {"format": FORMAT, "config": model.config.to_dict(), "tokenizer": tokenizer.to_dict()}
    return {METADATA_KEY: json.dumps(info)}


def save_clip(
    model: ClipModel, tokenizer: WordTokenizer, path: str | os.PathLike[str], half: bool = False
) -> Path:
    """Write a CLIP with its word vocabulary as ``.safetensors`` (OpenAI keys), atomically;
    ``half`` stores float16 tensors (they load back as float32)."""
    from safetensors.torch import save_file

    from anyseg.io import atomic_path

    p = Path(path)
    if p.suffix != ".safetensors":
        raise InvalidInputError(f"save_clip writes .safetensors files, got {p.name}")
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if half:
        sd = {k: v.half() if v.is_floating_point() else v for k, v in sd.items()}
    p.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(p) as tmp:
        save_file(sd, str(tmp), metadata=clip_file_metadata(model, tokenizer))
    return p


# ---------------------------------------------------------------------------------------------
# Private helpers


def _hf_weights(folder: Path) -> Path:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            return folder / name
    raise CheckpointError(
        f"{folder} is a folder without model.safetensors or pytorch_model.bin (a Hugging Face "
        "CLIPModel folder holds one of them beside config.json)"
    )


def _is_torchscript(path: Path) -> bool:
    """TorchScript archives are zip files holding compiled code (``code/``) and constants."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(
            "/code/" in n or n.endswith("/constants.pkl") or n == "constants.pkl"
            for n in z.namelist()
        )


def _read(
    path: Path, allow_torchscript: bool
) -> tuple[dict[str, torch.Tensor], dict[str, str], bool]:
    """Tensors, safetensors metadata, and whether they came wrapped (open_clip's
    ``state_dict`` entry or ``module.`` prefixes)."""
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                metadata = dict(f.metadata() or {})
                tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{path} is not a readable safetensors file: {exc}") from None
        sd, wrapped = _unwrap(tensors, str(path))
        return sd, metadata, wrapped
    if _is_torchscript(path):
        if not allow_torchscript:
            raise CheckpointError(
                f"{path} is a TorchScript archive (like OpenAI's released .pt files); loading it "
                "runs code stored in the file, so it is refused. If you trust the file, pass "
                "allow_torchscript=True (CLI: --clip-allow-torchscript), or convert it once to a "
                "state dict"
            )
        scripted = torch.jit.load(str(path), map_location="cpu")
        return {k: v for k, v in scripted.state_dict().items()}, {}, False
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or unsafe pickles
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: {first}") from None
    sd, wrapped = _unwrap(obj, str(path))
    return sd, {}, wrapped


def _unwrap(obj: Any, source: str) -> tuple[dict[str, torch.Tensor], bool]:
    wrapped = False
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj, wrapped = obj["state_dict"], True  # open_clip training checkpoints
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source} does not hold a state dict")
    sd: dict[str, torch.Tensor] = {}
    for k, v in obj.items():
        if not isinstance(v, torch.Tensor):
            continue  # e.g. open_clip's epoch / name entries beside the weights
        key = str(k)
        if key.startswith("module."):
            key, wrapped = key[len("module.") :], True
        sd[key] = v
    if not sd:
        raise CheckpointError(f"{source} holds no tensors")
    return sd, wrapped


def _own_metadata(text: str, path: Path) -> dict[str, Any]:
    try:
        info = json.loads(text)
        if info.get("format") != FORMAT or info["tokenizer"]["kind"] != "word":
            raise ValueError(f"format {info.get('format')!r}")
        return dict(info)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{path}: bad {METADATA_KEY} metadata ({exc})") from None


def _load_strict(model: ClipModel, sd: Mapping[str, torch.Tensor], source: str) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    shapes = [
        f"{k}: file {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)
    ]
    problems = [
        f"{what} {items[:6]}{f' (+{len(items) - 6} more)' if len(items) > 6 else ''}"
        for what, items in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("wrong shapes", shapes),
        )
        if items
    ]
    if problems:
        raise CheckpointError(
            f"{source} does not match a CLIP in the OpenAI layout: " + "; ".join(problems)
        )
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in sd.items()}, strict=True)


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
