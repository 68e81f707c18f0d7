"""The annotation service: one model, its lock, the embedding cache and the project store.

The HTTP layer (:mod:`anyseg.server.app`) is a thin shell around :class:`AnnotationService`; the
service is usable directly from Python too (tests, scripts, benchmarks). Coordinates are (x, y)
pixels of the original image, boxes XYXY, masks COCO RLE at the original resolution.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
import torch

from anyseg.errors import InvalidInputError
from anyseg.ops.rle import encode_mask, rle_area, rle_to_bbox_xywh
from anyseg.server.config import PrefillConfig, ServerConfig
from anyseg.server.embeddings import (
    EmbeddingCache,
    EmbeddingSource,
    ImageEmbedding,
    file_fingerprint,
    state_dict_fingerprint,
)
from anyseg.server.images import load_image_rgb, safe_image_path, scan_folder
from anyseg.server.storage import ImageRow, MaskRow, NewMask, NotFoundError, ProjectStore
from anyseg.server.validation import (
    Prompt,
    validate_label,
    validate_prompt,
    validate_segmentation,
)

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


class AnnotationService:
    """Owns the predictor, the model lock, the embedding LRU over the disk cache, and the store.

    Args:
        config: server configuration (image folder, project folder, checkpoint, ...).
        model: a SAM model to use instead of loading ``config.checkpoint`` (tests, notebooks).
        mask_generator: builds the automatic generator used by pre-fill from (model, prefill
            settings); None means :class:`anyseg.automatic.SamAutomaticMaskGenerator`.
    """

    def __init__(
        self,
        config: ServerConfig,
        model: Sam | None = None,
        mask_generator: MaskGeneratorFactory | None = None,
    ) -> None:
        from anyseg.predictor import SamPredictor

        self.config = config
        self.image_dir = Path(config.image_dir).resolve()
        if not self.image_dir.is_dir():
            raise InvalidInputError(f"image folder {config.image_dir} does not exist")
        self.project_dir = config.resolved_project_dir.resolve()
        if model is None:
            from anyseg.checkpoint import load_model

            model = load_model(config.model.checkpoint, device=config.model.device)
            if config.model.checkpoint is not None:
                self.model_name = Path(config.model.checkpoint).name
                fingerprint = file_fingerprint(Path(config.model.checkpoint))
            else:
                self.model_name = "default"
                fingerprint = state_dict_fingerprint(model)
        else:
            from anyseg.checkpoint import resolve_device

            model = model.to(resolve_device(config.model.device)).eval()
            self.model_name = "in-memory"
            fingerprint = state_dict_fingerprint(model)
        self.model = model
        self._mask_generator = mask_generator or default_mask_generator
        self.model_fingerprint = fingerprint
        self.predictor = SamPredictor(model)
        self.model_lock = threading.Lock()
        self._predictor_image: str | None = None  # sha256 of the embedding set in the predictor
        # prediction id -> (image id, low-res logits (K, L, L)) of the latest predictions
        self._recent: OrderedDict[str, tuple[int, np.ndarray]] = OrderedDict()
        self._computing: set[int] = set()
        self._computing_lock = threading.Lock()
        self.embeddings = EmbeddingCache(
            config.embedding_dir, fingerprint, config.embedding_lru_size
        )
        self.store = ProjectStore(config.database_path)
        self.store.set_meta("image_dir", str(self.image_dir))
        self.rescan()

    def close(self) -> None:
        self.store.close()

    # ---- images -----------------------------------------------------------------------------

    def rescan(self) -> int:
        """Register new or changed images of the folder; returns how many are present."""
        return scan_folder(self.store, self.image_dir)

    def list_images(self) -> list[ImageRow]:
        return self.store.list_images()

    def get_image(self, image_id: int) -> ImageRow:
        return self.store.get_image(image_id)

    def image_by_name(self, file_name: str) -> ImageRow:
        safe_image_path(self.image_dir, file_name)  # refuse names that leave the folder
        row = self.store.find_image(file_name)
        if row is None:
            raise NotFoundError(f"no image named {file_name!r} in this project")
        return row

    def image_path(self, image_id: int) -> Path:
        """Path of an image on disk (only ever inside the image folder)."""
        path = safe_image_path(self.image_dir, self.get_image(image_id).file_name)
        if not path.is_file():
            raise NotFoundError(f"image {image_id} is no longer in the image folder")
        return path

    # ---- embeddings -------------------------------------------------------------------------

    def embedding_state(self, image_id: int) -> Literal["memory", "disk", "computing", "missing"]:
        image = self.get_image(image_id)
        where = self.embeddings.where(image.sha256)
        if where is not None:
            return where
        with self._computing_lock:
            return "computing" if image_id in self._computing else "missing"

    def ensure_embedding(self, image_id: int) -> EmbeddingInfo:
        """Load or compute the image's embedding (computed once per image content and model)."""
        t0 = time.perf_counter()
        image = self.get_image(image_id)
        _, source = self._embedding(image)
        return EmbeddingInfo(source=source, seconds=time.perf_counter() - t0)

    def _embedding(self, image: ImageRow) -> tuple[ImageEmbedding, EmbeddingSource]:
        emb, source = self.embeddings.get(image.sha256)
        if emb is not None and source is not None:
            return emb, source
        path = self.image_path(image.id)
        with self._computing_lock:
            self._computing.add(image.id)
        try:
            rgb = load_image_rgb(path)
            with self.model_lock:
                # Another request may have computed it while this one waited for the lock.
                emb, source = self.embeddings.get(image.sha256)
                if emb is not None and source is not None:
                    return emb, source
                with torch.inference_mode():
                    self.predictor.set_image(rgb)
                features = self.predictor.get_image_embedding()
                assert self.predictor.original_size is not None
                assert self.predictor.input_size is not None
                emb = ImageEmbedding(
                    features=features.detach().to("cpu").clone(),
                    original_size=self.predictor.original_size,
                    input_size=self.predictor.input_size,
                )
                self._predictor_image = image.sha256
            self.embeddings.put(image.sha256, emb)
            return emb, "computed"
        finally:
            with self._computing_lock:
                self._computing.discard(image.id)

    # ---- prediction -------------------------------------------------------------------------

    def predict(
        self,
        image_id: int,
        points: Any = None,
        labels: Any = None,
        box: Any = None,
        multimask: bool | None = None,
        previous: Any = None,
    ) -> Prediction:
        """Masks for one prompt (points xy + labels, box XYXY, in original-image pixels).

        ``multimask=None`` asks for three candidates when the prompt is one point (the
        ambiguous case, paper §3) and one mask otherwise. ``previous`` =
        ``{"prediction_id": ..., "candidate": k}`` feeds candidate k's low-res logits of an
        earlier prediction on the same image back as the mask prompt, as SAM does when a click
        is added (paper §3, appendix A). Unknown or expired ids raise NotFoundError.
        """
        image = self.get_image(image_id)
        prompt = validate_prompt(
            points, labels, box, (image.height, image.width), self.config.max_points
        )
        mask_input = None if previous is None else self._previous_logits(image_id, previous)
        if multimask is None:
            multimask = len(prompt.points_xy) == 1 and prompt.box_xyxy is None
        emb, _ = self._embedding(image)
        coords = np.asarray(prompt.points_xy, dtype=np.float64) if prompt.points_xy else None
        labs = np.asarray(prompt.labels, dtype=np.int64) if prompt.points_xy else None
        box_arr = None if prompt.box_xyxy is None else np.asarray(prompt.box_xyxy, np.float64)
        with self.model_lock, _torch_threads(self.config.decode_threads):
            t0 = time.perf_counter()
            if self._predictor_image != image.sha256:
                self.predictor.set_embedding(emb.features, emb.original_size, emb.input_size)
                self._predictor_image = image.sha256
            masks, scores, low_res = self.predictor.predict(
                point_coords=coords,
                point_labels=labs,
                box=box_arr,
                mask_input=mask_input,
                multimask_output=multimask,
            )
            decode_ms = 1000.0 * (time.perf_counter() - t0)
            prediction_id = uuid.uuid4().hex
            self._recent[prediction_id] = (image_id, np.asarray(low_res, dtype=np.float32))
            while len(self._recent) > max(self.config.recent_predictions, 0):
                self._recent.popitem(last=False)
        t1 = time.perf_counter()
        candidates = []
        for mask, score in zip(masks, scores, strict=True):
            rle = encode_mask(mask)
            candidates.append(
                Candidate(
                    rle, float(score), int(mask.sum()), [float(v) for v in rle_to_bbox_xywh(rle)]
                )
            )
        encode_ms = 1000.0 * (time.perf_counter() - t1)
        best = int(np.argmax(scores))
        return Prediction(
            candidates, best, multimask, decode_ms, encode_ms, prediction_id, mask_input is not None
        )

    def _previous_logits(self, image_id: int, previous: Any) -> np.ndarray:
        """The (1, L, L) low-res logits that ``previous`` names (see :meth:`predict`)."""
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
        with self.model_lock:
            entry = self._recent.get(previous["prediction_id"])
        if entry is None:
            raise NotFoundError(
                f"prediction {previous['prediction_id']!r} is unknown or expired (the server "
                f"keeps the last {self.config.recent_predictions}); send the prompt without "
                "'previous'"
            )
        owner, logits = entry
        if owner != image_id:
            raise InvalidInputError(
                f"prediction {previous['prediction_id']!r} belongs to image {owner}, not {image_id}"
            )
        k = previous["candidate"]
        if not 0 <= k < logits.shape[0]:
            raise InvalidInputError(
                f"previous candidate {k} out of range: that prediction has {logits.shape[0]}"
            )
        return logits[k : k + 1]

    # ---- accepted masks ---------------------------------------------------------------------

    def list_masks(self, image_id: int) -> tuple[list[MaskRow], list[MaskRow]]:
        """(accepted, proposals) of one image."""
        self.get_image(image_id)
        masks = self.store.list_masks(image_id)
        return (
            [m for m in masks if m.status == "accepted"],
            [m for m in masks if m.status == "proposal"],
        )

    def _checked_mask(
        self, image: ImageRow, segmentation: Any
    ) -> tuple[dict[str, Any], int, list[float]]:
        seg = validate_segmentation(segmentation, (image.height, image.width))
        area = rle_area(seg)
        if area == 0:
            raise InvalidInputError("the mask is empty: there is nothing to accept")
        return seg, area, [float(v) for v in rle_to_bbox_xywh(seg)]

    def _checked_prompt(self, image: ImageRow, prompts: Any) -> Prompt | None:
        if prompts is None:
            return None
        if not isinstance(prompts, dict):
            raise InvalidInputError(
                'prompts must be {"points": [...], "labels": [...], "box": ...}'
            )
        unknown = set(prompts) - {"points", "labels", "box"}
        if unknown:
            raise InvalidInputError(f"unknown prompt fields {sorted(unknown)}")
        return validate_prompt(
            prompts.get("points"),
            prompts.get("labels"),
            prompts.get("box"),
            (image.height, image.width),
            self.config.max_points,
        )

    def accept_mask(
        self,
        image_id: int,
        segmentation: Any,
        prompts: Any = None,
        label: Any = None,
        predicted_iou: float | None = None,
        author: str | None = None,
    ) -> MaskRow:
        """Store an accepted mask; it is committed to disk when this returns."""
        image = self.get_image(image_id)
        seg, area, bbox = self._checked_mask(image, segmentation)
        prompt = self._checked_prompt(image, prompts)
        new = NewMask(
            segmentation=seg,
            bbox=bbox,
            area=area,
            status="accepted",
            source="manual",
            predicted_iou=None if predicted_iou is None else float(predicted_iou),
            point_coords=(prompt.positive_points() or None) if prompt else None,
            crop_box=[0.0, 0.0, float(image.width), float(image.height)],
            prompts=prompt.to_json() if prompt else None,
            label=validate_label(label),
            author=author if author is not None else self.config.author,
        )
        return self.store.add_masks(image_id, [new])[0]

    def update_mask(self, mask_id: int, fields: dict[str, Any]) -> MaskRow:
        """Re-edit an accepted mask: any of segmentation, prompts, label, predicted_iou."""
        unknown = set(fields) - {"segmentation", "prompts", "label", "predicted_iou", "author"}
        if unknown:
            raise InvalidInputError(f"cannot update mask fields {sorted(unknown)}")
        mask = self.store.get_mask(mask_id)
        image = self.get_image(mask.image_id)
        changes: dict[str, Any] = {}
        if "segmentation" in fields:
            seg, area, bbox = self._checked_mask(image, fields["segmentation"])
            changes.update(segmentation=seg, area=area, bbox=bbox)
        if "prompts" in fields:
            prompt = self._checked_prompt(image, fields["prompts"])
            changes["prompts"] = prompt.to_json() if prompt else None
        if "label" in fields:
            changes["label"] = validate_label(fields["label"])
        if "predicted_iou" in fields:
            iou = fields["predicted_iou"]
            changes["predicted_iou"] = None if iou is None else float(iou)
        changes["author"] = fields.get("author") or self.config.author
        return self.store.update_mask(mask_id, **changes)

    def delete_mask(self, mask_id: int) -> None:
        self.store.delete_mask(mask_id)

    def get_mask(self, mask_id: int) -> MaskRow:
        return self.store.get_mask(mask_id)

    # ---- pre-fill (semi-automatic stage) ----------------------------------------------------

    def prefill(self, image_id: int) -> list[MaskRow]:
        """Run the automatic mask generator and store its confident masks as proposals.

        Proposals that overlap an accepted mask (IoU above ``skip_accepted_iou``) are dropped:
        the person only reviews what is new. Earlier proposals of the image are replaced.
        """
        from pycocotools import mask as mask_utils

        rgb = load_image_rgb(self.image_path(image_id))
        cfg = self.config.prefill
        with self.model_lock:
            generator = self._mask_generator(self.model, cfg)
            with torch.inference_mode():
                records = generator.generate_records(rgb)
        accepted = [m.segmentation for m in self.store.list_masks(image_id, "accepted")]
        proposals: list[NewMask] = []
        for rec in records:
            seg = rec.coco_rle()
            if accepted and cfg.skip_accepted_iou < 1.0:
                ious = mask_utils.iou(
                    [_as_bytes_rle(seg)], [_as_bytes_rle(a) for a in accepted], [0] * len(accepted)
                )
                if float(np.max(ious)) > cfg.skip_accepted_iou:
                    continue
            if rec.area == 0:
                continue
            proposals.append(
                NewMask(
                    segmentation={"size": [int(v) for v in seg["size"]], "counts": seg["counts"]},
                    bbox=[float(v) for v in rec.bbox_xywh],
                    area=rec.area,
                    status="proposal",
                    source="prefill",
                    predicted_iou=float(rec.predicted_iou),
                    stability_score=float(rec.stability_score),
                    point_coords=[[float(v) for v in rec.point_xy]],
                    crop_box=[float(v) for v in rec.crop_box_xywh],
                )
            )
        return self.store.replace_proposals(image_id, proposals)

    def resolve_proposals(self, image_id: int, mask_ids: Any, accept: bool) -> list[int]:
        """Accept or reject proposals (all of them when ``mask_ids`` is None)."""
        if mask_ids is not None and (
            not isinstance(mask_ids, list)
            or not all(isinstance(i, int) and not isinstance(i, bool) for i in mask_ids)
        ):
            raise InvalidInputError("ids must be a list of integer mask ids or null for all")
        return self.store.resolve_proposals(image_id, mask_ids, accept, self.config.author)

    # ---- export -----------------------------------------------------------------------------

    def export_zip(self, fmt: str) -> bytes:
        from anyseg.server.export import EXPORT_FORMATS, export_zip

        if fmt not in EXPORT_FORMATS:
            raise InvalidInputError(f"export format must be one of {EXPORT_FORMATS}, got {fmt!r}")
        return export_zip(self.store, self.image_dir, fmt)  # type: ignore[arg-type]


class MaskGenerator(Protocol):
    """What pre-fill needs of an automatic generator: typed records (``MaskRecord``)."""

    def generate_records(self, image: np.ndarray) -> Sequence[MaskRecord]: ...


MaskGeneratorFactory = Callable[["Sam", PrefillConfig], MaskGenerator]


def default_mask_generator(model: Sam, cfg: PrefillConfig) -> MaskGenerator:
    """The automatic generator with pre-fill's settings (``cfg.amg``)."""
    from anyseg.automatic import SamAutomaticMaskGenerator

    return SamAutomaticMaskGenerator(model, config=cfg.amg)


@contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch CPU threads (unchanged when None); caller holds the lock."""
    before = torch.get_num_threads()
    if n is None or n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _as_bytes_rle(seg: dict[str, Any]) -> dict[str, Any]:
    return {"size": list(seg["size"]), "counts": seg["counts"].encode("ascii")}
