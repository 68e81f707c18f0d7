"""The ``amg`` protocol: how many ground-truth masks automatic mask generation recovers.

A ground-truth mask is recalled at threshold t when some generated mask has IoU >= t with it
(IoU on COCO RLEs via pycocotools). The generator is ``anyseg.automatic``'s
``SamAutomaticMaskGenerator`` with the config's ``amg`` settings, or any object whose
``generate_records(image)`` returns records with a ``coco_rle()`` (as
:class:`anyseg.automatic.MaskRecord` has).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from anyseg.automatic import MaskRecord, SamAutomaticMaskGenerator
from anyseg.evaluation import metrics
from anyseg.evaluation.config import EvalConfig
from anyseg.evaluation.report import AmgSummary, MaskResult


class MaskGenerator(Protocol):
    """What the ``amg`` protocol needs of an automatic generator: typed records."""

    def generate_records(self, image: np.ndarray) -> Sequence[MaskRecord]: ...


def build_mask_generator(model: Any, config: EvalConfig) -> SamAutomaticMaskGenerator:
    """The automatic generator for the ``amg`` protocol, with the config's ``amg`` settings."""
    return SamAutomaticMaskGenerator(model, config=config.amg)


def default_mask_generator(
    predictor: object, config: EvalConfig
) -> tuple[MaskGenerator | None, str | None]:
    """The generator built from ``predictor.model``, or (None, a note saying why not)."""
    model = getattr(predictor, "model", None)
    if model is None:
        return None, "amg skipped: the predictor has no model to build an automatic generator from"
    return build_mask_generator(model, config), None


def best_generated_ious(
    generator: MaskGenerator, image: np.ndarray, gt_rles: Sequence[dict[str, Any]]
) -> tuple[np.ndarray, int]:
    """Run the generator on one image and match its masks to the ground truth.

    Args:
        generator: the automatic generator.
        image: RGB uint8 (H, W, 3).
        gt_rles: COCO RLEs of the ground-truth masks of the image, each (H, W).

    Returns:
        (best IoU of a generated mask for each ground-truth mask (N,), number generated).
    """
    pred_rles = [record.coco_rle() for record in generator.generate_records(image)]
    ious = metrics.rle_iou_matrix(gt_rles, pred_rles)
    return metrics.best_match_iou(ious), len(pred_rles)


def summarize_amg(
    results: Sequence[MaskResult], config: EvalConfig, generated: int
) -> AmgSummary | None:
    """Recall at the config's thresholds over the masks with an ``amg_best_iou``; None if none."""
    best = [r.amg_best_iou for r in results if r.amg_best_iou is not None]
    if not best:
        return None
    recall = metrics.recall_at(np.asarray(best), config.recall_thresholds)
    return AmgSummary(
        recall={f"{t:g}": v for t, v in recall.items()},
        mean_best_iou=metrics.mean_or_nan(best),
        num_gt=len(best),
        num_generated=generated,
    )
