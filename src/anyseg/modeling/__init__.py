"""Pure ``nn.Module`` building blocks of SAM: no I/O, no numpy, no device choice."""

from anyseg.modeling.image_encoder import ImageEncoderViT
from anyseg.modeling.mask_decoder import MaskDecoder
from anyseg.modeling.prompt_encoder import PromptEncoder
from anyseg.modeling.sam import Sam, build_sam
from anyseg.modeling.transformer import TwoWayTransformer

__all__ = [
    "ImageEncoderViT",
    "MaskDecoder",
    "PromptEncoder",
    "Sam",
    "TwoWayTransformer",
    "build_sam",
]
