"""COCO instances JSON to and from :class:`~anyseg.data.sa1b.ImageRecord`.

Reading accepts every COCO segmentation form through pycocotools: polygons (a list of
``[x0, y0, x1, y1, ...]`` rings, merged into one mask), compressed RLE (``counts`` a string) and
uncompressed RLE (``counts`` a list of run lengths, the ``iscrowd`` form). Each annotation becomes a
:class:`~anyseg.data.sa1b.MaskAnnotation` with compressed RLE and its category name as ``label``.

Writing produces a COCO instances file whose categories are the sorted distinct labels (ids from
1; masks without a label get ``default_label``) and whose annotations are renumbered 1..N across
the whole file (COCO ids are unique per file, SA-1B ids only per image).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pycocotools import mask as mask_utils

from anyseg.data.sa1b import ImageRecord, MaskAnnotation
from anyseg.errors import InvalidInputError
from anyseg.io import atomic_write_bytes
from anyseg.ops.rle import check_rle

_REQUIRED_IMAGE_KEYS = ("id", "file_name", "width", "height")
_REQUIRED_ANN_KEYS = ("id", "image_id", "segmentation")


def read_coco(json_path: str | os.PathLike[str]) -> list[ImageRecord]:
    """Read a COCO instances JSON into one :class:`ImageRecord` per image, sorted by image id.

    Raises:
        InvalidInputError: the file is not JSON or not a valid instances file (the message names
            the file and the annotation id).
        OSError: the file cannot be read.
    """
    path = Path(json_path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{path}: not valid JSON ({exc})") from exc
    return coco_to_records(data, source=str(path))


def coco_to_records(data: Any, source: str = "<dict>") -> list[ImageRecord]:
    """Convert a parsed COCO instances dict (see :func:`read_coco`)."""
    if not isinstance(data, dict):
        raise InvalidInputError(f"{source}: expected a JSON object, got {type(data).__name__}")
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            raise InvalidInputError(f"{source}: missing or non-list top-level key {key!r}")
    categories = {}
    for cat in data.get("categories", []):
        if not isinstance(cat, dict) or "id" not in cat or "name" not in cat:
            raise InvalidInputError(f"{source}: every category needs 'id' and 'name', got {cat!r}")
        categories[cat["id"]] = str(cat["name"])

    images: dict[int, dict[str, Any]] = {}
    for img in data["images"]:
        if not isinstance(img, dict):
            raise InvalidInputError(f"{source}: every image must be an object, got {img!r}")
        missing = [k for k in _REQUIRED_IMAGE_KEYS if k not in img]
        if missing:
            raise InvalidInputError(
                f"{source}: image {img.get('id', '?')} is missing key(s) {missing}"
            )
        images[int(img["id"])] = img

    per_image: dict[int, list[MaskAnnotation]] = {i: [] for i in images}
    for k, ann in enumerate(data["annotations"]):
        where = f"{source}: annotation " + (
            f"id {ann['id']}" if isinstance(ann, dict) and "id" in ann else f"#{k}"
        )
        if not isinstance(ann, dict):
            raise InvalidInputError(f"{where}: expected an object, got {type(ann).__name__}")
        missing = [key for key in _REQUIRED_ANN_KEYS if key not in ann]
        if missing:
            raise InvalidInputError(f"{where}: missing key(s) {missing}")
        image_id = int(ann["image_id"])
        if image_id not in images:
            raise InvalidInputError(f"{where}: image_id {image_id} is not in 'images'")
        img = images[image_id]
        per_image[image_id].append(
            _annotation(ann, int(img["height"]), int(img["width"]), categories, where)
        )

    return [
        ImageRecord(
            image_id=image_id,
            file_name=str(img["file_name"]),
            width=int(img["width"]),
            height=int(img["height"]),
            annotations=tuple(per_image[image_id]),
        )
        for image_id, img in sorted(images.items())
    ]


def records_to_coco(
    records: Iterable[ImageRecord], default_label: str = "object"
) -> dict[str, Any]:
    """Build a COCO instances dict from records (categories from labels; see module docstring)."""
    records = list(records)
    labels = sorted({a.label or default_label for r in records for a in r.annotations})
    category_ids = {name: i + 1 for i, name in enumerate(labels)}
    seen_ids: set[int] = set()
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for rec in records:
        if rec.image_id in seen_ids:
            raise InvalidInputError(f"records_to_coco: image_id {rec.image_id} appears twice")
        seen_ids.add(rec.image_id)
        images.append(
            {
                "id": rec.image_id,
                "file_name": rec.file_name,
                "width": rec.width,
                "height": rec.height,
            }
        )
        for ann in rec.annotations:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": rec.image_id,
                    "category_id": category_ids[ann.label or default_label],
                    "segmentation": {
                        "size": list(ann.segmentation["size"]),
                        "counts": ann.segmentation["counts"],
                    },
                    "area": ann.area,
                    "bbox": list(ann.bbox),
                    "iscrowd": 0,
                }
            )
    return {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i, "name": name} for name, i in category_ids.items()],
    }


def write_coco(
    json_path: str | os.PathLike[str], records: Iterable[ImageRecord], default_label: str = "object"
) -> None:
    """Write records as a COCO instances JSON atomically (temp file, then rename)."""
    text = json.dumps(records_to_coco(records, default_label), separators=(",", ":"))
    atomic_write_bytes(json_path, text.encode("utf-8"))


def _annotation(
    ann: dict[str, Any], h: int, w: int, categories: dict[Any, str], where: str
) -> MaskAnnotation:
    seg = ann["segmentation"]
    if isinstance(seg, list):  # polygons: one or more rings of x, y pairs
        if not seg or any(
            not isinstance(ring, list) or len(ring) < 6 or len(ring) % 2 for ring in seg
        ):
            raise InvalidInputError(
                f"{where}: polygon segmentation must be a list of [x0, y0, x1, y1, ...] rings "
                "with at least 3 points each"
            )
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
    elif isinstance(seg, dict) and "counts" in seg and "size" in seg:
        if [int(v) for v in seg["size"]] != [h, w]:
            raise InvalidInputError(
                f"{where}: RLE size {list(seg['size'])} does not match image size "
                f"[h, w] = [{h}, {w}]"
            )
        try:
            check_rle(seg)
        except InvalidInputError as exc:
            raise InvalidInputError(f"{where}: {exc}") from None
        if isinstance(seg["counts"], list):
            rle = mask_utils.frPyObjects(seg, h, w)
        elif isinstance(seg["counts"], str):
            rle = {"size": [h, w], "counts": seg["counts"].encode("ascii")}
        else:
            raise InvalidInputError(f"{where}: RLE counts must be a string or a list of ints")
    else:
        raise InvalidInputError(f"{where}: segmentation must be polygons or an RLE dict")
    area = int(mask_utils.area(rle))
    if "bbox" in ann:
        bbox = ann["bbox"]
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise InvalidInputError(f"{where}: bbox must be [x, y, w, h] (4 numbers), got {bbox!r}")
    else:
        bbox = mask_utils.toBbox(rle).tolist()
    category = ann.get("category_id")
    if category is not None and category not in categories:
        raise InvalidInputError(f"{where}: category_id {category} is not in 'categories'")
    x, y, bw, bh = (float(v) for v in bbox)
    return MaskAnnotation(
        id=int(ann["id"]),
        segmentation={"size": [h, w], "counts": rle["counts"].decode("ascii")},
        bbox=(x, y, bw, bh),
        # COCO polygon areas are geometric; the rasterized area is what the mask holds.
        area=area,
        label=None if category is None else categories[category],
    )
