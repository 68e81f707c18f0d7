"""``anyseg synth``: write a synthetic SA-1B-layout dataset of scenes with whole/part/subpart masks.

Every option of :class:`anyseg.data.synthetic.SynthConfig` is a flag (``min_objects`` ->
``--min-objects``); ``--config FILE`` starts from a config file (TOML/YAML/JSON; a previous run's
``dataset.json`` works) and explicit flags override it.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from anyseg.data.synth_config import SynthConfig
from anyseg.errors import InvalidInputError
from anyseg.settings import add_arguments, from_arguments, from_mapping, read_file

_SIZE_FIELDS = ("height", "width")


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "synth",
        help="generate a synthetic dataset (SA-1B layout) with part hierarchies",
        description=(
            "Write procedural scenes to OUT_DIR/images/*.png with per-image SA-1B JSON in "
            "OUT_DIR/annotations/ (COCO RLE masks of every whole object, part and subpart) and "
            "OUT_DIR/dataset.json (config, seed, count, version). Image i depends only on "
            "(seed, i) and the config, not on --workers."
        ),
    )
    parser.add_argument("out_dir", metavar="OUT_DIR", help="output folder (new or empty)")
    parser.add_argument("--count", type=int, default=100, help="number of images (default: 100)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed, >= 0 (default: 0)")
    parser.add_argument(
        "--size", type=int, default=None, help="square image side in pixels (default: 512)"
    )
    parser.add_argument(
        "--size-hw", type=int, nargs=2, metavar=("H", "W"), default=None, help="image height, width"
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default: 2)")
    parser.add_argument(
        "--format", choices=("png", "jpg"), default="png", help="image file format (default: png)"
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="SynthConfig file, TOML/YAML/JSON (or a previous dataset.json)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a previous run's files in OUT_DIR"
    )
    add_arguments(
        parser.add_argument_group("scene options (SynthConfig)"), SynthConfig, exclude=_SIZE_FIELDS
    )
    parser.set_defaults(run=run)


def config_from_args(args: argparse.Namespace) -> SynthConfig:
    """The :class:`SynthConfig` named by ``--config``, the size flags and the scene options."""
    base = SynthConfig()
    if args.config is not None:
        data = read_file(args.config)
        if isinstance(data.get("config"), dict):
            data = data["config"]  # a dataset.json written by a previous run
        base = from_mapping(SynthConfig, data, source=str(args.config))
    if args.size is not None and args.size_hw is not None:
        raise InvalidInputError("give --size or --size-hw, not both")
    if args.size is not None:
        base = dataclasses.replace(base, height=args.size, width=args.size)
    if args.size_hw is not None:
        base = dataclasses.replace(base, height=args.size_hw[0], width=args.size_hw[1])
    return from_arguments(SynthConfig, args, base=base)


def run(args: argparse.Namespace) -> int:
    from anyseg.data.synthetic import write_dataset

    config = config_from_args(args)
    summary = write_dataset(
        args.out_dir,
        args.count,
        seed=args.seed,
        config=config,
        workers=args.workers,
        overwrite=args.overwrite,
        progress=sys.stderr.isatty(),
        image_format=args.format,
    )
    levels = ", ".join(f"{n} {level}" for level, n in summary.masks_per_level.items())
    print(
        f"wrote {summary.count} images ({config.height}x{config.width}; masks: {levels}) to "
        f"{summary.out_dir} in {summary.seconds:.1f} s ({summary.images_per_minute:.0f} images/min)"
    )
    return 0
