"""``anyseg train``: train or fine-tune a model with the paper's recipe.

Examples::

    anyseg train --config configs/test.toml --data data/synth --out runs/test
    anyseg train --config configs/finetune_frozen_encoder.toml --init sam_vit_b_01ec64.pth \\
        --data my_sa1b_folder --freeze-image-encoder
    anyseg train --resume runs/test --steps 2000            # continue a run
    torchrun --nproc_per_node 2 -m anyseg.cli.main train --config FILE   # multi-process (DDP)

Command-line flags override the config file.
"""

from __future__ import annotations

import argparse
from typing import Any

from anyseg.settings import add_arguments, from_arguments
from anyseg.training.config import TrainConfig


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "train",
        help="train or fine-tune a model (paper recipe: simulated interaction, focal+dice)",
        description=(
            "Train a SAM-architecture model on SA-1B-format folders or COCO instance files with "
            "the paper's recipe. Writes config.resolved.toml, metrics.csv, TensorBoard events, "
            "checkpoints/step_*.pt, model.safetensors and loss_curve.png to the output folder. "
            "Flags override the config file. Under torchrun, each process trains on a shard."
        ),
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        help="training config (.toml, .yaml or .json; may extend another)",
    )
    p.add_argument(
        "--resume",
        metavar="RUN_DIR|CKPT",
        help="continue a run from its newest (or the given) training checkpoint",
    )
    add_arguments(p, TrainConfig, nested=True, marked_only=True)
    p.add_argument(
        "--nproc",
        type=int,
        metavar="N",
        help="train in N local processes (DDP over loopback, gloo on CPU) without torchrun",
    )
    p.add_argument("--quiet", action="store_true", help="no per-step progress lines")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import os

    # Idle OpenMP threads sleep instead of spinning: on a shared CPU, spinning threads of a
    # 2-thread process under load made steps ~10x slower in our measurements.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from anyseg.errors import InvalidInputError
    from anyseg.training import config as tc
    from anyseg.training.loop import train, train_multiprocess
    from anyseg.training.state import config_of_checkpoint, load_training_checkpoint

    if args.resume:
        base = config_of_checkpoint(load_training_checkpoint(args.resume))
        if args.config:
            raise InvalidInputError(
                "--resume continues with the run's own config; pass overrides as flags, not "
                "--config"
            )
    elif args.config:
        base = tc.load_config(args.config)
    else:
        raise InvalidInputError("pass --config FILE (see configs/) or --resume RUN_DIR")
    cfg = from_arguments(TrainConfig, args, base=base)
    if args.resume and cfg.run.init_checkpoint != base.run.init_checkpoint:
        raise InvalidInputError("--init and --resume cannot be combined")
    if args.nproc is not None and args.nproc > 1:
        train_multiprocess(cfg, args.nproc, resume=args.resume)
        return 0
    result = train(cfg, resume=args.resume, progress=not args.quiet)
    if result.eval is not None:
        print(f"held-out: IoU first {result.eval.iou_first:.3f}, last {result.eval.iou_last:.3f}")
    return 0
