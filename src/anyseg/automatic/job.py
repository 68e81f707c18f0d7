"""Labelling images with the automatic generator: the job ``anyseg auto`` runs, one image at a time.

Per image it writes ``<stem>.json`` (SA-1B format: COCO RLE masks with their scores, prompt
point and crop) and, unless asked not to, ``<stem>_overlay.png``. The JSON is written last and
atomically, so it exists only for finished images: a job that stops at any point resumes where it
stopped by skipping the images whose JSON exists. One image that cannot be read or labelled is
reported and skipped; it never stops the others. Any engine that spreads the job over processes
or machines calls :func:`label_image` per image, so its records are exactly these.
"""

from __future__ import annotations

import os
import re
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from anyseg.automatic.records import MaskRecord, to_image_record
from anyseg.data.sa1b import write_image_record
from anyseg.errors import InvalidInputError
from anyseg.io import IMAGE_SUFFIXES, display_path, read_image, write_image
from anyseg.settings import opt

if TYPE_CHECKING:
    from anyseg.automatic.generator import SamAutomaticMaskGenerator

OVERLAY_SUFFIX = "_overlay.png"
OVERLAY_CHUNK = 32  # masks decoded at once while drawing the overlay


@dataclass(frozen=True)
class LabelJobConfig:
    """What a labelling job writes, besides the generator's own settings (``AmgConfig``)."""

    overwrite: bool = field(
        default=False, metadata=opt("redo images whose JSON exists", const=True)
    )
    overlay: bool = field(
        default=True,
        metadata=opt("write <stem>_overlay.png beside the JSON", flag="--no-overlay", const=False),
    )
    max_image_pixels: int | None = field(
        default=None,
        metadata=opt(
            "skip images with more decoded pixels than this (default: ANYSEG_MAX_IMAGE_PIXELS "
            "or 50 million; 0: no cap)",
            metavar="N",
        ),
    )

    def __post_init__(self) -> None:
        if self.max_image_pixels is not None and self.max_image_pixels < 0:
            raise InvalidInputError(f"max_image_pixels must be >= 0, got {self.max_image_pixels}")


@dataclass(frozen=True)
class LabelResult:
    """What happened to one image.

    Attributes:
        path: the image.
        masks: masks written (0 when skipped or failed).
        error: why the image failed (None if it did not).
        hint: why no mask was kept, and which option to change (None if masks were kept).
    """

    path: Path
    masks: int = 0
    error: str | None = None
    hint: str | None = None


def find_images(inputs: Sequence[str | os.PathLike[str]], output: Path | None = None) -> list[Path]:
    """Image files named directly or found in named folders (not recursively), in order, once.

    The job's own outputs are never inputs: overlays (``*_overlay.png``) inside ``output`` are
    left out, so a folder labelled into itself does not label its own overlays.

    Raises:
        InvalidInputError: a path does not exist, nothing is found, or two images share a stem
            (their outputs would collide).
    """
    out_dir = output.resolve() if output is not None else None
    found: list[Path] = []
    for entry in inputs:
        path = Path(entry)
        if path.is_dir():
            found += folder_images(path)
        elif path.is_file():
            found.append(path)
        else:
            raise InvalidInputError(f"{display_path(path)}: no such file or folder")
    unique = [
        p
        for p in dict.fromkeys(p.resolve() for p in found)
        if out_dir is None or p.parent != out_dir or not p.name.endswith(OVERLAY_SUFFIX)
    ]
    if not unique:
        names = ", ".join(display_path(p) for p in inputs)
        raise InvalidInputError(f"no images found in {names} ({', '.join(IMAGE_SUFFIXES)})")
    check_unique_stems((p.stem, display_path(p)) for p in unique)
    return unique


def check_unique_stems(images: Iterable[tuple[str, str]]) -> None:
    """Refuse two images (``(stem, name shown)`` pairs) with one stem: their outputs collide.

    Raises:
        InvalidInputError: naming both images and the file they would share.
    """
    seen: dict[str, str] = {}
    for stem, shown in images:
        if stem in seen:
            raise InvalidInputError(
                f"{seen[stem]} and {shown} would both write {display_path(stem)}.json: rename "
                "one or run twice"
            )
        seen[stem] = shown


def folder_images(folder: Path) -> list[Path]:
    """The image files directly in ``folder`` (by suffix), sorted: what a folder input means."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def image_id_for(stem: str) -> int:
    """SA-1B-style id: the trailing number of the stem (``sa_123`` -> 123), else a CRC32 of the
    name's bytes (any file name, also one that is not valid UTF-8)."""
    match = re.search(r"(\d+)$", stem)
    return int(match.group(1)) if match else zlib.crc32(os.fsencode(stem))


def output_paths(path: Path, out_dir: Path) -> tuple[Path, Path]:
    """(JSON, overlay) paths of an image's outputs."""
    return out_dir / f"{path.stem}.json", out_dir / f"{path.stem}{OVERLAY_SUFFIX}"


def pending(images: Iterable[Path], out_dir: Path, config: LabelJobConfig) -> list[Path]:
    """The images still to label (all of them with ``overwrite``)."""
    return [p for p in images if config.overwrite or not output_paths(p, out_dir)[0].exists()]


def label_image(
    generator: SamAutomaticMaskGenerator,
    path: Path,
    out_dir: Path,
    config: LabelJobConfig,
    progress: Callable[[int, int], None] | None = None,
) -> LabelResult:
    """Generate, draw and write one image's masks; errors become a failed :class:`LabelResult`.

    A failure leaves no JSON for the image (the overlay may be written already; a re-run
    replaces it), so the next run tries it again.
    """
    try:
        image = read_image(path, max_pixels=config.max_image_pixels)
        records = generator.generate_records(image, progress=progress)
        hint = generator.last_stats.hint(generator.config)
        json_path, overlay_path = output_paths(path, out_dir)
        if config.overlay:
            write_overlay(overlay_path, image, records)
        record = to_image_record(records, image_id_for(path.stem), path.name, image.shape[:2])
        write_image_record(json_path, record)  # last: marks the image done
    except (InvalidInputError, OSError, ValueError, RuntimeError, MemoryError) as exc:
        return LabelResult(path, error=" ".join(str(exc).split()) or type(exc).__name__)
    return LabelResult(path, masks=len(records), hint=hint)


def write_overlay(path: Path, image: np.ndarray, records: Sequence[MaskRecord]) -> None:
    """Tint every mask in a distinct colour and outline it (large masks first, small on top);
    masks with a label get it written at their box."""
    from anyseg.visualize import distinct_colors, draw_labels, overlay_masks

    ordered = sorted(records, key=lambda r: r.area, reverse=True)
    colors = distinct_colors(len(ordered))
    out = image
    for start in range(0, len(ordered), OVERLAY_CHUNK):
        chunk = ordered[start : start + OVERLAY_CHUNK]
        masks = np.stack([r.mask() for r in chunk])
        out = overlay_masks(out, masks, colors[start : start + len(chunk)], alpha=0.45)
    labelled = [k for k, r in enumerate(ordered) if r.label is not None]
    if labelled:
        out = draw_labels(
            out,
            [ordered[k].bbox_xywh for k in labelled],
            [f"{ordered[k].label} {ordered[k].label_score or 0:.2f}" for k in labelled],
            colors[labelled],
        )
    write_image(path, np.ascontiguousarray(out))
