"""Settings of an ONNX export, each written once: what the decoder graph returns
(:class:`DecoderExportOptions`, the original export script's flags) inside what is exported
(:class:`ExportConfig`). ``anyseg export``'s flags come from the field metadata."""

from __future__ import annotations

from dataclasses import dataclass, field

from anyseg.errors import InvalidInputError
from anyseg.settings import opt

DEFAULT_OPSET = 17
MIN_OPSET = 14  # scaled_dot_product_attention and dynamic Resize need >= 14


@dataclass(frozen=True)
class DecoderExportOptions:
    """What the exported decoder graph returns (the original export script's flags)."""

    return_single_mask: bool = field(
        default=False,
        metadata=opt(
            "the decoder returns only the best mask (faster upscaling for large images)",
            const=True,
        ),
    )
    use_stability_score: bool = field(
        default=False,
        metadata=opt(
            "return the low-res stability score (offset 1.0) instead of the predicted IoU",
            const=True,
        ),
    )
    return_extra_metrics: bool = field(
        default=False,
        metadata=opt("also return stability_scores and areas of the upscaled masks", const=True),
    )
    gelu_approximate: bool = field(
        default=False,
        metadata=opt(
            "tanh-approximated GELU, for runtimes with a slow or missing Erf op", const=True
        ),
    )
    # Tracing details, not user options: N dynamic (else fixed to num_points), and the N of the
    # example inputs used for tracing.
    dynamic_points: bool = field(default=True, metadata={"cli": False})
    num_points: int = field(default=5, metadata={"cli": False})


@dataclass(frozen=True)
class ExportConfig:
    """Which graphs ``export_model`` writes, and how."""

    encoder: bool = field(default=False, metadata=opt("also export the image encoder", const=True))
    quantize: bool = field(
        default=False,
        metadata=opt(
            "also write decoder_int8.onnx (dynamic int8 quantization; deviation reported)",
            const=True,
        ),
    )
    opset: int = field(default=DEFAULT_OPSET, metadata=opt(f"ONNX opset version, >= {MIN_OPSET}"))
    decoder: DecoderExportOptions = field(default_factory=DecoderExportOptions)

    def __post_init__(self) -> None:
        check_opset(self.opset)


def check_opset(opset: int) -> None:
    """Raise :class:`InvalidInputError` for an opset the graphs cannot be written in."""
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < MIN_OPSET:
        raise InvalidInputError(f"opset must be an integer >= {MIN_OPSET}, got {opset!r}")
