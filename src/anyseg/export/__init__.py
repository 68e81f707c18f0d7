"""ONNX export of SAM and an onnxruntime predictor (optional dependencies: onnx, onnxruntime).

- :func:`export_decoder`: prompt encoder + mask decoder as one graph with the input/output
  contract of the original release's ``SamOnnxModel`` (see :mod:`anyseg.export.decoder`).
- :func:`export_encoder`: the image encoder, (1, 3, S, S) normalised padded image -> embedding.
- :func:`quantize_decoder`: dynamic int8 quantization of an exported decoder.
- :func:`export_model`: all of the above into a folder, with a self-check against PyTorch
  recorded in ``export.json`` (what ``anyseg export`` runs).
- :class:`OnnxPredictor`: ``SamPredictor``'s API on onnxruntime sessions.
- :func:`compare_predictors`: measured parity between two predictors on standard prompts.

``onnx``/``onnxruntime`` are imported on first use; without them a
:class:`MissingDependencyError` says ``pip install anyseg[onnx]``.
"""

from __future__ import annotations

from anyseg.export._deps import MissingDependencyError
from anyseg.export.bundle import ExportResult, export_model, random_image
from anyseg.export.config import DecoderExportOptions, ExportConfig
from anyseg.export.decoder import (
    SamOnnxDecoder,
    TensorSpec,
    export_decoder,
)
from anyseg.export.encoder import SamOnnxEncoder, export_encoder
from anyseg.export.onnx_io import read_metadata
from anyseg.export.parity import (
    CaseDeviation,
    ParityReport,
    PromptCase,
    compare_predictors,
    default_cases,
)
from anyseg.export.quantize import quantize_decoder
from anyseg.export.runtime import OnnxPredictor, preprocess_image

__all__ = [
    "CaseDeviation",
    "DecoderExportOptions",
    "ExportConfig",
    "ExportResult",
    "MissingDependencyError",
    "OnnxPredictor",
    "ParityReport",
    "PromptCase",
    "SamOnnxDecoder",
    "SamOnnxEncoder",
    "TensorSpec",
    "compare_predictors",
    "default_cases",
    "export_decoder",
    "export_encoder",
    "export_model",
    "preprocess_image",
    "quantize_decoder",
    "random_image",
    "read_metadata",
]
