"""``anyseg eval``: the paper's evaluation protocols on a SA-1B- or COCO-format dataset.

Writes OUT_DIR/report.json (self-describing: checkpoint and SHA-256, dataset and counts, config,
mIoU per protocol, the interactive curve, recall, timing), OUT_DIR/per_mask.jsonl and the plots
interactive_curve.png, iou_hist.png and samples.png, and prints a small table.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anyseg.cli.common import add_model_arguments, model_options, report_mode
from anyseg.errors import InvalidInputError
from anyseg.evaluation.config import EvalConfig
from anyseg.settings import add_arguments, from_arguments, read_file

if TYPE_CHECKING:
    from anyseg.evaluation import CheckpointInfo, EvalDataset


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a model: 1-point, box, interactive, automatic and text protocols",
        description=(
            "Evaluate a checkpoint on a SA-1B-format folder (DATA_DIR) or a COCO instances file "
            "(--coco FILE --images DIR) with the paper's protocols: one click at the centre of "
            "each mask (most confident of 3, best of 3, single output), its tight box, an "
            "interactive curve of 1..N clicks (each at the centre of the largest error), and "
            "optionally the recall of automatic mask generation and the text protocol (phrases "
            "that name exactly one mask, for models with a text path; --clip for its CLIP). "
            "Deterministic for a given model, data and seed."
        ),
    )
    add_data_arguments(parser)
    add_model_arguments(parser)
    parser.add_argument(
        "-o", "--output", type=Path, required=True, metavar="OUT_DIR", help="output folder"
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="EvalConfig as TOML/YAML/JSON (or a report.json); flags override it",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_arguments(
        parser.add_argument_group(
            "evaluation options (EvalConfig; --amg-* set the amg protocol's AmgConfig)"
        ),
        EvalConfig,
        nested=True,
    )
    parser.set_defaults(run=run)


def build_config(args: argparse.Namespace) -> EvalConfig:
    """The :class:`EvalConfig` from ``--config`` and the flags (flags win)."""
    base = EvalConfig()
    if args.config is not None:
        base = EvalConfig.from_dict(_read_config_file(args.config))
    config = from_arguments(EvalConfig, args, base=base)
    return replace(config, amg=replace(config.amg, mode=model_options(args).mode))


def run(args: argparse.Namespace) -> int:

    from anyseg.cli.common import make_predictor
    from anyseg.evaluation import evaluate, format_table, write_outputs

    config = build_config(args)
    dataset = open_dataset(args, config.max_images)
    options = model_options(args)
    predictor = make_predictor(options)
    checkpoint = checkpoint_info(options.checkpoint)
    report_mode(predictor.describe_mode(), options.mode)
    result = evaluate(predictor, dataset, config, checkpoint=checkpoint, progress=not args.quiet)
    written = write_outputs(result, args.output)
    print(format_table(result.report))
    print(f"\nwrote {', '.join(sorted(written))} to {args.output}")
    return 0


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """DATA_DIR, or ``--coco FILE --images DIR``."""
    parser.add_argument("data", nargs="?", metavar="DATA_DIR", help="SA-1B-format dataset folder")
    parser.add_argument("--coco", type=Path, metavar="FILE", help="COCO instances JSON")
    parser.add_argument("--images", type=Path, metavar="DIR", help="images folder for --coco")


def open_dataset(args: argparse.Namespace, max_images: int | None) -> EvalDataset:
    """The dataset of :func:`add_data_arguments`' flags (one clear error for a wrong mix)."""
    from anyseg.evaluation import open_coco, open_sa1b

    if (args.data is None) == (args.coco is None):
        raise InvalidInputError("give either DATA_DIR (SA-1B format) or --coco FILE --images DIR")
    if args.coco is not None and args.images is None:
        raise InvalidInputError(
            "--coco needs --images DIR (the folder of the COCO file_name entries)"
        )
    if args.images is not None and args.coco is None:
        raise InvalidInputError("--images is only used with --coco FILE")
    if args.coco is not None:
        return open_coco(args.coco, args.images, max_images)
    return open_sa1b(args.data, max_images)


def checkpoint_info(path: Path | None) -> CheckpointInfo:
    """Identity (path, SHA-256) of the weights a model option names (None: the bundled)."""
    from anyseg.checkpoint import DEFAULT_WEIGHTS, sha256_file
    from anyseg.evaluation import CheckpointInfo

    weights = path if path is not None else DEFAULT_WEIGHTS
    return CheckpointInfo(
        path=str(weights.resolve()),
        sha256=sha256_file(weights),
        description=str(path) if path is not None else f"default model ({weights.name})",
    )


def _read_config_file(path: Path) -> dict[str, Any]:
    """EvalConfig values from a config file; a report.json contributes its ``config``."""
    data = read_file(path)
    if "format_version" in data and isinstance(data.get("config"), dict):
        data = data["config"]  # a previous report.json: rerun with its config
    return data
