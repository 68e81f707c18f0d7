"""``anyseg auto``: fully automatic mask generation over images and folders.

Writes, per image, ``<stem>.json`` (SA-1B format: COCO RLE masks with their scores, prompt point
and crop) and ``<stem>_overlay.png`` (every mask tinted in its own colour, outlines drawn). An
image whose JSON exists is skipped unless ``--overwrite``, so an interrupted run resumes where
it stopped; the JSON is written last and atomically, so it exists only for finished images. An
unreadable image is reported and skipped; the exit status is 1 if any image failed. The job
itself is :mod:`anyseg.automatic.job`; the generator's options are :class:`AmgConfig`'s.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from anyseg.automatic.config import AmgConfig
from anyseg.automatic.job import LabelJobConfig
from anyseg.cli.common import add_model_arguments, model_options
from anyseg.io import IMAGE_SUFFIXES, display_path
from anyseg.settings import add_arguments, from_arguments


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "auto",
        help="generate masks for whole images automatically (SA-1B JSON + overlay)",
        description=(
            "Segment everything: prompt the model with a grid of points, keep confident and "
            "stable masks, remove duplicates. Writes OUT_DIR/<stem>.json (SA-1B format, COCO "
            "RLE) and OUT_DIR/<stem>_overlay.png per image; images already done are skipped "
            "unless --overwrite. Folders are searched (not recursively) for "
            + ", ".join(IMAGE_SUFFIXES)
            + " files; the overlays it writes are never inputs."
        ),
        epilog="example: anyseg auto photos/ -o masks/ --points-per-side 16 --mode fast",
    )
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR", help="image files and/or folders")
    p.add_argument("-o", "--output", required=True, metavar="OUT_DIR", help="output folder")
    add_model_arguments(p)
    add_arguments(p, LabelJobConfig)
    add_arguments(p.add_argument_group("generator options (AmgConfig)"), AmgConfig)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from anyseg.automatic import SamAutomaticMaskGenerator
    from anyseg.automatic.job import find_images, label_image, pending
    from anyseg.cli.common import load_model

    options = model_options(args)
    amg = replace(from_arguments(AmgConfig, args), mode=options.mode)
    job = from_arguments(LabelJobConfig, args)
    out_dir = Path(args.output)
    images = find_images(args.inputs, output=out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    todo = pending(images, out_dir, job)
    skipped = len(images) - len(todo)
    if not todo:
        print(f"anyseg auto: all {len(images)} images already done in {out_dir}", file=sys.stderr)
        return 0

    generator = SamAutomaticMaskGenerator(load_model(options), config=amg)
    show = sys.stderr.isatty()
    failed: list[str] = []
    done = total_masks = 0
    with torch.inference_mode():
        for path in tqdm(todo, desc="images", unit="img", disable=not show):
            with tqdm(
                desc=display_path(path.name), unit="batch", leave=False, disable=not show
            ) as bar:

                def progress(n: int, total: int, bar: Any = bar) -> None:
                    bar.total = total
                    bar.update(n - bar.n)

                result = label_image(generator, path, out_dir, job, progress=progress)
            if result.error is not None:
                failed.append(display_path(path.name))
                print(f"anyseg auto: skipped {display_path(path)}: {result.error}", file=sys.stderr)
                continue
            if result.hint is not None:
                print(
                    f"anyseg auto: {display_path(path.name)}: 0 masks kept: {result.hint}",
                    file=sys.stderr,
                )
            total_masks += result.masks
            done += 1
    summary = (
        f"anyseg auto: {done} done ({total_masks} masks), {skipped} already done, "
        f"{len(failed)} failed"
    )
    print(summary + (f" ({', '.join(failed)})" if failed else ""), file=sys.stderr)
    return 1 if failed else 0
