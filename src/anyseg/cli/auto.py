"""``anyseg auto``: fully automatic mask generation over images and folders.

Writes, per image, ``<stem>.json`` (SA-1B format: COCO RLE masks with their scores, prompt point
and crop) and ``<stem>_overlay.png`` (every mask tinted in its own colour, outlines drawn). An
image whose JSON exists is skipped unless ``--overwrite``, so an interrupted run resumes where
it stopped; the JSON is written last and atomically, so it exists only for finished images. An
unreadable image is reported and skipped; the exit status is 1 if any image failed. The job
itself is :mod:`anyseg.automatic.job`; the generator's options are :class:`AmgConfig`'s.

``--engine ray`` runs the same job over a Ray cluster (:mod:`anyseg.engine`, options
:class:`EngineConfig`): manifests and URIs as inputs, object stores as output, tar shards,
``failures.jsonl`` and ``summary.json``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from anyseg.automatic.config import AmgConfig
from anyseg.automatic.job import LabelJobConfig
from anyseg.cli.common import add_model_arguments, model_options, report_mode
from anyseg.engine.config import EngineConfig
from anyseg.errors import InvalidInputError
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
            "unless --overwrite. With --label-vocab, each mask also gets the best-matching "
            "phrase and its score from CLIP (in the JSON and the overlay). Folders are "
            "searched (not recursively) for "
            + ", ".join(IMAGE_SUFFIXES)
            + " files; the overlays it writes are never inputs."
        ),
        epilog=(
            "examples: anyseg auto photos/ -o masks/ --points-per-side 16 --mode fast; "
            'anyseg auto examples/scene.png -o out/ --label-vocab "star,ellipse,polygon,bar"; '
            "anyseg auto s3://bucket/images/ -o s3://bucket/masks/ --engine ray --address auto "
            "--gpus-per-worker 1 --shards 100"
        ),
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="IMAGE_OR_DIR",
        help="image files and/or folders (with --engine ray also manifests and fsspec URIs)",
    )
    p.add_argument(
        "-o", "--output", required=True, metavar="OUT_DIR", help="output folder (or URI: ray)"
    )
    p.add_argument(
        "--engine",
        choices=("single", "ray"),
        default="single",
        help="single: this process (default); ray: Ray actors on this machine or a cluster",
    )
    add_model_arguments(p)
    add_arguments(p, LabelJobConfig)
    add_arguments(p.add_argument_group("generator options (AmgConfig)"), AmgConfig)
    add_arguments(
        p.add_argument_group("Ray engine options (EngineConfig, --engine ray)"), EngineConfig
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from anyseg.automatic import SamAutomaticMaskGenerator
    from anyseg.automatic.job import find_images, label_image, pending
    from anyseg.cli.common import ClipOptions, load_model

    options = model_options(args)
    amg = replace(from_arguments(AmgConfig, args), mode=options.mode)
    job = from_arguments(LabelJobConfig, args)
    engine = from_arguments(EngineConfig, args)
    if args.engine == "ray":
        if options.clip != ClipOptions():
            raise InvalidInputError(
                "--clip is not passed to Ray workers (they label with the bundled CLIP); run "
                "without --engine ray to label with another CLIP"
            )
        return run_on_ray(args, options.checkpoint, options.device, amg, job, engine)
    if engine != EngineConfig():
        raise InvalidInputError("the Ray engine options need --engine ray")
    out_dir = Path(args.output)
    images = find_images(args.inputs, output=out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    todo = pending(images, out_dir, job)
    skipped = len(images) - len(todo)
    if not todo:
        print(f"anyseg auto: all {len(images)} images already done in {out_dir}", file=sys.stderr)
        return 0

    generator = SamAutomaticMaskGenerator(load_model(options), config=amg, clip=options.clip)
    report_mode(generator.predictor.describe_mode(), options.mode)
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


def run_on_ray(
    args: argparse.Namespace,
    checkpoint: Path | None,
    device: str,
    amg: AmgConfig,
    job: LabelJobConfig,
    engine: EngineConfig,
) -> int:
    from anyseg.engine import label_dataset

    s = label_dataset(
        args.inputs,
        args.output,
        amg=amg,
        job=job,
        engine=engine,
        checkpoint=checkpoint,
        device=device,
    )
    print(
        f"anyseg auto: {s.labelled} done ({s.masks} masks), {s.already_done} already done, "
        f"{s.failed} failed" + (f" (see {s.output}/failures.jsonl)" if s.failed else ""),
        file=sys.stderr,
    )
    return 1 if s.failed else 0
