"""``anyseg eval``: the paper's evaluation protocols on a SA-1B- or COCO-format dataset.

Writes OUT_DIR/report.json (self-describing: checkpoint and SHA-256, dataset and counts, config,
mIoU per protocol, the interactive curve, recall, timing), OUT_DIR/per_mask.jsonl and the plots
interactive_curve.png, iou_hist.png and samples.png, and prints a small table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from anyseg.errors import InvalidInputError


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a model: 1-point, box, interactive and automatic protocols (paper §7.1)",
        description=(
            "Evaluate a checkpoint on a SA-1B-format folder (DATA_DIR) or a COCO instances file "
            "(--coco FILE --images DIR) with the paper's protocols: one click at the centre of "
            "each mask (most confident of 3, best of 3, single output), its tight box, an "
            "interactive curve of 1..N clicks (each at the centre of the largest error), and "
            "optionally the recall of automatic mask generation. Deterministic for a given "
            "model, data and seed."
        ),
    )
    parser.add_argument("data", nargs="?", metavar="DATA_DIR", help="SA-1B-format dataset folder")
    parser.add_argument("--coco", type=Path, metavar="FILE", help="COCO instances JSON")
    parser.add_argument("--images", type=Path, metavar="DIR", help="images folder for --coco")
    parser.add_argument(
        "--checkpoint",
        type=Path,
        metavar="PATH",
        help="weights (.pth/.safetensors); default: bundled model",
    )
    parser.add_argument(
        "-o", "--output", type=Path, required=True, metavar="OUT_DIR", help="output folder"
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="EvalConfig as JSON/YAML (or a report.json); flags override it",
    )
    parser.add_argument(
        "--protocols",
        metavar="LIST",
        help="comma-separated subset of point,box,interactive,amg (default: point,box,interactive)",
    )
    parser.add_argument("--max-images", type=int, metavar="N", help="first N images only")
    parser.add_argument(
        "--max-masks-per-image",
        type=int,
        metavar="N",
        help="seeded random subset of N masks per image",
    )
    parser.add_argument(
        "--min-mask-area", type=int, metavar="PX", help="skip smaller masks (default 1)"
    )
    parser.add_argument(
        "--points", type=int, metavar="N", help="clicks of the interactive curve (default 9)"
    )
    parser.add_argument(
        "--seed",
        type=int,
        metavar="S",
        help="seed of mask subsets and random first points (default 0)",
    )
    parser.add_argument(
        "--first-point",
        choices=("center", "random"),
        help="first click at the mask centre (default) or a random mask pixel",
    )
    parser.add_argument(
        "--single-first-click",
        action="store_true",
        help="interactive click 1 uses the single-mask output instead of the most confident of 3",
    )
    parser.add_argument(
        "--no-mask-feedback",
        action="store_true",
        help="interactive clicks 2+ do not pass the previous low-res logits as mask_input",
    )
    parser.add_argument(
        "--samples", type=int, metavar="N", help="masks drawn in samples.png (default 6)"
    )
    parser.add_argument(
        "--amg-points-per-side",
        type=int,
        metavar="N",
        help="automatic generation grid (default 32)",
    )
    parser.add_argument(
        "--amg-pred-iou-thresh",
        type=float,
        metavar="T",
        help="automatic generation's predicted-IoU filter (default 0.88, the paper's)",
    )
    parser.add_argument(
        "--amg-stability-score-thresh",
        type=float,
        metavar="T",
        help="automatic generation's stability-score filter (default 0.95, the paper's)",
    )
    parser.add_argument(
        "--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda if available)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def build_config(args: argparse.Namespace) -> Any:
    """The :class:`~anyseg.evaluation.config.EvalConfig` from ``--config`` and the flags."""
    from anyseg.evaluation.config import EvalConfig

    values: dict[str, Any] = {}
    if args.config is not None:
        values.update(_read_config_file(args.config))
    flags = {
        "max_images": args.max_images,
        "max_masks_per_image": args.max_masks_per_image,
        "min_mask_area": args.min_mask_area,
        "num_points": args.points,
        "seed": args.seed,
        "first_point": args.first_point,
        "num_samples": args.samples,
        "amg_points_per_side": args.amg_points_per_side,
        "amg_pred_iou_thresh": args.amg_pred_iou_thresh,
        "amg_stability_score_thresh": args.amg_stability_score_thresh,
    }
    values.update({k: v for k, v in flags.items() if v is not None})
    if args.protocols is not None:
        values["protocols"] = tuple(p.strip() for p in args.protocols.split(",") if p.strip())
    if args.single_first_click:
        values["first_point_multimask"] = False
    if args.no_mask_feedback:
        values["feed_mask_input"] = False
    return EvalConfig.from_dict(values)


def run(args: argparse.Namespace) -> int:
    import torch

    from anyseg.checkpoint import DEFAULT_WEIGHTS, load_model, sha256_file
    from anyseg.evaluation import (
        CheckpointInfo,
        evaluate,
        format_table,
        open_coco,
        open_sa1b,
        write_outputs,
    )
    from anyseg.predictor import SamPredictor

    if (args.data is None) == (args.coco is None):
        raise InvalidInputError("give either DATA_DIR (SA-1B format) or --coco FILE --images DIR")
    if args.coco is not None and args.images is None:
        raise InvalidInputError(
            "--coco needs --images DIR (the folder of the COCO file_name entries)"
        )
    if args.images is not None and args.coco is None:
        raise InvalidInputError("--images is only used with --coco FILE")
    config = build_config(args)

    if args.coco is not None:
        dataset = open_coco(args.coco, args.images, config.max_images)
    else:
        dataset = open_sa1b(args.data, config.max_images)

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_model(args.checkpoint, device=device)
    weights = Path(args.checkpoint) if args.checkpoint is not None else DEFAULT_WEIGHTS
    checkpoint = CheckpointInfo(
        path=str(weights.resolve()),
        sha256=sha256_file(weights),
        description=(
            str(args.checkpoint)
            if args.checkpoint is not None
            else f"default model ({weights.name})"
        ),
    )
    result = evaluate(
        SamPredictor(model), dataset, config, checkpoint=checkpoint, progress=not args.quiet
    )
    written = write_outputs(result, args.output)
    print(format_table(result.report))
    print(f"\nwrote {', '.join(sorted(written))} to {args.output}")
    return 0


def _read_config_file(path: Path) -> dict[str, Any]:
    """EvalConfig values from a JSON or YAML file; a report.json contributes its ``config``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInputError(f"cannot read config file {path}: {exc.strerror}") from exc
    data: Any
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InvalidInputError(f"{path}: not valid YAML ({exc})") from exc
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"{path}: not valid JSON ({exc})") from exc
    if isinstance(data, dict) and "format_version" in data and isinstance(data.get("config"), dict):
        data = data["config"]  # a previous report.json: rerun with its config
    if not isinstance(data, dict):
        raise InvalidInputError(f"{path}: expected a mapping of EvalConfig options")
    return data
