"""Typed containers of automatic mask generation.

:class:`Candidates` holds the masks of one batch, crop or image while they are filtered (a typed
replacement of the original's ``MaskData`` dict). :class:`MaskRecord` is one output mask, with
the original's record dict (:meth:`MaskRecord.to_dict`) and the SA-1B annotation
(:meth:`MaskRecord.to_annotation`) as conversions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from anyseg.automatic.config import OutputMode
from anyseg.data.sa1b import ImageRecord, MaskAnnotation
from anyseg.ops.boxes import box_xyxy_to_xywh
from anyseg.ops.masks import mask_to_box
from anyseg.ops.rle import (
    CocoRle,
    UncompressedRle,
    masks_to_uncompressed_rle,
    uncompressed_rle_area,
    uncompressed_rle_to_mask,
    uncompressed_to_coco_rle,
)


@dataclass(frozen=True)
class Candidates:
    """N candidate masks and their data, row i of every field belonging to mask i.

    Attributes:
        rles: N uncompressed RLEs of the (H, W) masks in image pixels.
        boxes_xyxy: (N, 4) int64 tight boxes, inclusive last pixel; in the frame of the crop
            while a crop is processed, in image pixels afterwards.
        iou_preds: (N,) float32 predicted IoU.
        points_xy: (N, 2) float64 prompt point; crop frame, then image pixels like the boxes.
        stability: (N,) float32 stability score.
        crop_boxes_xyxy: (N, 4) int64 crop each mask was predicted in (image pixels).
    """

    rles: list[UncompressedRle]
    boxes_xyxy: torch.Tensor
    iou_preds: torch.Tensor
    points_xy: torch.Tensor
    stability: torch.Tensor
    crop_boxes_xyxy: torch.Tensor

    def __len__(self) -> int:
        return len(self.rles)

    @classmethod
    def empty(cls) -> Candidates:
        return cls(
            rles=[],
            boxes_xyxy=torch.zeros(0, 4, dtype=torch.int64),
            iou_preds=torch.zeros(0),
            points_xy=torch.zeros(0, 2, dtype=torch.float64),
            stability=torch.zeros(0),
            crop_boxes_xyxy=torch.zeros(0, 4, dtype=torch.int64),
        )

    def select(self, index: torch.Tensor) -> Candidates:
        """The candidates at ``index`` (int64 positions, in that order, or a (N,) bool mask)."""
        if index.dtype == torch.bool:
            index = torch.nonzero(index).flatten()
        positions = index.tolist()
        return Candidates(
            rles=[self.rles[i] for i in positions],
            boxes_xyxy=self.boxes_xyxy[index],
            iou_preds=self.iou_preds[index],
            points_xy=self.points_xy[index],
            stability=self.stability[index],
            crop_boxes_xyxy=self.crop_boxes_xyxy[index],
        )

    def replace(self, **changes: Any) -> Candidates:
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__}
        fields.update(changes)
        return Candidates(**fields)

    @staticmethod
    def cat(parts: Sequence[Candidates]) -> Candidates:
        """All candidates of ``parts``, in order."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return Candidates.empty()
        return Candidates(
            rles=[rle for p in parts for rle in p.rles],
            boxes_xyxy=torch.cat([p.boxes_xyxy for p in parts]),
            iou_preds=torch.cat([p.iou_preds for p in parts]),
            points_xy=torch.cat([p.points_xy for p in parts]),
            stability=torch.cat([p.stability for p in parts]),
            crop_boxes_xyxy=torch.cat([p.crop_boxes_xyxy for p in parts]),
        )


