"""The annotation service: one model, its lock, the embedding cache and the project store.

The HTTP layer (:mod:`anyseg.server.app`) is a thin shell around :class:`AnnotationService`; the
service is usable directly from Python too (tests, scripts, benchmarks) and checks everything it
is given itself. Coordinates are (x, y) pixels of the original image, boxes XYXY, masks COCO RLE
at the original resolution. Pixels are always decoded by :func:`anyseg.io.read_image`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import numpy as np
import torch

from anyseg.errors import InvalidInputError
from anyseg.io import read_image
from anyseg.ops.rle import encode_mask, rle_area, rle_to_bbox_xywh
from anyseg.ops.threads import ComputeThread
from anyseg.server.config import PrefillConfig, ServerConfig
from anyseg.server.embeddings import (
    EmbeddingCache,
    EmbeddingSource,
    ImageEmbedding,
    file_fingerprint,
    state_dict_fingerprint,
)
from anyseg.server.errors import ImageChangedError, NotFoundError
from anyseg.server.export import remove_stale_export_dirs
from anyseg.server.images import ScanResult, image_file, safe_image_path, scan_folder
from anyseg.server.records import ImageRow, MaskRow, NewMask
from anyseg.server.results import (
    Candidate,
    EmbeddingInfo,
    FolderReport,
    ImageMasks,
    MaskGeneratorFactory,
    Prediction,
    RecentPredictions,
    default_mask_generator,
)
from anyseg.server.schemas import IDEMPOTENCY_KEY_PATTERN
from anyseg.server.storage import ProjectStore
from anyseg.server.validation import (
    Prompt,
    validate_author,
    validate_label,
    validate_points,
    validate_prompt,
    validate_score,
    validate_segmentation,
)

if TYPE_CHECKING:
    from anyseg.automatic import MaskRecord
    from anyseg.modeling import Sam

T = TypeVar("T")

#: Longest phrase of a text prompt.
MAX_TEXT_CHARS = 200
_MASK_FIELDS = {"segmentation", "prompts", "label", "predicted_iou", "author", "image_sha256"}


class AnnotationService:
    """Owns the predictor, the model lock, the embedding LRU over the disk cache, and the store.

    Args:
        config: server configuration (image folder, project folder, checkpoint, ...).
        model: a SAM model to use instead of loading ``config.model.checkpoint`` (tests,
            notebooks).
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
        # Zip exports of servers killed mid-export leave temporary folders behind.
        remove_stale_export_dirs()
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
        self.predictor = SamPredictor(model, mode=config.model.mode, clip=config.model.clip)
        fast = self.predictor.fast_path
        if fast is not None and fast.kind != "float32":  # its embeddings are not exact ones
            fingerprint = f"{fingerprint}-{fast.kind}"
        self.model_fingerprint = fingerprint
        self.model_lock = threading.RLock()
        # The model's work runs on one long-lived thread that owns its torch thread count, so a
        # decode may split itself over the cores (anyseg.ops.lanes) as it does on the main
        # thread; request threads only wait for it.
        self._compute = ComputeThread("anyseg-model")
        self._predictor_image: str | None = None  # sha256 of the embedding set in the predictor
        self._recent = RecentPredictions(config.recent_predictions)
        self._computing: set[int] = set()
        self._computing_lock = threading.Lock()
        self.embeddings = EmbeddingCache(
            config.embedding_dir, fingerprint, config.embedding_lru_size
        )
        self.store = ProjectStore(config.database_path)
        self.store.set_meta("image_dir", str(self.image_dir))
        self.last_scan = ScanResult(0, ())
        self.rescan()

    def close(self) -> None:
        # A job still running (a pre-fill when the server is stopped twice) is not waited for:
        # the model's work writes nothing, and its thread ends with the process.
        self._compute.shutdown(wait=False)
        self.store.close()

    # ---- images -----------------------------------------------------------------------------

    def rescan(self) -> ScanResult:
        """Register new or changed images of the folder; report the files skipped."""
        self.last_scan = scan_folder(self.store, self.image_dir, self.config.follow_symlinks)
        return self.last_scan

    def folder_report(self) -> FolderReport:
        """Files skipped by the last scan, and images with masks of an earlier file version."""
        changed = tuple((i.file_name, i.num_stale) for i in self.list_images() if i.num_stale)
        return FolderReport(self.last_scan.skipped, changed)

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
        """Path of an image on disk: inside the image folder, unchanged since the last scan
        (else the folder is scanned again and :class:`ImageChangedError` raised)."""
        image = self.get_image(image_id)
        try:
            return image_file(self.image_dir, image, self.config.follow_symlinks)
        except ImageChangedError:
            self.rescan()
            raise

    def _read_pixels(self, image: ImageRow) -> np.ndarray:
        """The image's pixels (:func:`read_image`), checked to be those of the scanned file."""
        rgb = read_image(self.image_path(image.id))
        self.image_path(image.id)  # the file did not change while it was decoded
        return rgb

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
        with self._computing_lock:
            self._computing.add(image.id)
        try:
            rgb = self._read_pixels(image)
            with self.model_lock:  # held across the check and the computation
                # Another request may have computed it while this one waited for the lock.
                emb, source = self.embeddings.get(image.sha256)
                if emb is not None and source is not None:
                    return emb, source
                emb = self._run_model(self._encode, rgb, image.sha256)
            self.embeddings.put(image.sha256, emb)
            return emb, "computed"
        finally:
            with self._computing_lock:
                self._computing.discard(image.id)

    def _run_model(self, fn: Callable[..., T], /, *args: Any) -> T:
        """``fn(*args)`` on the compute thread, under the model lock (re-entrant: a caller that
        holds it already, as ``_embedding`` does, keeps it)."""
        with self.model_lock:
            return self._compute.submit(fn, *args).result()

    def _encode(self, rgb: np.ndarray, sha256: str) -> ImageEmbedding:
        """Compute the image's embedding (on the compute thread, under the model lock)."""
        with torch.inference_mode():
            self.predictor.set_image(rgb)
        features = self.predictor.get_image_embedding()
        assert self.predictor.original_size is not None
        assert self.predictor.input_size is not None
        hq = self.predictor.hq_features
        self._predictor_image = sha256
        return ImageEmbedding(
            features=features.detach().to("cpu").clone(),
            original_size=self.predictor.original_size,
            input_size=self.predictor.input_size,
            hq_features=None if hq is None else hq.detach().to("cpu").clone(),
        )

    # ---- prediction -------------------------------------------------------------------------

    def predict(
        self,
        image_id: int,
        points: Any = None,
        labels: Any = None,
        box: Any = None,
        multimask: bool | None = None,
        previous: Any = None,
        text: Any = None,
    ) -> Prediction:
        """Masks for one prompt (points xy + labels, box XYXY, in original-image pixels, and a
        phrase for models with a text path).

        ``multimask=None`` asks for three candidates when the prompt is one point or a phrase
        alone (the ambiguous cases, paper §3) and one mask otherwise. ``previous`` =
        ``{"prediction_id": ..., "candidate": k}`` feeds candidate k's low-res logits of an
        earlier prediction on the same image back as the mask prompt, as SAM does when a click
        is added (paper §3, appendix A); see :class:`RecentPredictions`.
        """
        image = self.get_image(image_id)
        phrase = self._checked_text(text)
        prompt = self._checked_points_and_box(image, points, labels, box, phrase)
        if multimask is not None and not isinstance(multimask, bool):
            raise InvalidInputError("multimask must be true, false or null")
        mask_input = None if previous is None else self._recent.logits(image_id, previous)
        if multimask is None:
            n = len(prompt.points_xy) + (phrase is not None)
            multimask = n == 1 and prompt.box_xyxy is None
        emb, _ = self._embedding(image)
        masks, scores, low_res, decode_ms = self._run_model(
            self._decode, image.sha256, emb, prompt.arrays(), mask_input, multimask, phrase
        )
        prediction_id = self._recent.add(image_id, low_res)
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

    def _decode(
        self,
        sha256: str,
        emb: ImageEmbedding,
        prompt: tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None],
        mask_input: np.ndarray | None,
        multimask: bool,
        phrase: str | None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """(masks, scores, low-res logits, milliseconds) of one prompt (on the compute thread,
        under the model lock); ``prompt`` is (point coords, labels, box)."""
        coords, labels, box = prompt
        with _torch_threads(self.config.decode_threads):
            t0 = time.perf_counter()
            if self._predictor_image != sha256:
                self.predictor.set_embedding(
                    emb.features, emb.original_size, emb.input_size, emb.hq_features
                )
                self._predictor_image = sha256
            masks, scores, low_res = self.predictor.predict(
                point_coords=coords,
                point_labels=labels,
                box=box,
                mask_input=mask_input,
                multimask_output=multimask,
                text=phrase,
            )
            return masks, scores, low_res, 1000.0 * (time.perf_counter() - t0)

    # ---- accepted masks ---------------------------------------------------------------------

    def list_masks(self, image_id: int) -> ImageMasks:
        """The image's accepted masks and proposals, and the stale masks of earlier versions."""
        self.get_image(image_id)
        current = self.store.list_masks(image_id)
        return ImageMasks(
            accepted=[m for m in current if m.status == "accepted"],
            proposals=[m for m in current if m.status == "proposal"],
            stale=self.store.list_masks(image_id, "accepted", stale=True),
        )

    def _checked_mask(
        self, image: ImageRow, segmentation: Any
    ) -> tuple[dict[str, Any], int, list[float]]:
        seg = validate_segmentation(segmentation, (image.height, image.width))
        area = rle_area(seg)
        if area == 0:
            raise InvalidInputError("the mask is empty: there is nothing to accept")
        return seg, area, [float(v) for v in rle_to_bbox_xywh(seg)]

    def _checked_text(self, text: Any) -> str | None:
        """A phrase of a text prompt: a non-empty string, for a model with a text path."""
        if text is None:
            return None
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT_CHARS:
            raise InvalidInputError(
                f"text must be a non-empty phrase of at most {MAX_TEXT_CHARS} characters"
            )
        if not self.model.has_text:
            from anyseg.clip.prompting import NO_TEXT_PATH

            raise InvalidInputError(NO_TEXT_PATH)
        return text.strip()

    def _checked_points_and_box(
        self, image: ImageRow, points: Any, labels: Any, box: Any, text: str | None
    ) -> Prompt:
        """The points and box of a prompt; with a phrase they may both be absent."""
        size_hw = (image.height, image.width)
        if text is not None and not points and box is None:
            validate_points(points, labels, size_hw)  # e.g. labels without points
            return Prompt((), (), None)
        return validate_prompt(points, labels, box, size_hw, max_points=self.config.max_points)

    def _checked_prompt(self, image: ImageRow, prompts: Any) -> dict[str, Any] | None:
        """The stored form of an accepted mask's prompts (points, labels, box, text)."""
        if prompts is None:
            return None
        if not isinstance(prompts, dict):
            raise InvalidInputError(
                'prompts must be {"points": [...], "labels": [...], "box": ..., "text": ...}'
            )
        unknown = set(prompts) - {"points", "labels", "box", "text"}
        if unknown:
            raise InvalidInputError(f"unknown prompt fields {sorted(unknown)}")
        text = prompts.get("text")
        if text is not None and (not isinstance(text, str) or len(text) > MAX_TEXT_CHARS):
            raise InvalidInputError(f"prompts.text must be a phrase of <= {MAX_TEXT_CHARS} chars")
        prompt = self._checked_points_and_box(
            image, prompts.get("points"), prompts.get("labels"), prompts.get("box"), text or None
        )
        return prompt.to_json() | ({"text": text} if text else {})

    def accept_mask(
        self,
        image_id: int,
        segmentation: Any,
        prompts: Any = None,
        label: Any = None,
        predicted_iou: Any = None,
        author: Any = None,
        *,
        image_sha256: str | None = None,
        idempotency_key: str | None = None,
    ) -> MaskRow:
        """Store an accepted mask; it is committed to disk when this returns.

        Args:
            image_id, segmentation, prompts, label, predicted_iou: the mask (COCO RLE of the
                image's size) and what made it.
            author: who made it (default: the server's author).
            image_sha256: the image content the client drew on; refused
                (:class:`ImageChangedError`) when the file has another content now.
            idempotency_key: the client's key for this accept: a retry with the same key and
                request returns the mask stored the first time instead of adding another.
        """
        image = self.get_image(image_id)
        seg, area, bbox = self._checked_mask(image, segmentation)
        stored = self._checked_prompt(image, prompts)
        positive = [list(p) for p, lab in zip(*_points_of(stored), strict=True) if lab == 1]
        new = NewMask(
            segmentation=seg,
            bbox=bbox,
            area=area,
            status="accepted",
            source="manual",
            predicted_iou=validate_score(predicted_iou),
            point_coords=positive or None,
            crop_box=[0.0, 0.0, float(image.width), float(image.height)],
            prompts=stored,
            label=validate_label(label),
            author=validate_author(author) or self.config.author,
        )
        idempotency = None
        if idempotency_key is not None:
            if not re.fullmatch(IDEMPOTENCY_KEY_PATTERN, idempotency_key):
                raise InvalidInputError(
                    "Idempotency-Key must be 8 to 128 letters, digits or _ . : -"
                )
            request = {"image_id": image_id, "mask": new.__dict__, "image_sha256": image_sha256}
            fingerprint = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()
            idempotency = (idempotency_key, fingerprint)
        (row,) = self.store.add_masks(
            image_id, [new], expect_sha256=image_sha256, idempotency=idempotency
        )
        return row

    def update_mask(self, mask_id: int, fields: dict[str, Any]) -> MaskRow:
        """Re-edit an accepted mask: any of segmentation, prompts, label, predicted_iou.

        ``author`` names the editor (default: the server's author); the creator is kept.
        ``image_sha256`` is checked as in :meth:`accept_mask`. A mask of an earlier version of
        its image's file cannot be edited (:class:`ImageChangedError`); it can be deleted.
        """
        unknown = set(fields) - _MASK_FIELDS
        if unknown:
            raise InvalidInputError(f"cannot update mask fields {sorted(unknown)}")
        mask = self.store.get_mask(mask_id)
        image = self.get_image(mask.image_id)
        if mask.image_sha256 != image.sha256 or fields.get("image_sha256") not in (
            None,
            image.sha256,
        ):
            raise ImageChangedError(
                f"mask {mask_id} was drawn on an earlier version of {image.file_name}: it is "
                "kept apart and cannot be edited (delete it, or draw it again)"
            )
        changes: dict[str, Any] = {}
        if "segmentation" in fields:
            if fields["segmentation"] is None:
                raise InvalidInputError("a mask needs its segmentation: delete the mask instead")
            seg, area, bbox = self._checked_mask(image, fields["segmentation"])
            changes.update(segmentation=seg, area=area, bbox=bbox)
        if "prompts" in fields:
            changes["prompts"] = self._checked_prompt(image, fields["prompts"])
        if "label" in fields:
            changes["label"] = validate_label(fields["label"])
        if "predicted_iou" in fields:
            changes["predicted_iou"] = validate_score(fields["predicted_iou"])
        changes["edited_by"] = validate_author(fields.get("author")) or self.config.author
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

        image = self.get_image(image_id)
        rgb = self._read_pixels(image)
        cfg = self.config.prefill
        records = self._run_model(self._generate, rgb, cfg)
        accepted = [m.segmentation for m in self.store.list_masks(image_id, "accepted")]
        proposals: list[NewMask] = []
        for rec in records:
            seg = rec.coco_rle()
            scores = (float(rec.predicted_iou), float(rec.stability_score))
            if rec.area == 0 or not all(math.isfinite(v) for v in scores):
                continue  # nothing to review, or a broken model's NaN
            if accepted and cfg.skip_accepted_iou < 1.0:
                ious = mask_utils.iou(
                    [_as_bytes_rle(seg)], [_as_bytes_rle(a) for a in accepted], [0] * len(accepted)
                )
                if float(np.max(ious)) > cfg.skip_accepted_iou:
                    continue
            proposals.append(
                NewMask(
                    segmentation={"size": [int(v) for v in seg["size"]], "counts": seg["counts"]},
                    bbox=[float(v) for v in rec.bbox_xywh],
                    area=rec.area,
                    status="proposal",
                    source="prefill",
                    predicted_iou=scores[0],
                    stability_score=scores[1],
                    point_coords=[[float(v) for v in rec.point_xy]],
                    crop_box=[float(v) for v in rec.crop_box_xywh],
                )
            )
        return self.store.replace_proposals(image_id, proposals)

    def _generate(self, rgb: np.ndarray, cfg: PrefillConfig) -> Sequence[MaskRecord]:
        """The automatic generator's records for the image (on the compute thread, under the
        model lock)."""
        generator = self._mask_generator(self.model, cfg)
        with torch.inference_mode():
            return generator.generate_records(rgb)

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
        return export_zip(
            self.store,
            self.image_dir,
            fmt,  # type: ignore[arg-type]
            follow_symlinks=self.config.follow_symlinks,
        )


def _points_of(stored: dict[str, Any] | None) -> tuple[list[Any], list[int]]:
    """(points, labels) of stored prompts (empty without prompts)."""
    if stored is None:
        return [], []
    return list(stored["points"]), list(stored["labels"])


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
