"""``anyseg auto``: fully automatic mask generation over images and folders.

Writes, per image, ``<stem>.json`` (SA-1B format: COCO RLE masks with their scores, prompt point
and crop) and ``<stem>_overlay.png`` (every mask tinted in its own colour, outlines drawn). An
image whose JSON exists is skipped unless ``--overwrite``, so an interrupted run resumes where
it stopped; the JSON is written last and atomically, so it exists only for finished images. An
unreadable image is reported and skipped; the exit status is 1 if any image failed.
"""

from __future__ import annotations

import argparse
import re
import sys
import zlib
from pathlib import Path
from typing import Any

from anyseg.automatic.config import add_config_arguments, config_from_args
from anyseg.errors import InvalidInputError
from anyseg.io import IMAGE_SUFFIXES

OVERLAY_CHUNK = 32  # masks decoded at once while drawing the overlay


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
            + " files."
        ),
        epilog="example: anyseg auto photos/ -o masks/ --points-per-side 16 --mode fast",
    )
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR", help="image files and/or folders")
    p.add_argument("-o", "--output", required=True, metavar="OUT_DIR", help="output folder")
    p.add_argument(
        "--checkpoint", help="model checkpoint (.pth/.safetensors); default: bundled model"
    )
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    p.add_argument("--overwrite", action="store_true", help="redo images whose JSON exists")
    p.add_argument("--no-overlay", action="store_true", help="write the JSON only")
    add_config_arguments(p)
    p.set_defaults(run=run)


def find_images(inputs: list[str]) -> list[Path]:
    """Image files named directly or found in named folders, in order, without duplicates.

    Raises:
        InvalidInputError: a path does not exist, nothing is found, or two images share a stem
            (their outputs would collide).
    """
    found: list[Path] = []
    for text in inputs:
        path = Path(text)
        if path.is_dir():
            found += sorted(
                p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
        elif path.is_file():
            found.append(path)
        else:
            raise InvalidInputError(f"{path}: no such file or folder")
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        raise InvalidInputError(
            f"no images found in {', '.join(inputs)} ({', '.join(IMAGE_SUFFIXES)})"
        )
    stems: dict[str, Path] = {}
    for p in unique:
        if p.stem in stems:
            raise InvalidInputError(
                f"{stems[p.stem]} and {p} would both write {p.stem}.json: rename one or run twice"
            )
        stems[p.stem] = p
    return unique


def image_id_for(stem: str) -> int:
    """SA-1B-style id: the trailing number of the stem (``sa_123`` -> 123), else a CRC32."""
    match = re.search(r"(\d+)$", stem)
    return int(match.group(1)) if match else zlib.crc32(stem.encode("utf-8"))


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from anyseg.automatic import SamAutomaticMaskGenerator, to_image_record
    from anyseg.checkpoint import load_model
    from anyseg.data.sa1b import write_image_record
    from anyseg.io import read_image

    config = config_from_args(args)
    images = find_images(args.inputs)
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    todo = [p for p in images if args.overwrite or not (out_dir / f"{p.stem}.json").exists()]
    skipped = len(images) - len(todo)
    if not todo:
        print(f"anyseg auto: all {len(images)} images already done in {out_dir}", file=sys.stderr)
        return 0

    generator = SamAutomaticMaskGenerator(load_model(args.checkpoint, args.device), config=config)
    show = sys.stderr.isatty()
    failed: list[str] = []
    done = total_masks = 0
    with torch.inference_mode():
        for path in tqdm(todo, desc="images", unit="img", disable=not show):
            try:
                image = read_image(path)
            except (InvalidInputError, OSError, ValueError) as exc:
                failed.append(path.name)
                print(f"anyseg auto: skipped {path}: {exc}", file=sys.stderr)
                continue
            with tqdm(desc=path.name, unit="batch", leave=False, disable=not show) as bar:

                def progress(n: int, total: int, bar: Any = bar) -> None:
                    bar.total = total
                    bar.update(n - bar.n)

                records = generator.generate_records(image, progress=progress)
            hint = generator.last_stats.hint(generator.config)
            if hint is not None:
                print(f"anyseg auto: {path.name}: 0 masks kept: {hint}", file=sys.stderr)
            total_masks += len(records)
            if not args.no_overlay:
                write_overlay(out_dir / f"{path.stem}_overlay.png", image, records)
            record = to_image_record(records, image_id_for(path.stem), path.name, image.shape[:2])
            write_image_record(out_dir / f"{path.stem}.json", record)  # last: marks it done
            done += 1
    summary = (
        f"anyseg auto: {done} done ({total_masks} masks), {skipped} already done, "
        f"{len(failed)} failed"
    )
    print(summary + (f" ({', '.join(failed)})" if failed else ""), file=sys.stderr)
    return 1 if failed else 0


def write_overlay(path: Path, image: Any, records: list[Any]) -> None:
    """Tint every mask in a distinct colour and outline it (large masks first, small on top)."""
    import numpy as np

    from anyseg.io import write_image
    from anyseg.visualize import distinct_colors, overlay_masks

    ordered = sorted(records, key=lambda r: r.area, reverse=True)
    colors = distinct_colors(len(ordered))
    out = image
    for start in range(0, len(ordered), OVERLAY_CHUNK):
        chunk = ordered[start : start + OVERLAY_CHUNK]
        masks = np.stack([r.mask() for r in chunk])
        out = overlay_masks(out, masks, colors[start : start + len(chunk)], alpha=0.45)
    write_image(path, np.ascontiguousarray(out))
