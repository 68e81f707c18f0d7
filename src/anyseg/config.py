"""Frozen configuration of the SAM architecture, and the presets.

One dataclass per architectural box. The official presets (vit_b, vit_l, vit_h) reproduce the
hyper-parameters of the released checkpoints; ``tiny`` is the parity-fixture model and ``test`` a
very small model for unit tests. Every field an official-layout checkpoint carries in its tensor
shapes can be recovered from them (:func:`anyseg.checkpoint.infer_config`).

Checkpoint families are compositions of the same boxes: the image encoder is a ViT
(:class:`ImageEncoderConfig`, SAM) or a TinyViT (:class:`TinyViTConfig`, MobileSAM), told apart by
its ``kind``; SAM-HQ adds :class:`HQConfig` (its HQ output token and feature fusion) to either.
:attr:`SamConfig.family` names the result.
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
    kind: Literal["vit"] = "vit"

    @property
    def embedding_size(self) -> int:
        """Side of the (square) image embedding grid."""
        return self.img_size // self.patch_size

    @property
    def early_dim(self) -> int:
        """Channels of the early features SAM-HQ fuses: the output of the first global block."""
        return self.embed_dim

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
class TinyViTConfig:
    """TinyViT image encoder (Wu et al. 2022) as MobileSAM uses it: a convolutional stage, then
    windowed-attention stages, then SAM's neck.

    The patch embedding (two stride-2 convolutions) and the patch mergings halve the
    resolution, except the last ``keep_res_merges`` mergings, which keep it: MobileSAM keeps the
    last one, so its embedding has stride 16 (4 x 2 x 2); keeping two gives stride 8 (for
    students of teachers with 8 px patches). The defaults are MobileSAM's ``vit_t``. Only
    ``img_size`` and ``keep_res_merges`` leave no trace in the tensor shapes (1024 and 1 in every
    released model; anyseg's ``.safetensors`` files carry both).
    """

    img_size: int = 1024
    in_chans: int = 3
    embed_dims: tuple[int, ...] = (64, 128, 160, 320)
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (2, 4, 5, 10)  # per stage; stage 0 is convolutional (unused)
    window_sizes: tuple[int, ...] = (7, 7, 14, 7)
    mlp_ratio: float = 4.0
    mbconv_expand_ratio: float = 4.0  # width multiplier inside the stage-0 MBConv blocks
    local_conv_size: int = 3  # depthwise convolution between attention and MLP
    out_chans: int = 256  # neck output = prompt/decoder width
    num_classes: int = 1000  # TinyViT's classifier head, unused but part of the checkpoints
    drop_path_rate: float = 0.0  # stochastic depth (training only), linear over all blocks
    keep_res_merges: int = 1  # how many of the last patch mergings keep the resolution
    kind: Literal["tinyvit"] = "tinyvit"

    @property
    def stride(self) -> int:
        """Pixels per embedding cell."""
        return 4 * 2 ** (len(self.depths) - 1 - self.keep_res_merges)

    @property
    def embedding_size(self) -> int:
        """Side of the (square) image embedding grid."""
        return self.img_size // self.stride

    @property
    def depth(self) -> int:
        """Number of blocks over all stages (for layer-wise lr decay)."""
        return sum(self.depths)

    @property
    def early_dim(self) -> int:
        """Channels of the early features SAM-HQ fuses: stage 1's output after its merging."""
        return self.embed_dims[2]

    def validate(self) -> None:
        lengths = {
            len(v) for v in (self.embed_dims, self.depths, self.num_heads, self.window_sizes)
        }
        if lengths != {4}:
            raise InvalidInputError(
                "TinyViT needs 4 stages: embed_dims, depths, num_heads and window_sizes of "
                f"length 4, got {self.embed_dims}, {self.depths}, {self.num_heads}, "
                f"{self.window_sizes}"
            )
        if not 0 <= self.keep_res_merges <= len(self.depths) - 1:
            raise InvalidInputError(
                f"keep_res_merges {self.keep_res_merges} must be in 0..{len(self.depths) - 1}"
            )
        if self.img_size % self.stride:
            raise InvalidInputError(
                f"img_size {self.img_size} must be a multiple of the stride {self.stride}"
            )
        for i in range(1, len(self.depths)):
            if self.embed_dims[i] % self.num_heads[i]:
                raise InvalidInputError(
                    f"TinyViT stage {i}: width {self.embed_dims[i]} must be divisible by "
                    f"num_heads {self.num_heads[i]}"
                )


EncoderConfig = ImageEncoderConfig | TinyViTConfig
ENCODER_KINDS: dict[str, type[ImageEncoderConfig] | type[TinyViTConfig]] = {
    "vit": ImageEncoderConfig,
    "tinyvit": TinyViTConfig,
}


@dataclass(frozen=True)
class HQConfig:
    """SAM-HQ (Ke et al. 2023) on top of the mask decoder: an HQ output token whose mask is
    predicted from a fusion of the encoder's early features with the final embedding.

    The early features come from the encoder (``early_dim`` of its config). The HQ mask is added
    to SAM's own mask (best of the three multimask outputs, or the single one), unless
    ``hq_token_only`` asks for the HQ mask alone (SAM-HQ's advice: only for images of a single
    object).
    """

    hq_token_only: bool = False


@dataclass(frozen=True)
class PromptEncoderConfig:
    """Sparse (points, boxes, text) and dense (mask) prompt embedding.

    ``text_embed_dim`` > 0 adds the optional text path (paper §7.5, appendix D.5): a CLIP
    embedding of that width goes through a small MLP (``text_embed_dim -> embed_dim ->
    embed_dim``) plus a learned "text" type embedding, one sparse token. 0 (every released
    checkpoint) builds no text path; checkpoints show the width in
    ``prompt_encoder.text_mlp.layers.0.weight``.
    """

    embed_dim: int = 256
    mask_in_chans: int = 16
    text_embed_dim: int = 0

    @property
    def has_text(self) -> bool:
        """Whether the prompt encoder takes text (CLIP) embeddings."""
        return self.text_embed_dim > 0


@dataclass(frozen=True)
class TextClipRecord:
    """Which CLIP a model's text path was trained with (kept beside the weights, in the
    ``anyseg_text_clip`` safetensors metadata): the SHA-256 of the CLIP weights file, its
    embedding width, and where it was loaded from (informative only)."""

    sha256: str
    embed_dim: int
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> TextClipRecord:
        """Parse a record; raise :class:`InvalidInputError` on anything malformed."""
        try:
            record = cls(str(data["sha256"]), int(data["embed_dim"]), str(data.get("source", "")))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InvalidInputError(f"not a text-CLIP record: {data!r} ({exc})") from None
        if record.embed_dim < 1:
            raise InvalidInputError(f"text-CLIP record with width {record.embed_dim}")
        return record


@dataclass(frozen=True)
class AmgThresholds:
    """The automatic generator's filter thresholds a model recommends for itself (kept beside
    the weights, in the ``anyseg_amg_thresholds`` safetensors metadata, written when the model
    is trained or calibrated; see ``scripts/recommend_amg_thresholds.py``). The generator uses
    them where its config leaves a threshold unset; SAM's own checkpoints carry none, so they
    get the paper's 0.88 / 0.95. ``source`` says how they were chosen (informative only)."""

    pred_iou_thresh: float
    stability_score_thresh: float
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> AmgThresholds:
        """Parse a record; raise :class:`InvalidInputError` on anything malformed."""
        try:
            record = cls(
                float(data["pred_iou_thresh"]),
                float(data["stability_score_thresh"]),
                str(data.get("source", "")),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InvalidInputError(f"not an AMG thresholds record: {data!r} ({exc})") from None
        for name in ("pred_iou_thresh", "stability_score_thresh"):
            value = getattr(record, name)
            if not 0.0 <= value <= 1.0:
                raise InvalidInputError(f"AMG thresholds record: {name} {value} is not in [0, 1]")
        return record


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

    image_encoder: EncoderConfig = field(default_factory=ImageEncoderConfig)
    prompt_encoder: PromptEncoderConfig = field(default_factory=PromptEncoderConfig)
    mask_decoder: MaskDecoderConfig = field(default_factory=MaskDecoderConfig)
    pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    mask_threshold: float = 0.0
    hq: HQConfig | None = None  # SAM-HQ's decoder additions

    @property
    def family(self) -> str:
        """The checkpoint family: "sam", "mobile_sam", "sam_hq" or "light_hq_sam" (SAM-HQ on
        TinyViT)."""
        tiny = self.image_encoder.kind == "tinyvit"
        if self.hq is None:
            return "mobile_sam" if tiny else "sam"
        return "light_hq_sam" if tiny else "sam_hq"

    def validate(self) -> None:
        """Raise :class:`InvalidInputError` if the boxes do not fit together."""
        self.image_encoder.validate()
        if (
            self.hq is not None
            and isinstance(self.image_encoder, ImageEncoderConfig)
            and self.image_encoder.window_size > 0
            and not self.image_encoder.global_attn_indexes
        ):
            raise InvalidInputError(
                "SAM-HQ fuses the output of the first global-attention block: give the ViT "
                "global_attn_indexes"
            )
        if self.prompt_encoder.text_embed_dim < 0:
            raise InvalidInputError(
                f"prompt_encoder.text_embed_dim must be >= 0 (0: no text path), got "
                f"{self.prompt_encoder.text_embed_dim}"
            )
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
        sections: dict[str, type[Any]] = {
            "prompt_encoder": PromptEncoderConfig,
            "mask_decoder": MaskDecoderConfig,
            "hq": HQConfig,
        }
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidInputError(f"unknown SamConfig keys: {unknown}")
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key == "hq" and value is None:
                kwargs[key] = None
            elif key in sections or key == "image_encoder":
                if key == "image_encoder":
                    kind = value.get("kind", "vit")
                    if kind not in ENCODER_KINDS:
                        raise InvalidInputError(
                            f"unknown image_encoder kind {kind!r}; known: {sorted(ENCODER_KINDS)}"
                        )
                    sub = ENCODER_KINDS[kind]
                else:
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


def _vit(
    embed_dim: int, depth: int, num_heads: int, global_attn: tuple[int, ...], hq: bool = False
) -> SamConfig:
    return SamConfig(
        image_encoder=ImageEncoderConfig(
            embed_dim=embed_dim, depth=depth, num_heads=num_heads, global_attn_indexes=global_attn
        ),
        hq=HQConfig() if hq else None,
    )


_TEST_TINYVIT = TinyViTConfig(
    img_size=256,
    embed_dims=(8, 16, 24, 32),
    depths=(1, 1, 2, 1),
    num_heads=(1, 2, 3, 4),
    window_sizes=(7, 7, 14, 7),
    out_chans=32,
    num_classes=10,
)


PRESETS: dict[str, SamConfig] = {
    # The released SAM checkpoints (build_sam.py of the original release).
    "vit_b": _vit(768, 12, 12, (2, 5, 8, 11)),
    "vit_l": _vit(1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": _vit(1280, 32, 16, (7, 15, 23, 31)),
    # MobileSAM's mobile_sam.pt (TinyViT-5M encoder, SAM's prompt encoder and decoder).
    "vit_t": SamConfig(image_encoder=TinyViTConfig()),
    # SAM-HQ's sam_hq_vit_{b,l,h}.pth and the light HQ model sam_hq_vit_tiny.pth.
    "hq_vit_b": _vit(768, 12, 12, (2, 5, 8, 11), hq=True),
    "hq_vit_l": _vit(1024, 24, 16, (5, 11, 17, 23), hq=True),
    "hq_vit_h": _vit(1280, 32, 16, (7, 15, 23, 31), hq=True),
    "hq_vit_tiny": SamConfig(image_encoder=TinyViTConfig(), hq=HQConfig()),
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
# The unit-test model of each other family: the "test" prompt encoder and decoder with a tiny
# TinyViT (256 px, 16x16 embedding) and/or SAM-HQ's additions.
PRESETS["test_tinyvit"] = dataclasses.replace(PRESETS["test"], image_encoder=_TEST_TINYVIT)
PRESETS["test_hq"] = dataclasses.replace(PRESETS["test"], hq=HQConfig())
PRESETS["test_hq_tinyvit"] = dataclasses.replace(PRESETS["test_tinyvit"], hq=HQConfig())


def get_preset(name: str) -> SamConfig:
    """Look a preset up by name, with an error that lists the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise InvalidInputError(
            f"unknown model preset {name!r}; known presets: {', '.join(sorted(PRESETS))}"
        ) from None
