"""Export a model to a folder of ONNX graphs that checks itself.

``export_model`` writes ``decoder.onnx`` (and optionally ``encoder.onnx`` and the int8
``decoder_int8.onnx``), then runs the same prompts on a random image through the PyTorch
predictor and through onnxruntime, and records the measured deviation together with the graph
contract (input/output names, shapes, dtypes) and the model config in ``export.json``.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from anyseg.errors import InvalidInputError
from anyseg.export._deps import require
from anyseg.export.config import DecoderExportOptions, ExportConfig
from anyseg.export.decoder import export_decoder
from anyseg.export.onnx_io import prepare_output_dir
from anyseg.export.parity import ParityReport, compare_predictors, default_cases
from anyseg.io import atomic_write_json
from anyseg.modeling import Sam

MANIFEST_NAME = "export.json"
DECODER_NAME = "decoder.onnx"
DECODER_INT8_NAME = "decoder_int8.onnx"
ENCODER_NAME = "encoder.onnx"
CHECK_IMAGE_SIZE = (384, 512)  # (H, W): not square, so the padding/cropping path is exercised
LOGITS_ATOL = 1e-3  # float32 self-check tolerance (measured deviations are ~1e-5)


@dataclass(frozen=True)
class ExportResult:
    """What ``export_model`` wrote and measured."""

    out_dir: Path
    manifest_path: Path
    manifest: dict[str, Any]
    decoder_parity: ParityReport
    int8_parity: ParityReport | None
    end_to_end_parity: ParityReport | None
    encoder_max_abs: float | None  # largest |embedding difference|, ONNX vs PyTorch
    passed: bool | None  # float32 parity within tolerance (None: approximate GELU, not judged)


def random_image(size_hw: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A reproducible (H, W, 3) uint8 test image: smooth colour gradients plus noise."""
    rng = np.random.default_rng(seed)
    h, w = size_hw
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx / w * 255, yy / h * 255, (xx + yy) / (h + w) * 255], axis=-1)
    noisy = base + rng.normal(0, 40, size=(h, w, 3))
    return np.clip(noisy, 0, 255).astype(np.uint8)


