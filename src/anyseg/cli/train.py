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
    p.add_argument("--config", metavar="FILE", help="training config (.toml or .yaml)")
    p.add_argument("--data", metavar="PATH", help="training data: SA-1B folder or COCO .json")
    p.add_argument("--val", metavar="PATH", help="held-out data for periodic evaluation")
    p.add_argument("--out", metavar="DIR", help="output folder (run.out_dir)")
    p.add_argument(
        "--init",
        metavar="CHECKPOINT",
        help="start from the weights of an official-layout checkpoint",
    )
    p.add_argument(
        "--resume",
        metavar="RUN_DIR|CKPT",
        help="continue a run from its newest (or the given) training checkpoint",
    )
    p.add_argument(
        "--freeze-image-encoder",
        action="store_true",
        help="train the prompt encoder and mask decoder only",
    )
    p.add_argument("--steps", type=int, metavar="N", help="total optimizer steps (run.steps)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="run.device")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (mixed precision)")
    p.add_argument("--workers", type=int, metavar="N", help="data-loading workers per process")
    p.add_argument("--seed", type=int, help="run.seed")
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
        cfg = config_of_checkpoint(load_training_checkpoint(args.resume))
        if args.config:
            raise InvalidInputError(
                "--resume continues with the run's own config; pass overrides as flags, not "
                "--config"
            )
        if args.init:
            raise InvalidInputError("--init and --resume cannot be combined")
    elif args.config:
        cfg = tc.load_config(args.config)
    else:
        raise InvalidInputError("pass --config FILE (see configs/) or --resume RUN_DIR")

    data: dict[str, Any] = {}
    run_: dict[str, Any] = {}
    optim: dict[str, Any] = {}
    if args.data:
        data["train"] = args.data
    if args.val:
        data["val"] = args.val
    if args.workers is not None:
        data["num_workers"] = args.workers
    if args.out:
        run_["out_dir"] = args.out
    if args.init:
        run_["init_checkpoint"] = args.init
    if args.steps is not None:
        run_["steps"] = args.steps
    if args.device:
        run_["device"] = args.device
    if args.bf16:
        run_["bf16"] = True
    if args.seed is not None:
        run_["seed"] = args.seed
    if args.freeze_image_encoder:
        optim["freeze_image_encoder"] = True
    cfg = tc.override(cfg, data=data, run=run_, optim=optim)
    if args.nproc is not None and args.nproc > 1:
        train_multiprocess(cfg, args.nproc, resume=args.resume)
        return 0
    result = train(cfg, resume=args.resume, progress=not args.quiet)
    if result.eval is not None:
        print(f"held-out: IoU first {result.eval.iou_first:.3f}, last {result.eval.iou_last:.3f}")
    return 0
