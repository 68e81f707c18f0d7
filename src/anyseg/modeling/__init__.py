"""Pure ``nn.Module`` building blocks of SAM: no I/O, no numpy, no device choice."""

from anyseg.modeling.hq_decoder import MaskDecoderHQ
from anyseg.modeling.image_encoder import ImageEncoderViT
from anyseg.modeling.mask_decoder import MaskDecoder
from anyseg.modeling.prompt_encoder import PromptEncoder
from anyseg.modeling.sam import ImageEncoding, Sam, build_sam
from anyseg.modeling.tiny_vit import TinyViT
from anyseg.modeling.transformer import TwoWayTransformer

__all__ = [
    "ImageEncoderViT",
    "ImageEncoding",
    "MaskDecoder",
    "MaskDecoderHQ",
    "PromptEncoder",
    "Sam",
    "TinyViT",
    "TwoWayTransformer",
    "build_sam",
]
