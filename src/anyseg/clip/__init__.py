"""CLIP for text prompts: modules in OpenAI's layout, tokenizers, loaders, mask crops.

- :mod:`~anyseg.clip.model`: :class:`ClipModel` (pure nn.Modules; masked attention of the class
  token in the last image block).
- :mod:`~anyseg.clip.config`: :class:`ClipConfig` and :func:`config_from_state_dict`.
- :mod:`~anyseg.clip.tokenizer`: :class:`BpeTokenizer` (OpenAI's vocabulary) and
  :class:`WordTokenizer` (anyseg's own small CLIP).
- :mod:`~anyseg.clip.loading`: :func:`load_clip` for OpenAI / open_clip / Hugging Face files and
  anyseg's ``.safetensors`` (None: the bundled ``clip_synth.safetensors``), :func:`save_clip`.
- :mod:`~anyseg.clip.crops`: the paper's crop around a mask (:func:`random_mask_crop`).

Example::

    clip = load_clip()                                     # or load_clip("ViT-B-32.safetensors")
    crop = mask_crop(image, mask, clip.image_size)          # (S, S, 3) uint8 and (S, S) bool
    img = clip.encode_image(crop.image[None], crop.mask[None], normalize=True)   # (1, E)
    txt = clip.encode_text(["the yellow star", "a red ellipse"], normalize=True) # (2, E)
    scores = img @ txt.T
"""

from anyseg.clip.config import ClipConfig, TextConfig, VisionConfig, config_from_state_dict
from anyseg.clip.crops import MaskCrop, mask_crop, random_mask_crop, to_pixels
from anyseg.clip.loading import (
    BUNDLED_CLIP,
    ClipOptions,
    LoadedClip,
    as_loaded_clip,
    load_clip,
    load_clip_options,
    save_clip,
)
from anyseg.clip.model import ClipModel, ClipOutput, patch_mask
from anyseg.clip.tokenizer import BpeTokenizer, Tokenizer, WordTokenizer

__all__ = [
    "BUNDLED_CLIP",
    "BpeTokenizer",
    "ClipConfig",
    "ClipModel",
    "ClipOptions",
    "ClipOutput",
    "LoadedClip",
    "MaskCrop",
    "TextConfig",
    "Tokenizer",
    "VisionConfig",
    "WordTokenizer",
    "as_loaded_clip",
    "config_from_state_dict",
    "load_clip",
    "load_clip_options",
    "mask_crop",
    "patch_mask",
    "random_mask_crop",
    "save_clip",
    "to_pixels",
]
