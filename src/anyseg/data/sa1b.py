"""SA-1B per-image records: typed dataclasses, validated reading, atomic writing, dataset discovery.

One JSON file per image (the SA-1B release format, also written by ``anyseg auto`` and
``anyseg synth``)::

    {"image": {"image_id", "file_name", "width", "height"},
     "annotations": [{"id", "segmentation": {"size": [h, w], "counts": str}, "bbox": [x, y, w, h],
                      "area", "predicted_iou", "stability_score", "point_coords": [[x, y]],
                      "crop_box": [x, y, w, h]}, ...]}

Coordinates are pixels of the original image; boxes are XYWH (COCO convention). Masks are COCO
RLE (pycocotools-compatible, see :mod:`anyseg.ops.rle`). Optional keys beyond SA-1B that anyseg
writes when known: ``label`` (category name), ``level`` (``"whole" | "part" | "subpart"``) and
``parent_id`` (the ``id`` of the annotation this one is a part of), and ``attributes`` (an object
saying what the mask shows; ``anyseg synth`` writes :class:`anyseg.data.attributes.MaskAttributes`
there). Readers accept records without them.

Two folder layouts are accepted by :func:`find_dataset`: anyseg's ``<root>/images/<stem>.<ext>``
+ ``<root>/annotations/<stem>.json`` and SA-1B's flat ``<root>/sa_1.jpg`` beside ``sa_1.json``;
and SA-1B's tar shards (``<root>/sa_000000.tar``, ... or one ``.tar``), read in place
(:mod:`anyseg.data.shards`). A file of a dataset is therefore a :data:`DataFile`: a path, or a
member of a shard; :func:`read_image_record` and :func:`read_dataset_image` read either.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from anyseg.data.shards import ShardMember, find_shard_dataset, shard_files
from anyseg.errors import InvalidInputError
from anyseg.io import IMAGE_SUFFIXES, atomic_write_text, read_image, to_json
from anyseg.ops.rle import check_rle, decode_rle, encode_mask

#: A file of a dataset: a path, or a member of a tar shard.
DataFile = Path | ShardMember

LEVELS: tuple[str, ...] = ("whole", "part", "subpart")
_REQUIRED_IMAGE_KEYS = ("image_id", "file_name", "width", "height")
_REQUIRED_ANN_KEYS = ("id", "segmentation", "bbox", "area")


@dataclass(frozen=True)
class MaskAnnotation:
    """One mask of an image.

    Attributes:
        id: annotation id, unique within its image.
        segmentation: COCO RLE ``{"size": [h, w], "counts": str}`` of the (H, W) mask.
        bbox: tight box (x, y, w, h) in image pixels.
        area: number of mask pixels.
        predicted_iou: model's IoU estimate (automatic generation), else None.
        stability_score: stability score (automatic generation), else None.
        point_coords: the prompt point(s) ((x, y), ...) in image pixels, else None.
        crop_box: the crop (x, y, w, h) the mask was generated in, else None.
        label: category name (COCO; automatic generation with a label vocabulary: the
            best-matching phrase), else None.
        label_score: how well ``label`` matches (CLIP's probability of it among the
            vocabulary), else None.
        level: ``"whole"``, ``"part"`` or ``"subpart"`` when the hierarchy is known, else None.
        parent_id: ``id`` of the annotation this mask is a part of, else None.
        attributes: what the mask shows (a JSON object; for synthetic data the fields of
            :class:`anyseg.data.attributes.MaskAttributes`), else None.
    """

    id: int
    segmentation: dict[str, Any]
    bbox: tuple[float, float, float, float]
    area: float
    predicted_iou: float | None = None
    stability_score: float | None = None
    point_coords: tuple[tuple[float, float], ...] | None = None
    crop_box: tuple[float, float, float, float] | None = None
    label: str | None = None
    level: str | None = None
    parent_id: int | None = None
    attributes: Mapping[str, Any] | None = None
    label_score: float | None = None

    def decode(self) -> np.ndarray:
        """The mask as bool (H, W)."""
        return decode_rle(self.segmentation)

    def to_json_dict(self) -> dict[str, Any]:
        """SA-1B annotation dict (optional SA-1B keys as null; anyseg extras only when set)."""
        out: dict[str, Any] = {
            "id": self.id,
            "segmentation": {
                "size": list(self.segmentation["size"]),
                "counts": self.segmentation["counts"],
            },
            "bbox": list(self.bbox),
            "area": self.area,
            "predicted_iou": self.predicted_iou,
            "stability_score": self.stability_score,
            "point_coords": (
                None if self.point_coords is None else [list(p) for p in self.point_coords]
            ),
            "crop_box": None if self.crop_box is None else list(self.crop_box),
        }
        for key in ("label", "label_score", "level", "parent_id"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.attributes is not None:
            out["attributes"] = dict(self.attributes)
        return out


@dataclass(frozen=True)
class ImageRecord:
    """One image and its masks.

    Attributes:
        image_id: integer id of the image.
        file_name: image file name (relative to the images folder).
        width: image width in pixels.
        height: image height in pixels.
        annotations: the masks, each of size (height, width).
    """

    image_id: int
    file_name: str
    width: int
    height: int
    annotations: tuple[MaskAnnotation, ...] = field(default_factory=tuple)

    @property
    def size_hw(self) -> tuple[int, int]:
        return (self.height, self.width)

    def masks(self) -> np.ndarray:
        """All masks as bool (N, H, W) (N may be 0)."""
        if not self.annotations:
            return np.zeros((0, self.height, self.width), dtype=bool)
        return np.stack([a.decode() for a in self.annotations])

    def to_json_dict(self) -> dict[str, Any]:
        """The SA-1B per-image JSON as a dict."""
        return {
            "image": {
                "image_id": self.image_id,
                "file_name": self.file_name,
                "width": self.width,
                "height": self.height,
            },
            "annotations": [a.to_json_dict() for a in self.annotations],
        }

    @classmethod
    def from_json_dict(cls, data: Any, source: str = "<dict>") -> ImageRecord:
        """Validate and parse a SA-1B per-image dict; errors name ``source`` and the annotation."""
        return _parse_record(data, source)


def read_image_record(json_path: str | os.PathLike[str] | ShardMember) -> ImageRecord:
    """Read and validate one SA-1B per-image JSON file (or JSON member of a shard).

    Raises:
        InvalidInputError: the file is not JSON or not a valid record (the message names the file
            and, where relevant, the annotation id).
        OSError: the file cannot be read.
    """
    path = json_path if isinstance(json_path, ShardMember) else Path(json_path)
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{path}: not valid JSON ({exc})") from exc
    return _parse_record(data, str(path))


def read_image_record_lenient(
    json_path: str | os.PathLike[str] | ShardMember,
) -> tuple[ImageRecord, tuple[tuple[int | None, str], ...]]:
    """Read a per-image SA-1B JSON file, keeping its valid annotations.

    A bad annotation (an RLE that does not cover the image exactly, a missing key, a wrong type)
    is left out and reported instead of failing the whole record, so one bad mask costs one
    mask. Readers for training and evaluation use this.

    Returns:
        (the record with its valid annotations, (annotation id or None, reason) per skipped one).

    Raises:
        InvalidInputError: the file is not JSON, or its ``image`` part is invalid.
        OSError: the file cannot be read.
    """
    path = json_path if isinstance(json_path, ShardMember) else Path(json_path)
    try:
        return read_image_record(path), ()
    except InvalidInputError as exc:
        first = exc
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        raise first from None
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise first
    base = _parse_record({"image": data["image"], "annotations": []}, str(path))
    good: list[MaskAnnotation] = []
    skipped: list[tuple[int | None, str]] = []
    for k, ann in enumerate(data["annotations"]):
        try:
            good.append(_parse_annotation(ann, k, base.size_hw, str(path)))
        except (InvalidInputError, TypeError) as exc:
            ann_id = ann.get("id") if isinstance(ann, dict) else None
            skipped.append((ann_id if isinstance(ann_id, int) else None, str(exc)))
    return replace(base, annotations=tuple(good)), tuple(skipped)


def write_image_record(json_path: str | os.PathLike[str], record: ImageRecord) -> None:
    """Write ``record`` as SA-1B JSON atomically (temp file in the same folder, then rename)."""
    atomic_write_text(json_path, to_json(record.to_json_dict(), compact=True))


def record_from_masks(
    masks: np.ndarray,
    image_id: int,
    file_name: str,
    *,
    ids: Sequence[int] | None = None,
    predicted_iou: Sequence[float] | None = None,
    stability_score: Sequence[float] | None = None,
    point_coords: Sequence[Sequence[Sequence[float]]] | np.ndarray | None = None,
    crop_box: Sequence[Sequence[float]] | np.ndarray | None = None,
    labels: Sequence[str | None] | None = None,
    levels: Sequence[str | None] | None = None,
    parent_ids: Sequence[int | None] | None = None,
    attributes: Sequence[Mapping[str, Any] | None] | None = None,
) -> ImageRecord:
    """Build an :class:`ImageRecord` from binary masks.

    Args:
        masks: bool or {0, 1} array (N, H, W); H and W become the image size.
        image_id: integer id of the image.
        file_name: image file name.
        ids: annotation ids (N,); default 0..N-1.
        predicted_iou, stability_score: per-mask floats (N,).
        point_coords: per-mask points (N, P, 2) in (x, y) image pixels.
        crop_box: per-mask crops (N, 4) XYWH.
        labels, levels, parent_ids, attributes: per-mask optional extras (N,).
    """
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise InvalidInputError(
            f"record_from_masks expects masks (N, H, W), got shape {masks.shape}"
        )
    n, h, w = masks.shape
    per_mask = {
        "ids": ids,
        "predicted_iou": predicted_iou,
        "stability_score": stability_score,
        "point_coords": point_coords,
        "crop_box": crop_box,
        "labels": labels,
        "levels": levels,
        "parent_ids": parent_ids,
        "attributes": attributes,
    }
    for name, values in per_mask.items():
        if values is not None and len(values) != n:
            raise InvalidInputError(
                f"record_from_masks: {name} has {len(values)} entries, expected {n}"
            )
    # One pycocotools call for all masks: (N, H, W) -> (H, W, N) Fortran order, as it expects.
    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0), dtype=np.uint8))
    boxes = mask_utils.toBbox(rles) if n else np.zeros((0, 4))
    areas = mask_utils.area(rles) if n else np.zeros(0)
    annotations = []
    for i in range(n):
        annotations.append(
            MaskAnnotation(
                id=int(ids[i]) if ids is not None else i,
                segmentation={"size": [h, w], "counts": rles[i]["counts"].decode("ascii")},
                bbox=_four_floats(boxes[i]),
                area=int(areas[i]),
                predicted_iou=None if predicted_iou is None else float(predicted_iou[i]),
                stability_score=None if stability_score is None else float(stability_score[i]),
                point_coords=(
                    None
                    if point_coords is None
                    else tuple((float(p[0]), float(p[1])) for p in point_coords[i])
                ),
                crop_box=None if crop_box is None else _four_floats(crop_box[i]),
                label=None if labels is None else labels[i],
                level=None if levels is None else levels[i],
                parent_id=_opt_int(None if parent_ids is None else parent_ids[i]),
                attributes=None if attributes is None else attributes[i],
            )
        )
    return ImageRecord(
        image_id=int(image_id),
        file_name=file_name,
        width=w,
        height=h,
        annotations=tuple(annotations),
    )


def find_dataset(root: str | os.PathLike[str]) -> list[tuple[DataFile, DataFile]]:
    """List the (image, json) pairs of a dataset folder: files sorted by image path, then the
    members of its tar shards in shard order.

    Accepts ``<root>/images/<stem>.<png|jpg|jpeg>`` with ``<root>/annotations/<stem>.json``, the
    SA-1B flat layout ``<root>/<stem>.jpg`` beside ``<root>/<stem>.json``, and SA-1B tar shards
    ``<root>/*.tar`` holding ``<stem>.jpg`` beside ``<stem>.json`` (``root`` may also be one
    ``.tar``). Images without a JSON (and JSON without an image) are skipped.

    Raises:
        InvalidInputError: ``root`` is not a folder or a shard, holds no image/JSON pair, or
            holds a shard that is not an uncompressed tar.
    """
    root_path = Path(root)
    if not root_path.is_dir() and not shard_files(root_path):
        raise InvalidInputError(f"dataset folder {root_path} does not exist or is not a folder")
    pairs: list[tuple[Path, Path]] = []
    if root_path.is_dir():
        images_dir, ann_dir = root_path / "images", root_path / "annotations"
        if images_dir.is_dir() and ann_dir.is_dir():
            pairs += _pairs_in(images_dir, ann_dir)
        pairs += _pairs_in(root_path, root_path)
    found: list[tuple[DataFile, DataFile]] = [*sorted(pairs)]
    found += find_shard_dataset(root_path).pairs
    if not found:
        raise InvalidInputError(
            f"no dataset found in {root_path}: expected images/<stem>.png|jpg with "
            "annotations/<stem>.json, <stem>.jpg beside <stem>.json, or sa_*.tar shards of them"
        )
    return found


def read_dataset_image(file: DataFile, *, max_pixels: int | None = None) -> np.ndarray:
    """The image a dataset names, from a file or a shard, as RGB uint8 (H, W, 3)
    (:func:`anyseg.io.read_image`'s policy either way)."""
    if isinstance(file, ShardMember):
        return file.read_image(max_pixels=max_pixels)
    return read_image(file, max_pixels=max_pixels)


# ---------------------------------------------------------------------------------------------
# Private helpers


def _pairs_in(images_dir: Path, ann_dir: Path) -> list[tuple[Path, Path]]:
    pairs = []
    for image_path in images_dir.iterdir():
        if image_path.suffix.lower() in IMAGE_SUFFIXES and image_path.is_file():
            json_path = ann_dir / f"{image_path.stem}.json"
            if json_path.is_file():
                pairs.append((image_path, json_path))
    return pairs


def _opt_int(value: int | None) -> int | None:
    return None if value is None else int(value)


def _four_floats(values: Any) -> tuple[float, float, float, float]:
    a, b, c, d = (float(v) for v in values)
    return (a, b, c, d)


def _parse_record(data: Any, source: str) -> ImageRecord:
    if not isinstance(data, dict):
        raise InvalidInputError(f"{source}: expected a JSON object, got {type(data).__name__}")
    for key in ("image", "annotations"):
        if key not in data:
            raise InvalidInputError(f"{source}: missing top-level key {key!r}")
    image = data["image"]
    if not isinstance(image, dict):
        raise InvalidInputError(f"{source}: 'image' must be an object")
    missing = [k for k in _REQUIRED_IMAGE_KEYS if k not in image]
    if missing:
        raise InvalidInputError(f"{source}: 'image' is missing key(s) {missing}")
    try:
        width, height = int(image["width"]), int(image["height"])
        image_id = int(image["image_id"])
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{source}: image_id, width and height must be integers") from exc
    if width <= 0 or height <= 0:
        raise InvalidInputError(f"{source}: image size must be positive, got {width}x{height}")
    if not isinstance(data["annotations"], list):
        raise InvalidInputError(f"{source}: 'annotations' must be a list")
    anns = tuple(
        _parse_annotation(a, k, (height, width), source) for k, a in enumerate(data["annotations"])
    )
    return ImageRecord(
        image_id=image_id,
        file_name=str(image["file_name"]),
        width=width,
        height=height,
        annotations=anns,
    )


def _parse_annotation(
    ann: Any, index: int, size_hw: tuple[int, int], source: str
) -> MaskAnnotation:
    where = f"{source}: annotation #{index}"
    if not isinstance(ann, dict):
        raise InvalidInputError(f"{where}: expected an object, got {type(ann).__name__}")
    if "id" in ann:
        where = f"{source}: annotation id {ann['id']}"
    missing = [k for k in _REQUIRED_ANN_KEYS if k not in ann]
    if missing:
        raise InvalidInputError(f"{where}: missing key(s) {missing}")
    seg = ann["segmentation"]
    if not isinstance(seg, dict) or "size" not in seg or "counts" not in seg:
        raise InvalidInputError(f"{where}: segmentation must be a COCO RLE {{'size', 'counts'}}")
    try:
        rle_hw = (int(seg["size"][0]), int(seg["size"][1]))
    except (TypeError, ValueError, IndexError, KeyError) as exc:
        raise InvalidInputError(f"{where}: segmentation size must be [h, w]") from exc
    if len(seg["size"]) != 2 or rle_hw != size_hw:
        raise InvalidInputError(
            f"{where}: RLE size {list(seg['size'])} does not match image size [h, w] = "
            f"{list(size_hw)}"
        )
    counts = seg["counts"]
    if isinstance(counts, list):
        # Uncompressed RLE (COCO iscrowd style): normalize to the compressed string form.
        counts = encode_mask(decode_rle({"size": list(rle_hw), "counts": counts}))["counts"]
    elif not isinstance(counts, str):
        raise InvalidInputError(f"{where}: RLE counts must be a string or a list of ints")
    try:
        check_rle({"size": list(rle_hw), "counts": counts})
    except InvalidInputError as exc:
        raise InvalidInputError(f"{where}: {exc}") from None
    try:
        return MaskAnnotation(
            id=int(ann["id"]),
            segmentation={"size": list(rle_hw), "counts": counts},
            bbox=_box(ann["bbox"], "bbox", where),
            area=_number(ann["area"], "area", where),
            predicted_iou=_opt_float(ann.get("predicted_iou"), "predicted_iou", where),
            stability_score=_opt_float(ann.get("stability_score"), "stability_score", where),
            point_coords=_points(ann.get("point_coords"), where),
            crop_box=None
            if ann.get("crop_box") is None
            else _box(ann["crop_box"], "crop_box", where),
            label=None if ann.get("label") is None else str(ann["label"]),
            level=_level(ann.get("level"), where),
            parent_id=None if ann.get("parent_id") is None else int(ann["parent_id"]),
            attributes=_attributes(ann.get("attributes"), where),
            label_score=_opt_float(ann.get("label_score"), "label_score", where),
        )
    except (TypeError, ValueError) as exc:
        if isinstance(exc, InvalidInputError):
            raise
        raise InvalidInputError(f"{where}: malformed value ({exc})") from exc


def _box(values: Any, name: str, where: str) -> tuple[float, float, float, float]:
    if not isinstance(values, (list, tuple)) or len(values) != 4:
        got = len(values) if isinstance(values, (list, tuple)) else type(values).__name__
        raise InvalidInputError(f"{where}: {name} must be [x, y, w, h] (4 numbers), got {got}")
    return _four_floats(values)


def _number(value: Any, name: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInputError(f"{where}: {name} must be a number, got {value!r}")
    return value


def _opt_float(value: Any, name: str, where: str) -> float | None:
    return None if value is None else float(_number(value, name, where))


def _points(value: Any, where: str) -> tuple[tuple[float, float], ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or any(
        not isinstance(p, (list, tuple)) or len(p) != 2 for p in value
    ):
        raise InvalidInputError(f"{where}: point_coords must be a list of [x, y] pairs")
    return tuple((float(p[0]), float(p[1])) for p in value)


def _attributes(value: Any, where: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidInputError(
            f"{where}: attributes must be an object, got {type(value).__name__}"
        )
    return value


def _level(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if value not in LEVELS:
        raise InvalidInputError(f"{where}: level must be one of {LEVELS}, got {value!r}")
    return str(value)
