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
import dataclasses
from typing import Any, get_origin, get_type_hints


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


def add_clip_arguments(parser: argparse.ArgumentParser) -> None:
    """``--clip FILE`` and the options of real CLIP files."""
    parser.add_argument(
        "--clip",
        metavar="FILE",
        help="CLIP weights: anyseg .safetensors, OpenAI / open_clip state dict, or a Hugging "
        "Face CLIPModel folder (default: the bundled clip_synth.safetensors)",
    )
    parser.add_argument(
        "--clip-activation",
        choices=("quick_gelu", "gelu"),
        help="MLP activation of a file that does not say (OpenAI: quick_gelu, open_clip: gelu)",
    )
    parser.add_argument("--clip-head-width", type=int, metavar="N", help="attention head width")
    parser.add_argument(
        "--clip-allow-torchscript",
        action="store_true",
        help="accept a TorchScript archive (OpenAI's .pt releases); this runs code from the file",
    )


def load_clip_from_args(args: argparse.Namespace) -> Any:
    from anyseg.clip import load_clip

    return load_clip(
        args.clip,
        activation=args.clip_activation,
        head_width=args.clip_head_width,
        allow_torchscript=args.clip_allow_torchscript,
    )


# ---------------------------------------------------------------------------------------------
# train


def _add_train(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="contrastive training on (mask crop, caption) pairs of anyseg synth data",
        description="Train a CLIP on crops around the masks of an anyseg synth folder and "
        "captions built from their attributes. Writes config.resolved.toml, metrics.csv, "
        "eval.csv, checkpoints/step_*.pt, clip.safetensors and loss_curve.png to the output "
        "folder.",
    )
    p.add_argument("--config", metavar="FILE", help="training config (.toml)")
    p.add_argument("--data", metavar="DIR", help="training data (data.train)")
    p.add_argument("--val", metavar="DIR", help="held-out data, evaluated during training")
    p.add_argument("--out", metavar="DIR", help="output folder (run.out_dir)")
    p.add_argument("--resume", metavar="RUN_DIR|CKPT", help="continue a run")
    p.add_argument("--steps", type=int, metavar="N", help="run.steps")
    p.add_argument("--batch-size", type=int, metavar="N", help="run.batch_size")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="run.device")
    p.add_argument("--seed", type=int, help="run.seed")
    p.add_argument("--threads", type=int, metavar="N", help="torch threads (run.num_threads)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(run=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from dataclasses import replace

    from anyseg.errors import InvalidInputError
    from anyseg.training.clip_config import ClipTrainConfig, load_clip_train_config
    from anyseg.training.clip_trainer import (
        config_of_clip_checkpoint,
        load_clip_checkpoint,
        train_clip,
    )

    if args.resume:
        if args.config:
            raise InvalidInputError("--resume continues with the run's own config; not --config")
        cfg = config_of_clip_checkpoint(load_clip_checkpoint(args.resume))
    elif args.config:
        cfg = load_clip_train_config(args.config)
    else:
        cfg = ClipTrainConfig()
    data: dict[str, Any] = {}
    run: dict[str, Any] = {}
    for flag, section, key in (
        ("data", data, "train"),
        ("val", data, "val"),
        ("out", run, "out_dir"),
        ("steps", run, "steps"),
        ("batch_size", run, "batch_size"),
        ("device", run, "device"),
        ("seed", run, "seed"),
        ("threads", run, "num_threads"),
    ):
        if getattr(args, flag) is not None:
            section[key] = getattr(args, flag)
    cfg = replace(cfg, data=replace(cfg.data, **data), run=replace(cfg.run, **run))
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
    from anyseg.evaluation.clip import ClipEvalConfig

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
    group = p.add_argument_group("evaluation options (ClipEvalConfig)")
    _add_config_flags(group, ClipEvalConfig)
    p.set_defaults(run=_run_eval)


def _add_config_flags(group: Any, cls: Any, prefix: str = "") -> None:
    """One flag per field of a config dataclass (nested ones with their name as prefix), help
    from the field metadata (until anyseg.settings generates them)."""
    defaults = cls()
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        name = prefix + f.name
        if dataclasses.is_dataclass(hints[f.name]):
            _add_config_flags(group, hints[f.name], f"{name}_")
            continue
        flag = "--" + name.replace("_", "-")
        text = f"{f.metadata.get('help', '')} (default: {getattr(defaults, f.name)})"
        common = {"dest": f"cfg_{name}", "default": None, "help": text}
        if hints[f.name] is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, **common)
        elif get_origin(hints[f.name]) is tuple:
            group.add_argument(flag, metavar="A,B", type=_csv, **common)
        else:
            kind = hints[f.name] if hints[f.name] in (int, float, str) else str
            group.add_argument(
                flag, type=kind, metavar={int: "N", float: "X"}.get(kind, "S"), **common
            )


def _csv(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def _config_from_flags(
    args: argparse.Namespace, cls: Any, prefix: str = "", base: Any = None
) -> Any:
    """``base`` (default ``cls()``) with the fields given as flags replaced (the inverse of
    ``_add_config_flags``)."""
    base = cls() if base is None else base
    hints = get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        name = prefix + f.name
        if dataclasses.is_dataclass(hints[f.name]):
            values[f.name] = _config_from_flags(
                args, hints[f.name], f"{name}_", getattr(base, f.name)
            )
        elif getattr(args, f"cfg_{name}") is not None:
            values[f.name] = getattr(args, f"cfg_{name}")
    return dataclasses.replace(base, **values)


def _run_eval(args: argparse.Namespace) -> int:
    import torch

    from anyseg.evaluation.clip import ClipEvalConfig, evaluate_clip_folder, write_report

    cfg = _config_from_flags(args, ClipEvalConfig)
    clip = load_clip_from_args(args)
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
