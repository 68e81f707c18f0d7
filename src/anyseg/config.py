"""Frozen configuration of the SAM architecture, and the presets.

One dataclass per architectural box. The official presets (vit_b, vit_l, vit_h) reproduce the
hyper-parameters of the released checkpoints; ``tiny`` is the parity-fixture model and ``test`` a
very small model for unit tests. Every field an official-layout checkpoint carries in its tensor
shapes can be recovered from them (:func:`anyseg.checkpoint.infer_config`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from anyseg.errors import InvalidInputError

#: How a model runs: "exact" matches the original implementation in float32; "fast" trades a
#: little fidelity for speed (bfloat16 where the CPU does it well).
Mode = Literal["exact", "fast"]


@dataclass(frozen=True)
class ImageEncoderConfig:
    """ViT image encoder (MAE ViT with windowed + global attention, paper §3)."""

    img_size: int = 1024  # square input side; the embedding is img_size // patch_size per side
    patch_size: int = 16
    in_chans: int = 3
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    out_chans: int = 256  # neck output = prompt/decoder width
    qkv_bias: bool = True
    use_abs_pos: bool = True
    use_rel_pos: bool = True
    window_size: int = 14  # 0 = every block global
    global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)
    drop_path_rate: float = 0.0  # stochastic depth (training only), linearly increasing per block

    @property
    def embedding_size(self) -> int:
        """Side of the (square) image embedding grid."""
        return self.img_size // self.patch_size

    def validate(self) -> None:
        if self.img_size % self.patch_size:
            raise InvalidInputError(
                f"img_size {self.img_size} must be a multiple of patch_size {self.patch_size}"
            )
        if self.embed_dim % self.num_heads:
            raise InvalidInputError(
                f"embed_dim {self.embed_dim} must be divisible by num_heads {self.num_heads}"
            )
        bad = [i for i in self.global_attn_indexes if not 0 <= i < self.depth]
        if bad:
            raise InvalidInputError(f"global_attn_indexes {bad} outside 0..{self.depth - 1}")


@dataclass(frozen=True)
class PromptEncoderConfig:
    """Sparse (points, boxes) and dense (mask) prompt embedding."""

    embed_dim: int = 256
    mask_in_chans: int = 16


@dataclass(frozen=True)
class MaskDecoderConfig:
    """Two-way transformer mask decoder."""

    transformer_dim: int = 256
    depth: int = 2
    num_heads: int = 8  # not recoverable from tensor shapes; 8 in every official checkpoint
    mlp_dim: int = 2048
    attention_downsample_rate: int = 2
    num_multimask_outputs: int = 3
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256


@dataclass(frozen=True)
class SamConfig:
    """The whole model: encoder, prompt encoder, decoder and input normalisation."""

    image_encoder: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    prompt_encoder: PromptEncoderConfig = field(default_factory=PromptEncoderConfig)
    mask_decoder: MaskDecoderConfig = field(default_factory=MaskDecoderConfig)
    pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    mask_threshold: float = 0.0

    def validate(self) -> None:
        """Raise :class:`InvalidInputError` if the boxes do not fit together."""
        self.image_encoder.validate()
        widths = {
            "image_encoder.out_chans": self.image_encoder.out_chans,
            "prompt_encoder.embed_dim": self.prompt_encoder.embed_dim,
            "mask_decoder.transformer_dim": self.mask_decoder.transformer_dim,
        }
        if len(set(widths.values())) != 1:
            raise InvalidInputError(f"embedding widths must agree, got {widths}")
        dec = self.mask_decoder
        internal = dec.transformer_dim // dec.attention_downsample_rate
        if internal % dec.num_heads or dec.transformer_dim % dec.num_heads:
            raise InvalidInputError(
                f"decoder num_heads {dec.num_heads} must divide "
                f"{dec.transformer_dim} and {internal}"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SamConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error that names them."""
        sections = {
            "image_encoder": ImageEncoderConfig,
            "prompt_encoder": PromptEncoderConfig,
            "mask_decoder": MaskDecoderConfig,
        }
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidInputError(f"unknown SamConfig keys: {unknown}")
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key in sections:
                sub = sections[key]
                sub_known = {f.name for f in dataclasses.fields(sub)}
                bad = sorted(set(value) - sub_known)
                if bad:
                    raise InvalidInputError(f"unknown {key} keys: {bad}")
                value = {k: tuple(v) if isinstance(v, list) else v for k, v in value.items()}
                kwargs[key] = sub(**value)
            else:
                kwargs[key] = tuple(value) if isinstance(value, list) else value
        return cls(**kwargs)


def _vit(embed_dim: int, depth: int, num_heads: int, global_attn: tuple[int, ...]) -> SamConfig:
    return SamConfig(
        image_encoder=ImageEncoderConfig(
            embed_dim=embed_dim, depth=depth, num_heads=num_heads, global_attn_indexes=global_attn
        )
    )


PRESETS: dict[str, SamConfig] = {
    # The released SAM checkpoints (build_sam.py of the original release).
    "vit_b": _vit(768, 12, 12, (2, 5, 8, 11)),
    "vit_l": _vit(1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": _vit(1280, 32, 16, (7, 15, 23, 31)),
    # The parity-fixture model of ../shared/fixtures (tiny_sam.pth).
    "tiny": SamConfig(
        image_encoder=ImageEncoderConfig(
            embed_dim=96, depth=4, num_heads=3, global_attn_indexes=(1, 3)
        )
    ),
    # A very small model for unit tests: 256 px input, 16x16 embedding, 64x64 low-res masks.
    "test": SamConfig(
        image_encoder=ImageEncoderConfig(
            img_size=256,
            embed_dim=32,
            depth=2,
            num_heads=2,
            out_chans=32,
            window_size=6,
            global_attn_indexes=(1,),
        ),
        prompt_encoder=PromptEncoderConfig(embed_dim=32, mask_in_chans=8),
        mask_decoder=MaskDecoderConfig(
            transformer_dim=32, depth=2, num_heads=8, mlp_dim=64, iou_head_hidden_dim=32
        ),
    ),
}


def get_preset(name: str) -> SamConfig:
    """Look a preset up by name, with an error that lists the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise InvalidInputError(
            f"unknown model preset {name!r}; known presets: {', '.join(sorted(PRESETS))}"
        ) from None
