"""The automatic generator's filter thresholds a model should recommend for itself.

SAM's 0.88 / 0.95 (predicted IoU / stability) suit SAM's IoU head. A model whose head scores on
another scale gets its own pair, chosen on held-out annotated images and stored in its checkpoint
(:class:`anyseg.config.AmgThresholds`, read by :class:`~anyseg.automatic.SamAutomaticMaskGenerator`
wherever a threshold is left unset):

1. the generator runs once per image with both filters off and no NMS, keeping every candidate
   (3 per grid point) with its predicted IoU, stability score and box;
2. each pair of the grid is applied to those candidates as the generator would apply it (the
   two filters, then box NMS at the config's ``box_nms_thresh``);
3. the kept masks are matched to the ground truth at ``match_iou``: recall is the share of
   ground-truth masks some kept mask matches, precision the share of kept masks that match some
   ground-truth mask; the pair with the best F1 (ties: the stricter pair) is recommended.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from anyseg.automatic import AmgConfig, SamAutomaticMaskGenerator
from anyseg.config import AmgThresholds
from anyseg.errors import InvalidInputError
from anyseg.evaluation import metrics
from anyseg.evaluation.dataset import EvalDataset
from anyseg.modeling import Sam
from anyseg.ops.boxes import box_xywh_to_xyxy, nms
from anyseg.settings import opt


@dataclass(frozen=True)
class ThresholdSearchConfig:
    """The grid searched and how kept masks are scored."""

    iou_grid: tuple[float, ...] = field(
        default=tuple(round(0.3 + 0.05 * i, 2) for i in range(13)),  # 0.30 .. 0.90
        metadata=opt("predicted-IoU thresholds tried"),
    )
    stability_grid: tuple[float, ...] = field(
        default=(0.7, 0.75, 0.8, 0.85, 0.9, 0.95), metadata=opt("stability thresholds tried")
    )
    match_iou: float = field(
        default=0.5, metadata=opt("IoU at which a kept mask matches a ground-truth mask")
    )
    max_images: int = field(default=20, metadata=opt("held-out images searched on"))

    def __post_init__(self) -> None:
        for name in ("iou_grid", "stability_grid"):
            grid = getattr(self, name)
            if not grid or not all(0.0 <= float(v) <= 1.0 for v in grid):
                raise InvalidInputError(f"{name} must be non-empty values in [0, 1], got {grid}")
        if not 0.0 < self.match_iou <= 1.0:
            raise InvalidInputError(f"match_iou must be in (0, 1], got {self.match_iou}")
        if self.max_images < 1:
            raise InvalidInputError(f"max_images must be >= 1, got {self.max_images}")


@dataclass(frozen=True)
class PairScore:
    """One threshold pair's result over the searched images."""

    pred_iou_thresh: float
    stability_score_thresh: float
    kept_per_image: float
    precision: float
    recall: float

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 0.0 if p + r == 0 else 2 * p * r / (p + r)


@dataclass(frozen=True)
class _Candidates:
    pred_iou: np.ndarray  # (N,)
    stability: np.ndarray  # (N,)
    boxes_xyxy: torch.Tensor  # (N, 4)
    matches: np.ndarray  # (N, G) bool: candidate i matches ground truth j at match_iou


def _candidates(
    generator: SamAutomaticMaskGenerator, image: np.ndarray, gt_rles: Sequence[dict], match: float
) -> _Candidates:
    records = generator.generate_records(image)
    ious = metrics.rle_iou_matrix(gt_rles, [r.coco_rle() for r in records])  # (G, N)
    boxes = torch.tensor([r.bbox_xywh for r in records], dtype=torch.float32).reshape(-1, 4)
    return _Candidates(
        pred_iou=np.array([r.predicted_iou for r in records], dtype=np.float64),
        stability=np.array([r.stability_score for r in records], dtype=np.float64),
        boxes_xyxy=box_xywh_to_xyxy(boxes),
        matches=(np.asarray(ious).reshape(len(gt_rles), len(records)) >= match).T,
    )


def _kept(c: _Candidates, t_iou: float, t_stab: float, nms_thresh: float) -> np.ndarray:
    """Indices the generator keeps with this pair: the filters, then box NMS by predicted IoU."""
    passing = np.flatnonzero((c.pred_iou > t_iou) & (c.stability >= t_stab))
    if passing.size == 0:
        return passing
    scores = torch.from_numpy(c.pred_iou[passing]).float()
    order = nms(c.boxes_xyxy[torch.from_numpy(passing)], scores, nms_thresh).numpy()
    return passing[order]


def search_thresholds(
    model: Sam,
    dataset: EvalDataset,
    amg: AmgConfig | None = None,
    config: ThresholdSearchConfig | None = None,
) -> list[PairScore]:
    """Score every pair of ``config``'s grid with the generator's other ``amg`` settings on the
    first ``config.max_images`` images of ``dataset``; best F1 first."""
    cfg = config or ThresholdSearchConfig()
    base = amg or AmgConfig()
    if base.crop_n_layers:
        raise InvalidInputError("the threshold search runs on whole images (crop_n_layers = 0)")
    if not dataset.images:
        raise InvalidInputError(f"{dataset.path}: no images to search thresholds on")
    everything = replace(base, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0)
    generator = SamAutomaticMaskGenerator(model, config=everything)
    per_image: list[_Candidates] = []
    for item in dataset.images[: cfg.max_images]:
        gt = [a.segmentation for a in item.record.annotations]
        if gt:
            per_image.append(_candidates(generator, item.load_image(), gt, cfg.match_iou))
    if not per_image:
        raise InvalidInputError(f"{dataset.path}: no ground-truth masks to search thresholds on")
    scores = []
    for t_iou in cfg.iou_grid:
        for t_stab in cfg.stability_grid:
            kept = matched = recalled = total_gt = 0
            for c in per_image:
                idx = _kept(c, t_iou, t_stab, base.box_nms_thresh)
                m = c.matches[idx]
                kept += idx.size
                matched += int(m.any(axis=1).sum())
                recalled += int(m.any(axis=0).sum())
                total_gt += c.matches.shape[1]
            scores.append(
                PairScore(
                    float(t_iou),
                    float(t_stab),
                    kept / len(per_image),
                    matched / kept if kept else 0.0,
                    recalled / total_gt,
                )
            )
    return sorted(scores, key=lambda s: (-s.f1, -s.pred_iou_thresh, -s.stability_score_thresh))


def recommend_thresholds(scores: Sequence[PairScore], data_name: str) -> AmgThresholds:
    """The record of the best pair of :func:`search_thresholds`, saying how it was chosen."""
    if not scores:
        raise InvalidInputError("no threshold pairs were scored")
    best = scores[0]
    return AmgThresholds(
        best.pred_iou_thresh,
        best.stability_score_thresh,
        f"best F1 of automatic masks vs ground truth on {data_name}: precision "
        f"{best.precision:.3f}, recall {best.recall:.3f}, {best.kept_per_image:.1f} masks/image",
    )


def format_scores(scores: Sequence[PairScore], top: int = 10) -> str:
    """A table of the best ``top`` pairs."""
    lines = ["pred_iou  stability  masks/img  precision  recall    F1"]
    for s in scores[:top]:
        lines.append(
            f"{s.pred_iou_thresh:8.2f}  {s.stability_score_thresh:9.2f}  {s.kept_per_image:9.1f}"
            f"  {s.precision:9.3f}  {s.recall:6.3f}  {s.f1:.3f}"
        )
    return "\n".join(lines)
