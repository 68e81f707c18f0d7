"""``anyseg export``: ONNX graphs of the decoder (and encoder) that check themselves."""

from __future__ import annotations

import argparse
from typing import Any

from anyseg.cli.common import add_model_arguments, model_options
from anyseg.export.config import ExportConfig
from anyseg.settings import add_arguments, from_arguments


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "export",
        help="export the prompt encoder + mask decoder (and image encoder) to ONNX",
        description=(
            "Write decoder.onnx (prompt encoder + mask decoder + mask upscaling, with the input/"
            "output contract of the original SAM's ONNX export, so apps written for it work), "
            "optionally encoder.onnx and an int8 decoder_int8.onnx, and export.json: the graph "
            "inputs/outputs, the model config, and the deviation from PyTorch measured on a "
            "random image right after export. Needs the optional packages onnx and onnxruntime "
            "(pip install anyseg[onnx])."
        ),
        epilog="example: anyseg export --checkpoint sam_vit_b_01ec64.pth --encoder -o onnx/",
    )
    add_model_arguments(p, exclude=("device", "mode", "clip"))  # export traces on the CPU, float32
    p.add_argument("-o", "--output", required=True, help="output folder (created if missing)")
    add_arguments(p, ExportConfig, nested=True)
    p.add_argument(
        "--threads", type=int, default=None, help="onnxruntime threads for the self-check"
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from anyseg.checkpoint import load_model
    from anyseg.errors import CheckpointError, InvalidInputError
    from anyseg.export._deps import require
    from anyseg.export.bundle import export_model
    from anyseg.export.onnx_io import prepare_output_dir

    config = from_arguments(ExportConfig, args)
    checkpoint = model_options(args).checkpoint
    if args.threads is not None and args.threads < 1:
        raise InvalidInputError(f"--threads must be >= 1, got {args.threads}")
    # Cheap checks first: a missing package, checkpoint or writable folder before loading.
    require("onnx")
    require("onnxruntime")
    if checkpoint is not None and not Path(checkpoint).exists():  # a file or a model folder
        raise CheckpointError(f"checkpoint not found: {checkpoint}")
    out = Path(args.output)
    created = not out.exists()
    prepare_output_dir(out)
    try:
        model = load_model(checkpoint, device="cpu")
    except Exception:
        if created and not any(out.iterdir()):
            out.rmdir()  # leave nothing behind for a model that did not load
        raise
    result = export_model(
        model,
        args.output,
        config,
        threads=args.threads,
        log=lambda msg: print(f"anyseg export: {msg}"),
    )
    rows = [("decoder (float32)", result.decoder_parity)]
    if result.int8_parity is not None:
        rows.append(("decoder (int8)", result.int8_parity))
    if result.end_to_end_parity is not None:
        rows.append(("encoder+decoder", result.end_to_end_parity))
    print(f"{'deviation vs PyTorch':<22}{'max|logit|':>12}{'max|IoU|':>12}{'flipped px':>13}")
    for name, rep in rows:
        print(
            f"{name:<22}{rep.max_abs_logits:>12.2e}{rep.max_abs_iou:>12.2e}"
            f"{rep.mismatch_fraction:>12.4%}"
        )
    if result.encoder_max_abs is not None:
        print(f"{'encoder embedding':<22}{result.encoder_max_abs:>12.2e}")
    if result.passed is False:
        raise RuntimeError(
            f"the exported graphs in {result.out_dir} disagree with PyTorch beyond tolerance "
            f"(max |logit| diff {result.decoder_parity.max_abs_logits:.3g}); see "
            f"{result.manifest_path}"
        )
    return 0
