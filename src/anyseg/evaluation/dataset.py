"""Evaluation datasets: SA-1B-format folders and COCO instances files as (image, record) items.

Both formats become :class:`~anyseg.data.sa1b.ImageRecord` (masks as COCO RLE in image pixels).
COCO crowd annotations (``iscrowd: 1``: one region for many objects) are left out, as COCO's own
evaluation does: they are not a single object a prompt could select.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np

from anyseg.data.sa1b import DataFile, ImageRecord, read_dataset_image, read_image_record_lenient
from anyseg.errors import InvalidInputError

DatasetFormat = Literal["sa1b", "coco"]


@dataclass(frozen=True)
class EvalImage:
    """One image to evaluate: its file (or member of a tar shard) and its ground-truth masks."""

    image_path: DataFile
    record: ImageRecord

    def load_image(self) -> np.ndarray:
        """The image as RGB uint8 (H, W, 3); its size must match the record's."""
        image = read_dataset_image(self.image_path)
        if image.shape[:2] != self.record.size_hw:
            raise InvalidInputError(
                f"{self.image_path}: image is {image.shape[1]}x{image.shape[0]} (WxH) but its "
                f"annotations say {self.record.width}x{self.record.height}"
            )
        return image


@dataclass(frozen=True)
class EvalDataset:
    """A dataset opened for evaluation.

    Attributes:
        path: the dataset folder (SA-1B) or the annotations file (COCO).
        format: ``"sa1b"`` or ``"coco"``.
        images: the images to evaluate, in sorted order (first ``max_images`` only when given).
        num_images_total: images in the whole dataset.
        images_dir: the images folder (COCO), else None.
        num_crowd_skipped: COCO crowd annotations left out (evaluated images only).
        skipped: invalid annotations left out, one line each naming the file and the id.
    """

    path: Path
    format: DatasetFormat
    images: tuple[EvalImage, ...]
    num_images_total: int
    images_dir: Path | None = None
    num_crowd_skipped: int = 0
    skipped: tuple[str, ...] = ()


def open_sa1b(root: str | os.PathLike[str], max_images: int | None = None) -> EvalDataset:
    """Open a SA-1B-format folder (anyseg's ``images/`` + ``annotations/``, SA-1B's flat layout,
    or SA-1B's tar shards).

    Only the first ``max_images`` records (sorted by image path) are read. An invalid annotation
    is left out and named in ``skipped`` (the report lists it), never silently evaluated.
    """
    from anyseg.data.sa1b import find_dataset

    pairs = find_dataset(root)
    chosen = pairs if max_images is None else pairs[:max_images]
    images, skipped = [], []
    for img, js in chosen:
        record, bad = read_image_record_lenient(js)
        images.append(EvalImage(img, record))
        skipped += [f"{js}: annotation {ann_id}: skipped: {reason}" for ann_id, reason in bad]
    return EvalDataset(Path(root), "sa1b", tuple(images), len(pairs), skipped=tuple(skipped))


def open_coco(
    annotations: str | os.PathLike[str],
    images_dir: str | os.PathLike[str],
    max_images: int | None = None,
) -> EvalDataset:
    """Open a COCO instances file whose ``file_name`` entries live in ``images_dir``.

    Images are ordered by image id; crowd annotations are dropped.

    Raises:
        InvalidInputError: unreadable annotations, or an image file missing from ``images_dir``.
    """
    from anyseg.data.coco import read_coco

    ann_path, img_dir = Path(annotations), Path(images_dir)
    if not ann_path.is_file():
        raise InvalidInputError(f"COCO annotations file {ann_path} does not exist")
    if not img_dir.is_dir():
        raise InvalidInputError(f"COCO images folder {img_dir} does not exist or is not a folder")
    records = read_coco(ann_path)
    crowd = _crowd_annotation_ids(ann_path)
    chosen = records if max_images is None else records[:max_images]
    images = []
    skipped = 0
    for rec in chosen:
        path = img_dir / rec.file_name
        if not path.is_file():
            raise InvalidInputError(
                f"image {rec.file_name!r} (id {rec.image_id}) of {ann_path} not found in {img_dir}"
            )
        kept = tuple(a for a in rec.annotations if a.id not in crowd)
        skipped += len(rec.annotations) - len(kept)
        images.append(EvalImage(path, replace(rec, annotations=kept)))
    return EvalDataset(ann_path, "coco", tuple(images), len(records), img_dir, skipped)


def _crowd_annotation_ids(path: Path) -> set[int]:
    """Ids of the ``iscrowd: 1`` annotations of a COCO file (the record form does not keep it)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return {
        int(a["id"])
        for a in data.get("annotations", [])
        if isinstance(a, dict) and a.get("iscrowd") and "id" in a
    }