@dataclass(frozen=True)
class MaskRecord:
    """One automatically generated mask, in image pixels.

    Attributes:
        rle: the mask as an uncompressed RLE (``{"size": [H, W], "counts": [...]}``).
        area: foreground pixels.
        bbox_xywh: tight box (x, y, w, h), w and h counted as in the original (last - first).
        predicted_iou: the model's IoU estimate for the mask.
        point_xy: the grid point that prompted it.
        stability_score: IoU of the masks at thresholds ±``stability_score_offset``.
        crop_box_xywh: the crop it was predicted in.
        label: the best-matching phrase of a label vocabulary (``AmgConfig.label_vocab``),
            else None; label_score: its probability among the vocabulary.
    """

    rle: UncompressedRle
    area: int
    bbox_xywh: tuple[int, int, int, int]
    predicted_iou: float
    point_xy: tuple[float, float]
    stability_score: float
    crop_box_xywh: tuple[int, int, int, int]
    label: str | None = None
    label_score: float | None = None

    @classmethod
    def from_mask(
        cls,
        mask: np.ndarray,
        *,
        predicted_iou: float = 1.0,
        point_xy: tuple[float, float] | None = None,
        stability_score: float = 1.0,
        crop_box_xywh: tuple[int, int, int, int] | None = None,
    ) -> MaskRecord:
        """A record of an (H, W) bool mask (box and area computed; the point defaults to the
        box centre, the crop to the whole image)."""
        mask_t = torch.as_tensor(np.ascontiguousarray(mask, dtype=bool))
        rle = masks_to_uncompressed_rle(mask_t[None])[0]
        box = box_xyxy_to_xywh(mask_to_box(mask_t[None]))[0].tolist()
        h, w = mask_t.shape
        return cls(
            rle=rle,
            area=uncompressed_rle_area(rle),
            bbox_xywh=(box[0], box[1], box[2], box[3]),
            predicted_iou=float(predicted_iou),
            point_xy=point_xy or (box[0] + box[2] / 2, box[1] + box[3] / 2),
            stability_score=float(stability_score),
            crop_box_xywh=crop_box_xywh or (0, 0, int(w), int(h)),
        )

    def mask(self) -> np.ndarray:
        """(H, W) bool."""
        return uncompressed_rle_to_mask(self.rle)

    def coco_rle(self) -> CocoRle:
        """``{"size": [H, W], "counts": str}``, byte-identical to pycocotools."""
        return uncompressed_to_coco_rle(self.rle)

    def segmentation(self, output_mode: OutputMode) -> Any:
        if output_mode == "coco_rle":
            return self.coco_rle()
        if output_mode == "binary_mask":
            return self.mask()
        return self.rle

    def to_dict(self, output_mode: OutputMode = "binary_mask") -> dict[str, Any]:
        """The original generator's record dict."""
        return {
            "segmentation": self.segmentation(output_mode),
            "area": self.area,
            "bbox": list(self.bbox_xywh),
            "predicted_iou": self.predicted_iou,
            "point_coords": [list(self.point_xy)],
            "stability_score": self.stability_score,
            "crop_box": list(self.crop_box_xywh),
        } | ({} if self.label is None else {"label": self.label, "label_score": self.label_score})

    def to_annotation(self, ann_id: int) -> MaskAnnotation:
        """The SA-1B annotation of this mask (COCO RLE)."""
        return MaskAnnotation(
            id=ann_id,
            segmentation=self.coco_rle(),
            bbox=_floats4(self.bbox_xywh),
            area=self.area,
            predicted_iou=self.predicted_iou,
            stability_score=self.stability_score,
            point_coords=(self.point_xy,),
            crop_box=_floats4(self.crop_box_xywh),
            label=self.label,
            label_score=self.label_score,
        )


def records_from_candidates(candidates: Candidates) -> list[MaskRecord]:
    """One :class:`MaskRecord` per candidate (boxes and points already in image pixels)."""
    boxes = box_xyxy_to_xywh(candidates.boxes_xyxy).tolist()
    crops = box_xyxy_to_xywh(candidates.crop_boxes_xyxy).tolist()
    ious = candidates.iou_preds.tolist()
    stabilities = candidates.stability.tolist()
    points = candidates.points_xy.tolist()
    return [
        MaskRecord(
            rle=rle,
            area=uncompressed_rle_area(rle),
            bbox_xywh=(box[0], box[1], box[2], box[3]),
            predicted_iou=iou,
            point_xy=(point[0], point[1]),
            stability_score=stability,
            crop_box_xywh=(crop[0], crop[1], crop[2], crop[3]),
        )
        for rle, box, iou, point, stability, crop in zip(
            candidates.rles, boxes, ious, points, stabilities, crops, strict=True
        )
    ]


def to_image_record(
    records: Sequence[MaskRecord], image_id: int, file_name: str, size_hw: tuple[int, int]
) -> ImageRecord:
    """The SA-1B per-image record of generated masks (annotation ids 0..N-1 in order)."""
    return ImageRecord(
        image_id=int(image_id),
        file_name=file_name,
        width=int(size_hw[1]),
        height=int(size_hw[0]),
        annotations=tuple(r.to_annotation(i) for i, r in enumerate(records)),
    )


def _floats4(values: Sequence[float]) -> tuple[float, float, float, float]:
    return (float(values[0]), float(values[1]), float(values[2]), float(values[3]))
