"""``anyseg export-annotations PROJECT -o OUT``: accepted masks as SA-1B and/or COCO."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "export-annotations",
        help="export an annotation project as SA-1B per-image JSON and/or COCO",
        description=(
            "Write the accepted masks of an `anyseg serve` project: OUT/images/ with "
            "OUT/annotations/<stem>.json (SA-1B, readable by `anyseg train`) and/or "
            "OUT/coco_instances.json (COCO instances, RLE masks)."
        ),
    )
    parser.add_argument(
        "project",
        type=Path,
        metavar="PROJECT",
        help="the project folder, or the image folder served (its .anyseg-project is used)",
    )
    parser.add_argument(
        "-o", "--output", type=Path, required=True, metavar="OUT", help="output folder"
    )
    parser.add_argument(
        "--format",
        choices=("sa1b", "coco", "both"),
        default="both",
        help="what to write (default both)",
    )
    parser.add_argument(
        "--images",
        type=Path,
        default=None,
        metavar="DIR",
        help="image folder, if it moved since it was served",
    )
    parser.add_argument(
        "--include-empty", action="store_true", help="also export images that have no accepted mask"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier export in OUT")
    parser.add_argument(
        "--follow-symlinks",
        action="store_true",
        help="also export images that are symbolic links to files outside the image folder",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from anyseg.server.export import export_project, open_project

    store, image_dir = open_project(args.project, args.images)
    try:
        summary = export_project(
            store,
            image_dir,
            args.output,
            args.format,
            include_empty=args.include_empty,
            overwrite=args.overwrite,
            follow_symlinks=args.follow_symlinks,
        )
    finally:
        store.close()
    parts = []
    if summary.sa1b_dir is not None:
        parts.append(f"SA-1B in {summary.out_dir / 'annotations'}")
    if summary.coco_json is not None:
        parts.append(f"COCO in {summary.coco_json}")
    print(f"exported {summary.num_masks} masks of {summary.num_images} images: " + ", ".join(parts))
    for name in summary.skipped_missing:
        print(f"warning: {name} is no longer in {image_dir}; its masks were not exported")
    for name, count in summary.skipped_changed:
        print(
            f"warning: {name} changed since it was annotated: {count} masks were not exported "
            "(they belong to another version of the file; they are kept in the project)"
        )
    return 0
