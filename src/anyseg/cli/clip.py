"""``anyseg clip``: train and evaluate the CLIP behind text prompts.

Examples::

    anyseg clip train --config configs/clip_synth.toml --data data/synth_train \\
        --val data/synth_heldout --out runs/clip
    anyseg clip train --resume runs/clip --steps 3000          # continue a run
    anyseg clip eval data/synth_heldout -o outputs/clip_eval     # the bundled CLIP
    anyseg clip eval data/synth_heldout --clip ViT-B-32.safetensors -o out   # a real CLIP

Flags override the config file.
"""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "clip",
        help="train or evaluate the CLIP used for text prompts",
        description="Train a small CLIP on captioned synthetic masks, or measure what a CLIP "
        "knows about the masks of a held-out anyseg synth folder.",
    )
    sub = p.add_subparsers(dest="clip_command", metavar="COMMAND")
    sub.required = True
    _add_train(sub)
    _add_eval(sub)


# ---------------------------------------------------------------------------------------------
# train


def _add_train(sub: Any) -> None:
    from anyseg.settings import add_arguments
    from anyseg.training.clip_config import ClipTrainConfig

    p = sub.add_parser(
        "train",
        help="contrastive training on (mask crop, caption) pairs of anyseg synth data",
        description="Train a CLIP on crops around the masks of an anyseg synth folder and "
        "captions built from their attributes. Writes config.resolved.toml, metrics.csv, "
        "eval.csv, checkpoints/step_*.pt, clip.safetensors and loss_curve.png to the output "
        "folder. Flags override the config file.",
    )
    p.add_argument("--config", metavar="FILE", help="training config (.toml, .yaml, .json)")
    p.add_argument("--resume", metavar="RUN_DIR|CKPT", help="continue a run")
    add_arguments(p, ClipTrainConfig, nested=True, marked_only=True)
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(run=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from anyseg.errors import InvalidInputError
    from anyseg.settings import from_arguments, load_file
    from anyseg.training.clip_config import ClipTrainConfig
    from anyseg.training.clip_trainer import (
        config_of_clip_checkpoint,
        load_clip_checkpoint,
        train_clip,
    )

    if args.resume:
        if args.config:
            raise InvalidInputError("--resume continues with the run's own config; not --config")
        base = config_of_clip_checkpoint(load_clip_checkpoint(args.resume))
    elif args.config:
        base = load_file(ClipTrainConfig, args.config)
    else:
        base = ClipTrainConfig()
    cfg = from_arguments(ClipTrainConfig, args, base=base)
    evaluate = None
    if cfg.data.val:
        from anyseg.data.attributed import read_attributed_images
        from anyseg.evaluation.clip import ClipEvalConfig, evaluate_clip

        held_out = read_attributed_images(cfg.data.val, cfg.data.val_max_images)
        eval_cfg = ClipEvalConfig(min_mask_area=cfg.data.min_mask_area)

        def evaluate(clip: Any) -> dict[str, float]:
            return evaluate_clip(clip, held_out, eval_cfg).metrics()

    result = train_clip(cfg, resume=args.resume, evaluate=evaluate, progress=not args.quiet)
    if result.eval:
        print("held-out: " + ", ".join(f"{k} {v:.3f}" for k, v in result.eval.items()))
    return 0


# ---------------------------------------------------------------------------------------------
# eval


def _add_eval(sub: Any) -> None:
    from anyseg.cli.common import add_clip_arguments
    from anyseg.evaluation.clip import ClipEvalConfig
    from anyseg.settings import add_arguments

    p = sub.add_parser(
        "eval",
        help="zero-shot attribute accuracy and retrieval R@1 on an anyseg synth folder",
        description="Measure a CLIP on held-out anyseg synth data: zero-shot colour, fill and "
        "shape accuracy of mask crops, and R@1 of captions that name exactly one mask of their "
        "image. Writes OUT/report.json and OUT/clip_eval.png.",
    )
    p.add_argument("data", metavar="DATA", help="an anyseg synth folder (held-out seed)")
    p.add_argument("-o", "--out", required=True, metavar="OUT", help="output folder")
    add_clip_arguments(p)
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    add_arguments(
        p.add_argument_group("evaluation options (ClipEvalConfig)"), ClipEvalConfig, nested=True
    )
    p.set_defaults(run=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    import torch

    from anyseg.cli.common import clip_options
    from anyseg.clip import load_clip_options
    from anyseg.evaluation.clip import ClipEvalConfig, evaluate_clip_folder, write_report
    from anyseg.settings import from_arguments

    cfg = from_arguments(ClipEvalConfig, args)
    clip = load_clip_options(clip_options(args))
    clip.model.to(torch.device(args.device))
    result = evaluate_clip_folder(clip, args.data, cfg)
    report = write_report(result, args.out, clip, args.data, cfg)
    acc = result.attribute_accuracy
    print(
        f"colour {acc['colour']:.3f} ({result.attribute_counts['colour']} masks)  fill "
        f"{acc['fill']:.3f} ({result.attribute_counts['fill']})  shape {acc['shape']:.3f} "
        f"({result.attribute_counts['shape']})  retrieval R@1 {result.retrieval_r1:.3f} "
        f"({result.retrieval_count} queries, chance {result.retrieval_chance:.3f})"
    )
    print(f"wrote {report} and {report.with_name('clip_eval.png')}")
    return 0