def export_model(
    model: Sam,
    out_dir: str | os.PathLike[str],
    config: ExportConfig | None = None,
    *,
    check_image_size: tuple[int, int] = CHECK_IMAGE_SIZE,
    seed: int = 0,
    threads: int | None = None,
    log: Callable[[str], None] | None = None,
) -> ExportResult:
    """Export ``model`` to ``out_dir`` and measure the graphs against the PyTorch predictor.

    Args:
        model: a float32 SAM (any device; the graphs run on the CPU).
        out_dir: folder to write ``decoder.onnx``, ``encoder.onnx``, ``decoder_int8.onnx``
            and ``export.json`` into (created if missing).
        config: which graphs, the opset and the decoder graph's options (default: the decoder
            only, opset 17, the original export's outputs).
        check_image_size: (H, W) of the random image of the self-check.
        seed: seed of the random image.
        threads: onnxruntime intra-op threads for the self-check.
        log: called with one line per step (e.g. ``print``).

    Returns:
        The parity reports and the manifest written to ``out_dir/export.json``.
    """
    from anyseg.export.encoder import export_encoder
    from anyseg.export.quantize import quantize_decoder
    from anyseg.export.runtime import OnnxPredictor
    from anyseg.predictor import SamPredictor

    config = config or ExportConfig()
    options = config.decoder
    say = log or (lambda _msg: None)
    require("onnx")
    require("onnxruntime")
    dtypes = {p.dtype for p in model.parameters()}
    if dtypes != {torch.float32}:
        raise InvalidInputError(
            f"ONNX export needs a float32 model, got parameters of {sorted(map(str, dtypes))}; "
            "call model.float() first"
        )
    out = prepare_output_dir(out_dir)
    files: dict[str, str] = {}

    say(f"exporting the prompt encoder + mask decoder to {out / DECODER_NAME}")
    dec = export_decoder(model, out / DECODER_NAME, options, opset=config.opset)
    files["decoder"] = DECODER_NAME
    graphs: dict[str, Any] = {
        "decoder": {
            "inputs": [s.to_dict() for s in dec.input_specs()],
            "outputs": [s.to_dict() for s in dec.output_specs()],
        }
    }
    if config.quantize:
        say(f"quantizing the decoder (dynamic int8) to {out / DECODER_INT8_NAME}")
        quantize_decoder(out / DECODER_NAME, out / DECODER_INT8_NAME)
        files["decoder_int8"] = DECODER_INT8_NAME
        graphs["decoder_int8"] = graphs["decoder"]
    if config.encoder:
        say(f"exporting the image encoder to {out / ENCODER_NAME}")
        enc = export_encoder(model, out / ENCODER_NAME, opset=config.opset)
        files["encoder"] = ENCODER_NAME
        graphs["encoder"] = {
            "inputs": [s.to_dict() for s in enc.input_specs()],
            "outputs": [s.to_dict() for s in enc.output_specs()],
        }

    say(f"checking the graphs against PyTorch on a random {check_image_size} (H, W) image")
    image = random_image(check_image_size, seed)
    reference = SamPredictor(model)
    reference.set_image(image)
    assert reference.features is not None and reference.input_size is not None
    features = reference.features.detach().float().cpu().numpy()
    hq = reference.hq_features
    hq_features = None if hq is None else hq.detach().float().cpu().numpy()
    cases = default_cases(check_image_size, model.config.prompt_encoder.text_embed_dim)
    opts = {
        "single_mask": options.return_single_mask,
        "use_stability_score": options.use_stability_score,
    }

    def onnx_predictor(decoder_file: str, with_encoder: bool = False) -> OnnxPredictor:
        pred = OnnxPredictor(
            out / decoder_file, out / ENCODER_NAME if with_encoder else None, threads=threads
        )
        if with_encoder:
            pred.set_image(image)
        else:
            pred.set_embedding(features, check_image_size, reference.input_size, hq_features)
        return pred

    decoder_parity = compare_predictors(reference, onnx_predictor(DECODER_NAME), cases, **opts)
    int8_parity = None
    if config.quantize:
        int8_parity = compare_predictors(
            reference, onnx_predictor(DECODER_INT8_NAME), cases, **opts
        )
    end_to_end = encoder_max_abs = None
    if config.encoder:
        e2e = onnx_predictor(DECODER_NAME, with_encoder=True)
        encoder_max_abs = float(np.abs(e2e.get_image_embedding() - features).max())
        end_to_end = compare_predictors(reference, e2e, cases, **opts)

    passed: bool | None = None
    if not options.gelu_approximate:
        passed = decoder_parity.passed(LOGITS_ATOL) and (
            end_to_end is None or end_to_end.passed(LOGITS_ATOL)
        )
    manifest = _manifest(
        model,
        out,
        files,
        graphs,
        config.opset,
        options,
        {
            "image_size_hw": list(check_image_size),
            "seed": seed,
            "reference": "anyseg.predictor.SamPredictor (PyTorch, float32)",
            "logits_atol": LOGITS_ATOL,
            "passed": passed,
            "decoder": decoder_parity.to_dict(),
            "decoder_int8": None if int8_parity is None else int8_parity.to_dict(),
            "encoder_max_abs_embedding": encoder_max_abs,
            "end_to_end": None if end_to_end is None else end_to_end.to_dict(),
        },
    )
    manifest_path = _write_json(out / MANIFEST_NAME, manifest)
    say(f"wrote {manifest_path}")
    return ExportResult(
        out,
        manifest_path,
        manifest,
        decoder_parity,
        int8_parity,
        end_to_end,
        encoder_max_abs,
        passed,
    )


def _manifest(
    model: Sam,
    out: Path,
    files: dict[str, str],
    graphs: dict[str, Any],
    opset: int,
    options: DecoderExportOptions,
    parity: dict[str, Any],
) -> dict[str, Any]:
    from anyseg._version import __version__

    onnx = require("onnx")
    ort = require("onnxruntime")
    return {
        "format": "anyseg-onnx-export/1",
        "files": {key: _file_entry(out, name, graphs[key]) for key, name in files.items()},
        "opset": opset,
        "decoder_options": asdict(options),
        "config": model.config.to_dict(),
        "img_size": model.img_size,
        "mask_threshold": float(model.mask_threshold),
        "parity": parity,
        "versions": {
            "anyseg": __version__,
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": ort.__version__,
            "python": platform.python_version(),
        },
    }


def _file_entry(out: Path, name: str, graph: dict[str, Any]) -> dict[str, Any]:
    from anyseg.checkpoint import sha256_file
    from anyseg.export.onnx_io import external_data_name

    entry: dict[str, Any] = {
        "path": name,
        "bytes": (out / name).stat().st_size,
        "sha256": sha256_file(out / name),
    }
    data = out / external_data_name(out / name)
    if data.is_file():  # weights of a model over 2 GB, loaded from beside the .onnx file
        entry["external_data"] = {"path": data.name, "bytes": data.stat().st_size}
    return {**entry, **graph}


def _write_json(path: Path, data: dict[str, Any]) -> Path:
    atomic_write_json(path, data, indent=2)
    return path
