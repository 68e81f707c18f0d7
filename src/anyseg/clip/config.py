"""CLIP architecture settings, and reading them back from the tensor shapes of a checkpoint.

The state-dict layout is OpenAI's (``visual.conv1.weight``, ``visual.transformer.resblocks.N...``,
``token_embedding.weight``, ``text_projection``, ``logit_scale``); every size but the attention
heads and the activation is recoverable from the shapes (:func:`config_from_state_dict`). OpenAI
uses 64-wide heads and QuickGELU; open_clip models mostly plain GELU, sometimes other head widths.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch

from anyseg.errors import CheckpointError, InvalidInputError

Activation = Literal["quick_gelu", "gelu"]
ACTIVATIONS: tuple[str, ...] = ("quick_gelu", "gelu")
# OpenAI's image normalisation (RGB, pixel values in 0..1).
OPENAI_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class VisionConfig:
    """The image tower: a ViT on ``image_size`` px crops cut into ``patch_size`` px patches."""

    image_size: int = field(default=64, metadata={"help": "input side in pixels"})
    patch_size: int = field(default=8, metadata={"help": "patch side in pixels"})
    width: int = field(default=128, metadata={"help": "token width"})
    layers: int = field(default=4, metadata={"help": "transformer blocks"})
    heads: int = field(default=2, metadata={"help": "attention heads"})
    mlp_dim: int = field(default=512, metadata={"help": "hidden width of each block's MLP"})

    @property
    def grid(self) -> int:
        """Patches per side."""
        return self.image_size // self.patch_size


@dataclass(frozen=True)
class TextConfig:
    """The text tower: a causal transformer pooled at the end-of-text token."""

    context_length: int = field(default=16, metadata={"help": "tokens per text, with start/end"})
    vocab_size: int = field(default=64, metadata={"help": "token table rows"})
    width: int = field(default=128, metadata={"help": "token width"})
    layers: int = field(default=3, metadata={"help": "transformer blocks"})
    heads: int = field(default=2, metadata={"help": "attention heads"})
    mlp_dim: int = field(default=512, metadata={"help": "hidden width of each block's MLP"})


@dataclass(frozen=True)
class ClipConfig:
    """A whole CLIP: both towers, the shared embedding width and the activation."""

    embed_dim: int = field(default=128, metadata={"help": "joint embedding width"})
    vision: VisionConfig = field(default_factory=VisionConfig)
    text: TextConfig = field(default_factory=TextConfig)
    activation: Activation = field(
        default="quick_gelu", metadata={"help": "MLP activation: quick_gelu (OpenAI) or gelu"}
    )

    def __post_init__(self) -> None:
        v, t = self.vision, self.text
        if self.activation not in ACTIVATIONS:
            raise InvalidInputError(
                f"activation must be one of {ACTIVATIONS}, got {self.activation!r}"
            )
        if v.image_size % v.patch_size:
            raise InvalidInputError(
                f"image_size {v.image_size} is not a multiple of patch_size {v.patch_size}"
            )
        for name, width, heads in (("vision", v.width, v.heads), ("text", t.width, t.heads)):
            if heads < 1 or width % heads:
                raise InvalidInputError(f"{name} width {width} is not divisible by {heads} heads")
        for name, value in (
            ("embed_dim", self.embed_dim),
            ("vision.layers", v.layers),
            ("text.layers", t.layers),
            ("text.context_length", t.context_length),
            ("text.vocab_size", t.vocab_size),
        ):
            if value < 1:
                raise InvalidInputError(f"{name} must be >= 1, got {value}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClipConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        try:
            return cls(
                embed_dim=int(data["embed_dim"]),
                vision=VisionConfig(**data["vision"]),
                text=TextConfig(**data["text"]),
                activation=data.get("activation", "quick_gelu"),
            )
        except (KeyError, TypeError) as exc:
            raise InvalidInputError(f"not a CLIP config: {exc}") from None


def _layers(keys: list[str], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.attn\.in_proj_weight$")
    found = sorted(int(m.group(1)) for k in keys if (m := pattern.match(k)))
    if not found or found != list(range(len(found))):
        raise CheckpointError(f"blocks under {prefix} must be numbered 0..N-1, found {found}")
    return len(found)


def _get(sd: Mapping[str, torch.Tensor], key: str) -> torch.Tensor:
    if key not in sd:
        sample = ", ".join(list(sd)[:5]) or "(no tensors)"
        raise CheckpointError(
            f"not a CLIP state dict in the OpenAI layout: key {key!r} is missing (found e.g. "
            f"{sample})"
        )
    return sd[key]


def config_from_state_dict(
    sd: Mapping[str, torch.Tensor],
    head_width: int = 64,
    activation: Activation = "quick_gelu",
    heads: tuple[int, int] | None = None,
) -> ClipConfig:
    """The architecture of an OpenAI-layout CLIP (ViT image tower) from its tensor shapes.

    Args:
        sd: the state dict.
        head_width: width of one attention head (OpenAI: 64), used when ``heads`` is None.
        activation: the MLP activation (the shapes do not show it).
        heads: explicit (vision heads, text heads), e.g. from a Hugging Face config.
    """
    if "visual.conv1.weight" not in sd and any(k.startswith("visual.layer1.") for k in sd):
        raise CheckpointError("ResNet image towers (RN50 ...) are not supported, only ViT")
    keys = list(sd)
    conv = _get(sd, "visual.conv1.weight")  # (W, 3, p, p)
    v_width, patch = int(conv.shape[0]), int(conv.shape[-1])
    v_pos = _get(sd, "visual.positional_embedding")  # (grid^2 + 1, W)
    grid = round((int(v_pos.shape[0]) - 1) ** 0.5)
    if grid * grid + 1 != int(v_pos.shape[0]):
        raise CheckpointError(f"visual.positional_embedding has {v_pos.shape[0]} rows, not g^2+1")
    t_width = int(_get(sd, "ln_final.weight").shape[0])
    if heads is None:
        if v_width % head_width or t_width % head_width:
            raise CheckpointError(
                f"widths {v_width} (image) and {t_width} (text) are not multiples of the head "
                f"width {head_width}; pass the head width or the head counts"
            )
        heads = (v_width // head_width, t_width // head_width)
    vision = VisionConfig(
        image_size=grid * patch,
        patch_size=patch,
        width=v_width,
        layers=_layers(keys, "visual.transformer.resblocks."),
        heads=heads[0],
        mlp_dim=int(_get(sd, "visual.transformer.resblocks.0.mlp.c_fc.weight").shape[0]),
    )
    table = _get(sd, "token_embedding.weight")  # (V, W)
    text = TextConfig(
        context_length=int(_get(sd, "positional_embedding").shape[0]),
        vocab_size=int(table.shape[0]),
        width=t_width,
        layers=_layers(keys, "transformer.resblocks."),
        heads=heads[1],
        mlp_dim=int(_get(sd, "transformer.resblocks.0.mlp.c_fc.weight").shape[0]),
    )
    embed_dim = int(_get(sd, "text_projection").shape[1])  # (W, E)
    return ClipConfig(embed_dim=embed_dim, vision=vision, text=text, activation=activation)
