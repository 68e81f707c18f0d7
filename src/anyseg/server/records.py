"""The rows of an annotation project: images and masks as the store returns them.

Masks are COCO RLE (``{"size": [h, w], "counts": str}``) with their box ``[x, y, w, h]`` and area
in original-image pixels, the prompts that produced them (``{"points": [[x, y]], "labels": [1|0],
"box": [x0, y0, x1, y1] | None}``), an optional label, who made and who last edited them, UTC
timestamps, and the SHA-256 of the image file they were drawn on. A mask is ``accepted`` (part
of the dataset) or a ``proposal`` from pre-fill that a person has not accepted yet; it is
*stale* when its image's file no longer has that SHA-256 (the file was replaced): stale masks are
kept, apart, and never exported against the new pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

MaskStatus = Literal["accepted", "proposal"]
MaskSource = Literal["manual", "prefill"]


def utc_now() -> str:
    """Current UTC time as ISO 8601 with millisecond precision."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class ImageRow:
    """One image of the project; ``width``/``height`` in pixels after EXIF orientation.

    ``num_accepted`` and ``num_proposals`` count masks of the current file content;
    ``num_stale`` counts accepted masks of earlier versions of the file.
    """

    id: int
    file_name: str
    width: int
    height: int
    sha256: str
    size_bytes: int
    mtime_ns: int
    num_accepted: int = 0
    num_proposals: int = 0
    num_stale: int = 0


@dataclass(frozen=True)
class MaskRow:
    """One stored mask. ``segmentation`` is COCO RLE, ``bbox`` is ``[x, y, w, h]`` in pixels;
    ``author`` made it, ``edited_by`` changed it last (None: never edited)."""

    id: int
    image_id: int
    status: MaskStatus
    source: MaskSource
    segmentation: dict[str, Any]
    bbox: list[float]
    area: int
    predicted_iou: float | None
    stability_score: float | None
    point_coords: list[list[float]] | None
    crop_box: list[float] | None
    prompts: dict[str, Any] | None
    label: str | None
    author: str | None
    created_at: str
    updated_at: str
    image_sha256: str = ""
    edited_by: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The mask as the HTTP API sends it."""
        return {
            "id": self.id,
            "image_id": self.image_id,
            "status": self.status,
            "source": self.source,
            "segmentation": self.segmentation,
            "bbox": self.bbox,
            "area": self.area,
            "predicted_iou": self.predicted_iou,
            "stability_score": self.stability_score,
            "point_coords": self.point_coords,
            "crop_box": self.crop_box,
            "prompts": self.prompts,
            "label": self.label,
            "author": self.author,
            "edited_by": self.edited_by,
            "image_sha256": self.image_sha256,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True)
class NewMask:
    """A mask to insert (ids, timestamps and the image's SHA-256 are set by the store)."""

    segmentation: dict[str, Any]
    bbox: list[float]
    area: int
    status: MaskStatus = "accepted"
    source: MaskSource = "manual"
    predicted_iou: float | None = None
    stability_score: float | None = None
    point_coords: list[list[float]] | None = None
    crop_box: list[float] | None = None
    prompts: dict[str, Any] | None = None
    label: str | None = None
    author: str | None = None
