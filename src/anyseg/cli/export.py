"""``anyseg export``: ONNX graphs of the decoder (and encoder) that check themselves."""

from __future__ import annotations

import argparse
from typing import Any


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
    p.add_argument(
        "--checkpoint", help="model checkpoint (.pth/.safetensors); default: bundled model"
    )
    p.add_argument("-o", "--output", required=True, help="output folder (created if missing)")
    p.add_argument("--encoder", action="store_true", help="also export the image encoder")
    p.add_argument(
        "--quantize",
        action="store_true",
        help="also write decoder_int8.onnx (dynamic int8 quantization; deviation reported)",
    )
    p.add_argument("--opset", type=int, default=17, help="ONNX opset version, >= 14 (default 17)")
    p.add_argument(
        "--return-single-mask",
        action="store_true",
        help="the decoder returns only the best mask (faster upscaling for large images)",
    )
    p.add_argument(
        "--use-stability-score",
        action="store_true",
        help="return the low-res stability score (offset 1.0) instead of the predicted IoU",
    )
    p.add_argument(
        "--return-extra-metrics",
        action="store_true",
        help="also return stability_scores and areas of the upscaled masks",
    )
    p.add_argument(
        "--gelu-approximate",
        action="store_true",
        help="tanh-approximated GELU, for runtimes with a slow or missing Erf op",
    )
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

    if args.opset < 14:
        raise InvalidInputError(f"--opset must be >= 14, got {args.opset}")
    if args.threads is not None and args.threads < 1:
        raise InvalidInputError(f"--threads must be >= 1, got {args.threads}")
    # Cheap checks first: a missing package, checkpoint or writable folder before loading.
    require("onnx")
    require("onnxruntime")
    if args.checkpoint is not None and not Path(args.checkpoint).exists():
        raise CheckpointError(f"checkpoint not found: {args.checkpoint}")
    out = Path(args.output)
    created = not out.exists()
    prepare_output_dir(out)
    try:
        model = load_model(args.checkpoint)
    except Exception:
        if created and not any(out.iterdir()):
            out.rmdir()  # leave nothing behind for a model that did not load
        raise
    result = export_model(
        model,
        args.output,
        encoder=args.encoder,
        quantize=args.quantize,
        opset=args.opset,
        return_single_mask=args.return_single_mask,
        use_stability_score=args.use_stability_score,
        return_extra_metrics=args.return_extra_metrics,
        gelu_approximate=args.gelu_approximate,
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
