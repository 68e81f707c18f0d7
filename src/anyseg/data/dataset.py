"""Training samples from SA-1B-layout folders and COCO instance files.

A sample is one image resized so its long side equals the model's input size, normalized and
zero-padded to a square (exactly what ``Sam.preprocess`` produces), with up to N of its masks in
the same frame. Masks are decoded lazily (only the sampled ones, when the sample is drawn).
Randomness (which masks, the flip, the seed of the sample's prompts) comes from a generator seeded
by ``(dataset seed, draw key)``, so a sample is the same whichever worker or process draws it.

Bad records are reported (``dataset.skipped`` and a logged warning naming the file and annotation
id) and skipped: unreadable or invalid JSON, RLE whose size does not match the image, empty masks,
masks covering more than ``max_mask_area_fraction`` of the image, missing image files.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np
import torch

from anyseg.data.attributes import record_attributes
from anyseg.data.captions import CaptionConfig, random_caption
from anyseg.data.sa1b import (
    DataFile,
    ImageRecord,
    find_dataset,
    read_dataset_image,
    read_image_record_lenient,
)
from anyseg.data.shards import find_shard_dataset
from anyseg.errors import AnysegError, InvalidInputError
from anyseg.ops.rle import decode_rle, rle_area
from anyseg.ops.transforms import get_preprocess_shape, resize_longest_side

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SkippedItem:
    """A record left out of the data set: ``annotation_id`` is None when the whole image is."""

    file: str
    annotation_id: int | None
    reason: str

    def __str__(self) -> str:
        what = (
            self.file
            if self.annotation_id is None
            else f"{self.file} annotation {self.annotation_id}"
        )
        return f"skipped {what}: {self.reason}"


class _Entry(NamedTuple):
    image_path: DataFile  # a file, or a member of a tar shard
    json_path: DataFile | None  # SA-1B: re-read at draw time; COCO: None (record kept in memory)
    record: ImageRecord | None
    annotation_ids: tuple[int, ...]  # the usable ones


class Sample(NamedTuple):
    """One training image and its sampled masks, in the model's input frame.

    Fields:
        image: (3, S, S) float32, normalized with the model's pixel mean/std, zero-padded.
        masks: (M, S, S) bool, 0 <= M <= max masks; False in the padding.
        input_hw: (h, w) of the resized image inside the padded square.
        original_hw: (H, W) of the image file.
        prompt_seed: seed of this sample's simulated prompts (non-negative int63).
        image_id: the record's image id.
        annotation_ids: ids of the M masks, in order.
        flipped: whether the image and masks were flipped horizontally.
        captions: a random true caption of each of the M masks ("" where the mask has no
            attributes or nothing nameable), when the dataset draws captions; else empty.
    """

    image: torch.Tensor
    masks: torch.Tensor
    input_hw: tuple[int, int]
    original_hw: tuple[int, int]
    prompt_seed: int
    image_id: int
    annotation_ids: tuple[int, ...]
    flipped: bool
    captions: tuple[str, ...] = ()


class Batch(NamedTuple):
    """Samples collated for one step: masks of all images concatenated.

    Fields:
        images: (B, 3, S, S) float32 normalized, padded.
        masks: (M, S, S) bool, M = total masks over the B images.
        mask_image_index: (M,) long, which image each mask belongs to (non-decreasing).
        input_hw: (B, 2) long, (h, w) of each resized image inside the square.
        prompt_seeds: (B,) long.
        image_ids: (B,) long.
        captions: (M,) a caption per mask ("" for none) when the dataset draws them, else ().
    """

    images: torch.Tensor
    masks: torch.Tensor
    mask_image_index: torch.Tensor
    input_hw: torch.Tensor
    prompt_seeds: torch.Tensor
    image_ids: torch.Tensor
    captions: tuple[str, ...] = ()

    def to(self, device: torch.device | str) -> Batch:
        return self._replace(
            **{f: getattr(self, f).to(device, non_blocking=True) for f in _BATCH_TENSORS}
        )

    def pin_memory(self) -> Batch:
        return self._replace(**{f: getattr(self, f).pin_memory() for f in _BATCH_TENSORS})


#: The tensor fields of :class:`Batch` (the captions are strings).
_BATCH_TENSORS = Batch._fields[:-1]


def collate(samples: Sequence[Sample]) -> Batch:
    """Stack images and concatenate masks (see :class:`Batch`)."""
    if not samples:
        raise InvalidInputError("collate needs at least one sample")
    counts = [s.masks.shape[0] for s in samples]
    return Batch(
        images=torch.stack([s.image for s in samples]),
        masks=torch.cat([s.masks for s in samples]),
        mask_image_index=torch.repeat_interleave(
            torch.arange(len(samples)), torch.tensor(counts, dtype=torch.long)
        ),
        input_hw=torch.tensor([s.input_hw for s in samples], dtype=torch.long),
        prompt_seeds=torch.tensor([s.prompt_seed for s in samples], dtype=torch.long),
        image_ids=torch.tensor([s.image_id for s in samples], dtype=torch.long),
        captions=tuple(c for s in samples for c in s.captions),
    )


@dataclass(frozen=True)
class SamplingConfig:
    """How one training sample is drawn from an image's masks (the training config's
    ``[data]`` table holds these fields; this is their one home)."""

    # Paper: "up to 64 randomly sampled masks per GPU" (one image per GPU).
    max_masks_per_image: int = 64
    # Paper appendix A: discard masks covering more than 90% of the image.
    max_mask_area_fraction: float = 0.9
    # Masks smaller than this many pixels after resizing to the model's input are dropped.
    min_mask_pixels: int = 1
    # The paper's ViT-H recipe uses no augmentation; a horizontal flip helps small data sets.
    hflip_prob: float = 0.5

    def __post_init__(self) -> None:
        if self.max_masks_per_image < 1:
            raise InvalidInputError(
                f"max_masks_per_image must be >= 1, got {self.max_masks_per_image}"
            )
        if not 0 < self.max_mask_area_fraction <= 1:
            raise InvalidInputError(
                f"max_mask_area_fraction must be in (0, 1], got {self.max_mask_area_fraction}"
            )
        if not 0 <= self.hflip_prob <= 1:
            raise InvalidInputError(f"hflip_prob must be in [0, 1], got {self.hflip_prob}")

    def without_augmentation(self) -> SamplingConfig:
        """The same sampling with no flip (what evaluation draws)."""
        return SamplingConfig(
            max_masks_per_image=self.max_masks_per_image,
            max_mask_area_fraction=self.max_mask_area_fraction,
            min_mask_pixels=self.min_mask_pixels,
            hflip_prob=0.0,
        )


#: A dataset built without a sampling config draws every mask, unflipped.
NO_AUGMENTATION = SamplingConfig(hflip_prob=0.0)


class SegmentationDataset(torch.utils.data.Dataset[Sample]):
    """Map-style dataset of :class:`Sample` (see the module docstring).

    Items are addressed by ``index`` (seeded with the index itself: fixed samples, for
    evaluation) or by ``(index, draw_key)`` (what the training sampler passes: a different
    draw of the same image for every ``draw_key``).

    Args:
        source: SA-1B folder (or tar shards of one, see :func:`~anyseg.data.sa1b.find_dataset`)
            or COCO instances ``.json``.
        img_size: the model's square input side S.
        pixel_mean, pixel_std: the model's normalization (0..255 scale), RGB.
        sampling: how masks are drawn (how many, which are dropped, the flip probability);
            default :data:`NO_AUGMENTATION`.
        seed: base seed of every draw.
        data_format: "auto" (a .json file is COCO, a folder SA-1B), "sa1b" or "coco".
        coco_images: folder of a COCO file's images (default: the JSON's folder, or its
            ``images/`` subfolder when the file is not found there).
        max_images: keep only the first N images (0 = all).
        captions: draw a random true caption of every sampled mask from its ``attributes``
            (:func:`anyseg.data.captions.random_caption`; from a generator of its own, so the
            rest of the sample is what it is without captions); None: no captions.
    """

    def __init__(
        self,
        source: str | Path,
        img_size: int,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        sampling: SamplingConfig = NO_AUGMENTATION,
        seed: int = 0,
        data_format: str = "auto",
        coco_images: str | Path | None = None,
        max_images: int = 0,
        captions: CaptionConfig | None = None,
    ) -> None:
        if img_size <= 0:
            raise InvalidInputError(f"img_size must be positive, got {img_size}")
        self.img_size = img_size
        self.mean = np.asarray(pixel_mean, dtype=np.float32)
        self.std = np.asarray(pixel_std, dtype=np.float32)
        self.sampling = sampling
        self.seed = seed
        self.captions = captions
        self.skipped: list[SkippedItem] = []
        source = Path(source)
        if data_format == "auto":
            data_format = "coco" if source.suffix.lower() == ".json" else "sa1b"
        if data_format == "sa1b":
            self._entries = self._index_sa1b(source)
        elif data_format == "coco":
            self._entries = self._index_coco(source, coco_images)
        else:
            raise InvalidInputError(f"data format must be auto, sa1b or coco, got {data_format!r}")
        if max_images > 0:
            self._entries = self._entries[:max_images]
        for item in self.skipped:
            log.warning("%s", item)
        if not self._entries:
            raise InvalidInputError(
                f"{source}: no usable image (skipped {len(self.skipped)} record(s); first: "
                f"{self.skipped[0] if self.skipped else 'none'})"
            )

    # ---------------------------------------------------------------- indexing
    def _usable_ids(self, record: ImageRecord, file: str) -> tuple[int, ...]:
        ids = []
        image_area = max(record.width * record.height, 1)
        for ann in record.annotations:
            area = rle_area(ann.segmentation)
            if area == 0:
                self.skipped.append(SkippedItem(file, ann.id, "empty mask"))
            elif area > self.sampling.max_mask_area_fraction * image_area:
                self.skipped.append(
                    SkippedItem(
                        file,
                        ann.id,
                        f"mask covers {area / image_area:.0%} of the image "
                        f"(> max_mask_area_fraction {self.sampling.max_mask_area_fraction})",
                    )
                )
            else:
                ids.append(ann.id)
        return tuple(ids)

    def _index_sa1b(self, root: Path) -> list[_Entry]:
        entries = []
        pairs = find_dataset(root)
        paired = {j for _, j in pairs}
        # Annotation files without an image (find_dataset pairs only what exists); in the flat
        # layout a JSON without a same-stem image of its own (e.g. dataset.json) is not a record.
        orphans: list[DataFile] = [*sorted((root / "annotations").glob("*.json"))]
        if not (root / "annotations").is_dir():
            orphans = [
                j
                for j in sorted(root.glob("*.json"))
                if j.name != "dataset.json" and j.stem.startswith("sa_")
            ]
        orphans += find_shard_dataset(root).orphans
        for json_path in orphans:
            if json_path not in paired:
                self.skipped.append(SkippedItem(str(json_path), None, "image file not found"))
        for image_path, json_path in pairs:
            record = self._read_sa1b(json_path)
            if record is None:
                continue
            ids = self._usable_ids(record, str(json_path))
            if not ids:
                self.skipped.append(SkippedItem(str(json_path), None, "no usable mask"))
                continue
            entries.append(_Entry(image_path, json_path, None, ids))
        return entries

    def _read_sa1b(self, json_path: DataFile, report: bool = True) -> ImageRecord | None:
        """Read a record; on a bad annotation keep the good ones (each bad one reported)."""
        try:
            record, bad = read_image_record_lenient(json_path)
        except (AnysegError, ValueError, KeyError, TypeError, OSError) as exc:
            if report:
                self.skipped.append(SkippedItem(str(json_path), None, f"invalid record: {exc}"))
            return None
        if report:
            self.skipped.extend(SkippedItem(str(json_path), i, reason) for i, reason in bad)
        return record

    def _index_coco(self, json_path: Path, images_dir: str | Path | None) -> list[_Entry]:
        from anyseg.data.coco import coco_to_records

        try:
            data: Any = json.loads(json_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"{json_path}: cannot read COCO instances ({exc})") from exc
        try:
            records = coco_to_records(data, str(json_path))
        except AnysegError:
            records = self._coco_lenient(data, json_path)
        roots = (
            [Path(images_dir)]
            if images_dir is not None
            else [json_path.parent, json_path.parent / "images"]
        )
        entries = []
        for record in records:
            image_path = next(
                (r / record.file_name for r in roots if (r / record.file_name).is_file()), None
            )
            if image_path is None:
                self.skipped.append(
                    SkippedItem(
                        str(json_path),
                        None,
                        f"image {record.file_name!r} (image_id {record.image_id}) not found in "
                        f"{', '.join(str(r) for r in roots)}",
                    )
                )
                continue
            ids = self._usable_ids(record, f"{json_path} image_id {record.image_id}")
            if ids:
                entries.append(_Entry(image_path, None, record, ids))
        return entries

    def _coco_lenient(self, data: Any, json_path: Path) -> list[ImageRecord]:
        from anyseg.data.coco import coco_to_records

        if not isinstance(data, dict) or not isinstance(data.get("images"), list):
            raise InvalidInputError(f"{json_path}: not a COCO instances file (no 'images' list)")
        base = {k: v for k, v in data.items() if k not in ("images", "annotations")}
        images = {im.get("id"): im for im in data["images"] if isinstance(im, dict)}
        per_image: dict[Any, list[Any]] = {i: [] for i in images}
        for ann in data.get("annotations") or []:
            image_id = ann.get("image_id") if isinstance(ann, dict) else None
            try:
                coco_to_records(
                    {**base, "images": [images[image_id]], "annotations": [ann]}, str(json_path)
                )
            except (ValueError, TypeError, KeyError) as exc:
                ann_id = ann.get("id") if isinstance(ann, dict) else None
                self.skipped.append(
                    SkippedItem(
                        str(json_path), ann_id if isinstance(ann_id, int) else None, str(exc)
                    )
                )
                continue
            per_image[image_id].append(ann)
        records = []
        for image_id, anns in per_image.items():
            try:
                records.extend(
                    coco_to_records(
                        {**base, "images": [images[image_id]], "annotations": anns}, str(json_path)
                    )
                )
            except (ValueError, TypeError) as exc:
                self.skipped.append(SkippedItem(str(json_path), None, str(exc)))
        return records

    # ---------------------------------------------------------------- drawing
    def __len__(self) -> int:
        return len(self._entries)

    def image_path(self, index: int) -> DataFile:
        return self._entries[index].image_path

    def __getitem__(self, key: int | tuple[int, int]) -> Sample:
        index, draw_key = (key, key) if isinstance(key, int) else (int(key[0]), int(key[1]))
        entry = self._entries[index]
        rng = np.random.default_rng([self.seed, draw_key, index])
        record = entry.record
        if record is None and entry.json_path is not None:
            record = self._read_sa1b(entry.json_path, report=False)
        s = self.img_size
        empty = self._empty_sample(record, entry)
        if record is None:
            return empty
        try:
            image = read_dataset_image(entry.image_path)
        except (OSError, AnysegError) as exc:
            log.warning("skipped %s: %s", entry.image_path, exc)
            return empty
        if image.shape[:2] != record.size_hw:
            log.warning(
                "skipped %s: image is %dx%d but its record says %dx%d",
                entry.image_path,
                image.shape[0],
                image.shape[1],
                record.height,
                record.width,
            )
            return empty
        usable = set(entry.annotation_ids)
        anns = [a for a in record.annotations if a.id in usable]
        chosen = rng.permutation(len(anns))[: self.sampling.max_masks_per_image]
        flip = bool(rng.random() < self.sampling.hflip_prob)
        prompt_seed = int(rng.integers(0, 2**62))

        h, w = get_preprocess_shape(record.height, record.width, s)
        resized = resize_longest_side(image, s)  # (h, w, 3) uint8
        masks = np.zeros((len(chosen), s, s), dtype=bool)
        keep = []
        for j, i in enumerate(chosen):
            full = decode_rle(anns[i].segmentation).astype(np.uint8)
            interp = cv2.INTER_AREA if h < record.height else cv2.INTER_LINEAR
            small = cv2.resize(full * 255, (w, h), interpolation=interp) >= 128
            if int(small.sum()) >= self.sampling.min_mask_pixels:
                masks[j, :h, :w] = small
                keep.append(j)
        masks = masks[keep]
        ids = tuple(anns[chosen[j]].id for j in keep)
        if flip:
            resized = resized[:, ::-1]
            masks[:, :h, :w] = masks[:, :h, :w][:, :, ::-1].copy()
        padded = np.zeros((s, s, 3), dtype=np.float32)
        padded[:h, :w] = (resized.astype(np.float32) - self.mean) / self.std
        captions: tuple[str, ...] = ()
        if self.captions is not None:
            # A generator of its own: the draws above stay those of a run without captions.
            captions = self._captions(
                record, ids, np.random.default_rng([self.seed, draw_key, index, 1])
            )
        return Sample(
            image=torch.from_numpy(np.ascontiguousarray(padded.transpose(2, 0, 1))),
            masks=torch.from_numpy(np.ascontiguousarray(masks)),
            input_hw=(h, w),
            original_hw=record.size_hw,
            prompt_seed=prompt_seed,
            image_id=record.image_id,
            annotation_ids=ids,
            flipped=flip,
            captions=captions,
        )

    def _captions(
        self, record: ImageRecord, ids: tuple[int, ...], rng: np.random.Generator
    ) -> tuple[str, ...]:
        """A random true caption of each mask of ``ids`` ("" where there is none)."""
        try:
            attrs, parents = record_attributes(record.annotations, f"image {record.image_id} mask")
        except InvalidInputError as exc:
            log.warning("no captions for image %s: %s", record.image_id, exc)
            return ("",) * len(ids)
        where = {a.id: i for i, a in enumerate(record.annotations)}
        out = []
        for ann_id in ids:
            i = where[ann_id]
            own, up = attrs[i], parents[i]
            caption = None
            if own is not None:
                parent = attrs[up] if up >= 0 else None
                caption = random_caption(own, parent, rng, self.captions)
            out.append("" if caption is None else caption.text)
        return tuple(out)

    def _empty_sample(self, record: ImageRecord | None, entry: _Entry) -> Sample:
        s = self.img_size
        hw = record.size_hw if record is not None else (s, s)
        return Sample(
            image=torch.zeros(3, s, s),
            masks=torch.zeros(0, s, s, dtype=torch.bool),
            input_hw=get_preprocess_shape(hw[0], hw[1], s),
            original_hw=hw,
            prompt_seed=0,
            image_id=record.image_id if record is not None else -1,
            annotation_ids=(),
            flipped=False,
        )
