"""``anyseg calibrate``: recalibrate a model's IoU head on a calibration set.

Runs the evaluation's point, box and interactive protocols on DATA_DIR (calibration images,
not the held-out set you report on), fits an affine correction of the predicted IoU per kind of
output (the multimask candidates, the single output) and writes the checkpoint with the
correction folded into the IoU head's last layer (see :mod:`anyseg.evaluation.recalibration`).
The masks are unchanged, and so is their ranking; a recommended automatic-generation IoU
threshold moves with the correction.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from anyseg.cli.common import add_model_arguments, model_options, report_mode
from anyseg.cli.eval import add_data_arguments, build_config, checkpoint_info, open_dataset
from anyseg.errors import InvalidInputError
from anyseg.evaluation.config import EvalConfig
from anyseg.io import atomic_write_text
from anyseg.settings import add_arguments

FITTED = ("point", "box", "interactive")


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "calibrate",
        help="recalibrate a model's IoU head on calibration images",
        description=(
            "Fit the IoU head's predictions to the IoU its masks really reach, with the "
            "evaluation's point, box and interactive protocols on DATA_DIR (use images that "
            "are not your held-out set), and write the model with the correction folded into "
            "the head: masks and their ranking unchanged, predicted IoUs (and a recommended "
            "automatic-generation threshold) moved. Check the result with anyseg eval."
        ),
    )
    add_data_arguments(parser)
    add_model_arguments(parser, exclude=("clip",))
    parser.add_argument(
        "-o", "--output", type=Path, required=True, metavar="FILE",
        help="the recalibrated checkpoint (.safetensors or .pth; must not exist)",
    )  # fmt: skip
    parser.add_argument("--half", action="store_true", help="store float16 tensors")
    parser.add_argument(
        "--json", type=Path, metavar="FILE",
        help="also write the fit (maps, errors before and after, data, config) here",
    )  # fmt: skip
    parser.add_argument(
        "--config", type=Path, metavar="FILE",
        help="EvalConfig as TOML/YAML/JSON (or a report.json); flags override it",
    )  # fmt: skip
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_arguments(
        parser.add_argument_group("evaluation options (EvalConfig) of the fitting run"),
        EvalConfig,
        exclude=("amg", "recall_thresholds", "num_samples", "text_forms"),
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from anyseg.checkpoint import save
    from anyseg.cli.common import make_predictor
    from anyseg.evaluation import evaluate
    from anyseg.evaluation.recalibration import fit_recalibration, recalibrate_model

    if args.output.exists():
        raise InvalidInputError(f"{args.output} exists: give a new file (nothing was written)")
    if args.output.suffix not in (".safetensors", ".pth", ".pt"):
        raise InvalidInputError(f"{args.output}: give a .safetensors or .pth file name")
    config = build_config(args)
    protocols = tuple(p for p in config.protocols if p in FITTED)
    if not protocols:
        raise InvalidInputError(
            f"--protocols must include one of {', '.join(FITTED)} (the ones that predict IoU)"
        )
    config = replace(config, protocols=protocols)
    dataset = open_dataset(args, config.max_images)
    options = model_options(args)
    predictor = make_predictor(options)
    report_mode(predictor.describe_mode(), options.mode)
    result = evaluate(
        predictor, dataset, config, checkpoint=checkpoint_info(options.checkpoint),
        progress=not args.quiet,
    )  # fmt: skip
    fit = fit_recalibration(result.masks, config.first_point_multimask)
    model = predictor.model  # fast mode runs copies: the model's own weights are as stored
    before = getattr(model, "amg_thresholds", None)
    recalibrate_model(model, fit)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    save(model, args.output, half=args.half)
    print(
        f"fitted on {len(result.masks)} masks of {result.report.dataset.num_images} images "
        f"({fit.multimask.count} multimask and {fit.single.count} single-output predictions)"
    )
    for name, m in (("multimask", fit.multimask), ("single", fit.single)):
        print(f"  {name:9s} predicted IoU -> {m.scale:.3f} x predicted {m.shift:+.3f}")
    print(
        f"  mean |predicted - actual| on these images: {fit.mae_before:.3f} -> {fit.mae_after:.3f}"
    )
    after = getattr(model, "amg_thresholds", None)
    if before is not None and after is not None:
        print(
            f"  recommended automatic-generation IoU threshold: {before.pred_iou_thresh:.3f} -> "
            f"{after.pred_iou_thresh:.3f}"
        )
    if args.json is not None:
        record = {
            "recalibration": fit.to_dict(),
            "checkpoint": str(options.checkpoint or "default"),
            "data": str(args.data or args.coco),
            "num_images": result.report.dataset.num_images,
            "num_masks": len(result.masks),
            "config": config.to_dict(),
        }
        atomic_write_text(args.json, json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.output}; measure it on held-out data with anyseg eval")
    return 0
