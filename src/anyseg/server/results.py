"""What the annotation service returns, and the seam through which pre-fill gets its generator.

Coordinates are (x, y) pixels of the original image, masks COCO RLE at the original resolution.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from anyseg.errors import InvalidInputError
from anyseg.server.config import PrefillConfig
from anyseg.server.embeddings import EmbeddingSource
from anyseg.server.errors import PredictionExpiredError
from anyseg.server.images import SkippedFile
from anyseg.server.records import MaskRow

if TYPE_CHECKING:
    from anyseg.automatic import MaskRecord
    from anyseg.modeling import Sam


@dataclass(frozen=True)
class Candidate:
    """One predicted mask: COCO RLE, the model's IoU estimate, area (px) and box [x, y, w, h]."""

    segmentation: dict[str, Any]
    score: float
    area: int
    bbox: list[float]

    def to_json(self) -> dict[str, Any]:
        return {
            "segmentation": self.segmentation,
            "score": self.score,
            "area": self.area,
            "bbox": self.bbox,
        }


@dataclass(frozen=True)
class Prediction:
    """The answer to one prompt: candidates (3 for an ambiguous prompt, else 1), the index of
    the highest-scoring one, and timings in milliseconds (decode under the model lock, RLE
    encoding of the masks)."""

    candidates: list[Candidate]
    best: int
    multimask: bool
    decode_ms: float
    encode_ms: float
    prediction_id: str = ""
    used_previous: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "prediction_id": self.prediction_id,
            "candidates": [c.to_json() for c in self.candidates],
            "best": self.best,
            "multimask": self.multimask,
            "used_previous": self.used_previous,
            "timing": {"decode_ms": self.decode_ms, "encode_ms": self.encode_ms},
        }


@dataclass(frozen=True)
class EmbeddingInfo:
    """Where an image's embedding came from and how long getting it took (seconds)."""

    source: EmbeddingSource
    seconds: float


class RecentPredictions:
    """The low-res logits of the latest ``capacity`` predictions, so that the next click can
    feed a candidate back as the mask prompt (``previous`` in a predict request)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        # prediction id -> (image id, low-res logits (K, L, L))
        self._items: OrderedDict[str, tuple[int, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, image_id: int, low_res: np.ndarray) -> str:
        """Keep a prediction's (K, L, L) logits; returns its new id."""
        prediction_id = uuid.uuid4().hex
        with self._lock:
            self._items[prediction_id] = (image_id, np.asarray(low_res, dtype=np.float32))
            while len(self._items) > max(self.capacity, 0):
                self._items.popitem(last=False)
        return prediction_id

    def logits(self, image_id: int, previous: Any) -> np.ndarray:
        """The (1, L, L) logits ``previous`` = ``{"prediction_id", "candidate"}`` names.

        Raises:
            PredictionExpiredError: an unknown or expired id.
            InvalidInputError: a malformed ``previous``, another image's prediction, or a
                candidate index out of range.
        """
        if (
            not isinstance(previous, dict)
            or set(previous) != {"prediction_id", "candidate"}
            or not isinstance(previous["prediction_id"], str)
            or not isinstance(previous["candidate"], int)
            or isinstance(previous["candidate"], bool)
        ):
            raise InvalidInputError(
                'previous must be {"prediction_id": "<id from an earlier answer>", '
                '"candidate": <index>}'
            )
        pid, k = previous["prediction_id"], previous["candidate"]
        with self._lock:
            entry = self._items.get(pid)
        if entry is None:
            raise PredictionExpiredError(
                f"prediction {pid!r} is unknown or expired (the server keeps the last "
                f"{self.capacity}); send the prompt without 'previous'"
            )
        owner, logits = entry
        if owner != image_id:
            raise InvalidInputError(f"prediction {pid!r} belongs to image {owner}, not {image_id}")
        if not 0 <= k < logits.shape[0]:
            raise InvalidInputError(
                f"previous candidate {k} out of range: that prediction has {logits.shape[0]}"
            )
        return logits[k : k + 1]


@dataclass(frozen=True)
class ImageMasks:
    """The masks of one image: accepted and proposed ones of the file's current content, and
    accepted ones of earlier versions of the file (stale: kept apart, never exported)."""

    accepted: list[MaskRow]
    proposals: list[MaskRow]
    stale: list[MaskRow] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "accepted": [m.to_json() for m in self.accepted],
            "proposals": [m.to_json() for m in self.proposals],
            "stale": [m.to_json() for m in self.stale],
        }


@dataclass(frozen=True)
class FolderReport:
    """Files of the image folder that are not served, and images whose file changed after
    masks were drawn on it: (file name, number of masks kept apart)."""

    skipped: tuple[SkippedFile, ...]
    changed: tuple[tuple[str, int], ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "skipped": [f.to_json() for f in self.skipped],
            "changed": [{"file_name": n, "stale_masks": k} for n, k in self.changed],
        }


class MaskGenerator(Protocol):
    """What pre-fill needs of an automatic generator: typed records (``MaskRecord``)."""

    def generate_records(self, image: np.ndarray) -> Sequence[MaskRecord]: ...


MaskGeneratorFactory = Callable[["Sam", PrefillConfig], MaskGenerator]


def default_mask_generator(model: Sam, cfg: PrefillConfig) -> MaskGenerator:
    """The automatic generator with pre-fill's settings (``cfg.amg``)."""
    from anyseg.automatic import SamAutomaticMaskGenerator

    return SamAutomaticMaskGenerator(model, config=cfg.amg)
