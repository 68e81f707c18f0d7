"""anyseg: Segment Anything, complete.

Public API (the names users of the original ``segment_anything`` know are kept):

- :func:`load` builds the right model from any checkpoint in the official layout;
  :func:`load_default` the embedded default model; :func:`save` writes either format.
- :func:`build_sam`, :data:`sam_model_registry`, :class:`Sam`, :class:`SamPredictor`.
- :class:`SamAutomaticMaskGenerator` (fully automatic mask generation).
- :class:`OnnxPredictor`, :func:`export_model` (ONNX export; needs the ``onnx`` extra).
"""

from __future__ import annotations

import os

# OpenMP threads that spin while idle make PyTorch several times slower on a busy CPU (measured:
# vit_b decode 250 ms vs 500-2100 ms on a loaded 2-core machine). The variable is read once, when
# torch is first imported, so it is set here, before that; a value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from collections.abc import Callable
from typing import Any

from anyseg._version import __version__
from anyseg.checkpoint import load, load_default, load_model, save
from anyseg.config import PRESETS, SamConfig
from anyseg.modeling import Sam, build_sam
from anyseg.predictor import SamPredictor
from anyseg.releases import download


def _registry_builder(preset: str) -> Callable[..., Sam]:
    def build(checkpoint: str | None = None) -> Sam:
        model = build_sam(PRESETS[preset])
        if checkpoint is not None:
            from anyseg.checkpoint import load_state_dict_strict, official_names, read_state_dict

            sd, _ = read_state_dict(checkpoint)
            load_state_dict_strict(model, official_names(sd), source=str(checkpoint))
        return model

    build.__doc__ = f"Build SAM {preset} (random weights, or ``checkpoint``'s, loaded strictly)."
    return build


# As in the original release: sam_model_registry["vit_b"](checkpoint="sam_vit_b_01ec64.pth").
sam_model_registry: dict[str, Callable[..., Sam]] = {
    "default": _registry_builder("vit_h"),
    "vit_h": _registry_builder("vit_h"),
    "vit_l": _registry_builder("vit_l"),
    "vit_b": _registry_builder("vit_b"),
    "vit_t": _registry_builder("vit_t"),  # MobileSAM's name for its TinyViT model
}


def __getattr__(name: str) -> Any:
    # The generator lives in a heavier subpackage: import it on first use.
    if name == "SamAutomaticMaskGenerator":
        from anyseg.automatic import SamAutomaticMaskGenerator

        return SamAutomaticMaskGenerator
    if name in ("OnnxPredictor", "export_model"):
        from anyseg import export

        return getattr(export, name)
    raise AttributeError(f"module 'anyseg' has no attribute {name!r}")


__all__ = [
    "PRESETS",
    "OnnxPredictor",
    "Sam",
    "SamAutomaticMaskGenerator",
    "SamConfig",
    "SamPredictor",
    "__version__",
    "build_sam",
    "download",
    "export_model",
    "load",
    "load_default",
    "load_model",
    "sam_model_registry",
    "save",
]
