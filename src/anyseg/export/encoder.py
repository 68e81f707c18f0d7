"""ONNX export of the image encoder.

input
    ``image`` (1, 3, S, S) float32: the image resized so its long side is S (the encoder input
    size, 1024 for the official models), normalised with the model's pixel mean/std and
    zero-padded at the bottom/right (what ``Sam.preprocess`` returns).

outputs
    ``image_embeddings`` (1, C, S/16, S/16) float32: the decoder's ``image_embeddings`` input;
    for SAM-HQ models also ``hq_features`` (1, C/8, S/4, S/4) float32, the decoder's input of the
    same name (the per-image fusion of the encoder's early and final features).

Every encoder family exports: SAM's ViT and MobileSAM's TinyViT.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor, nn

from anyseg.export.config import DEFAULT_OPSET, check_opset
from anyseg.export.decoder import TensorSpec, trace_to_onnx
from anyseg.modeling import Sam


class SamOnnxEncoder(nn.Module):
    """The model's image encoder (weights shared) with a fixed (1, 3, S, S) input."""

    def __init__(self, model: Sam) -> None:
        super().__init__()
        self.model = model
        self.img_size = model.img_size
        cfg = model.config.image_encoder
        self.out_chans = cfg.out_chans
        self.grid = cfg.embedding_size

    def forward(self, image: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        """(1, 3, S, S) normalised, padded image -> (1, C, S/16, S/16) embedding (and, for
        SAM-HQ, the (1, C/8, S/4, S/4) HQ features)."""
        encoding = self.model.encode(image)
        if encoding.hq_features is None:
            return encoding.embedding
        return encoding.embedding, encoding.hq_features

    def example_inputs(self) -> tuple[Tensor]:
        gen = torch.Generator().manual_seed(0)
        image = torch.randn(1, 3, self.img_size, self.img_size, generator=gen)
        return (image.to(self.model.device),)

    def input_specs(self) -> list[TensorSpec]:
        s = self.img_size
        return [
            TensorSpec("image", (1, 3, s, s), "float32", "resized, normalised, zero-padded image")
        ]

    def output_specs(self) -> list[TensorSpec]:
        g, c = self.grid, self.out_chans
        specs = [TensorSpec("image_embeddings", (1, c, g, g), "float32", "embedding")]
        if self.model.is_hq:
            specs.append(
                TensorSpec("hq_features", (1, c // 8, 4 * g, 4 * g), "float32", "SAM-HQ fusion")
            )
        return specs


def export_encoder(
    model: Sam, path: str | os.PathLike[str], opset: int = DEFAULT_OPSET
) -> SamOnnxEncoder:
    """Export the image encoder of ``model`` to an ONNX file at ``path`` (atomically, with the
    config, pixel mean/std and image size as ``anyseg.*`` metadata)."""
    from anyseg.export.onnx_io import write_onnx_atomically

    check_opset(opset)
    wrapper = SamOnnxEncoder(model)
    inputs = wrapper.example_inputs()
    metadata = {
        "anyseg.kind": "encoder",
        "anyseg.config": model.config.to_dict(),
        "anyseg.img_size": model.img_size,
        "anyseg.pixel_mean": list(model.config.pixel_mean),
        "anyseg.pixel_std": list(model.config.pixel_std),
    }
    write_onnx_atomically(
        Path(path),
        lambda tmp: trace_to_onnx(
            wrapper,
            inputs,
            tmp,
            [s.name for s in wrapper.input_specs()],
            [s.name for s in wrapper.output_specs()],
            {},
            opset,
        ),
        metadata,
        {spec.name: spec.shape for spec in wrapper.output_specs()},
    )
    return wrapper
