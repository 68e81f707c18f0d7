"""Images with their attributed masks, read from an SA-1B folder (``anyseg synth`` output): what the
CLIP trainer samples (crop, caption) pairs from and what the CLIP evaluation queries.

Each mask keeps only its box's part of the mask array (``mask_crop`` takes it with its offset), so
a data set of thousands of images fits in memory: the images themselves are the bulk (H x W x 3
bytes each).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anyseg.data.attributes import MaskAttributes
from anyseg.data.sa1b import find_dataset, read_image_record
from anyseg.errors import InvalidInputError
from anyseg.io import read_image


@dataclass(frozen=True, eq=False)
class AttributedMask:
    """One mask with attributes.

    Attributes:
        mask: bool (h, w), the mask inside its box.
        offset_xy: where ``mask[0, 0]`` lies in the image (x, y) pixels.
        box_xyxy: tight box in image pixels, edges exclusive.
        area: mask pixels.
        attributes: what it shows.
        parent: index of its parent in the image's ``masks``, -1 for none.
    """

    mask: np.ndarray
    offset_xy: tuple[int, int]
    box_xyxy: tuple[int, int, int, int]
    area: int
    attributes: MaskAttributes
    parent: int


@dataclass(frozen=True, eq=False)
class AttributedImage:
    """An image (RGB uint8 (H, W, 3)) and its masks that carry attributes."""

    image: np.ndarray
    file_name: str
    masks: tuple[AttributedMask, ...]

    def parent_attributes(self, i: int) -> MaskAttributes | None:
        p = self.masks[i].parent
        return None if p < 0 else self.masks[p].attributes


def read_attributed_images(
    root: str | os.PathLike[str], max_images: int = 0, progress: bool = False
) -> list[AttributedImage]:
    """The first ``max_images`` (0: all) images of an SA-1B folder, in file order, with their
    masks that have ``attributes``.

    Raises:
        InvalidInputError: the folder holds no masks with attributes (e.g. SA-1B itself, or data
            written before ``anyseg synth`` recorded them).
    """
    pairs = find_dataset(root)
    if max_images > 0:
        pairs = pairs[:max_images]
    from tqdm import tqdm

    out = []
    for image_path, json_path in tqdm(pairs, desc="reading", unit="img", disable=not progress):
        record = read_image_record(json_path)
        anns = [a for a in record.annotations if a.attributes is not None]
        kept, parts = [], []
        for a in anns:
            full = a.decode()
            rows, cols = np.flatnonzero(full.any(1)), np.flatnonzero(full.any(0))
            if len(rows):
                kept.append(a)
                parts.append(
                    (full, (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1))
                )
        index = {a.id: k for k, a in enumerate(kept)}
        masks = []
        for a, (full, (x0, y0, x1, y1)) in zip(kept, parts, strict=True):
            attrs = MaskAttributes.from_dict(a.attributes or {}, f"{json_path}: id {a.id}")
            masks.append(
                AttributedMask(
                    mask=np.ascontiguousarray(full[y0:y1, x0:x1]),
                    offset_xy=(x0, y0),
                    box_xyxy=(x0, y0, x1, y1),
                    area=int(a.area),
                    attributes=attrs,
                    parent=-1 if a.parent_id is None else index.get(a.parent_id, -1),
                )
            )
        out.append(AttributedImage(read_image(image_path), Path(image_path).name, tuple(masks)))
    if not any(img.masks for img in out):
        raise InvalidInputError(
            f"{root}: no mask has attributes; CLIP training and evaluation need data from "
            "`anyseg synth` (which records shape, fill, colour and role per mask)"
        )
    return out
