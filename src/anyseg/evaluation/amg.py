"""The ``amg`` protocol: how many ground-truth masks automatic mask generation recovers.

A ground-truth mask is recalled at threshold t when some generated mask has IoU >= t with it
(IoU on COCO RLEs via pycocotools). The generator is ``anyseg.automatic``'s
``SamAutomaticMaskGenerator`` with the config's ``amg_*`` settings, or any object with a
``generate(image) -> [{"segmentation": COCO RLE | bool (H, W)}, ...]`` method.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from anyseg.errors import InvalidInputError
from anyseg.evaluation import metrics
from anyseg.evaluation.config import EvalConfig
from anyseg.evaluation.report import AmgSummary, MaskResult
from anyseg.ops.rle import encode_mask


class MaskGenerator(Protocol):
    """What the ``amg`` protocol needs: records with a ``segmentation`` (COCO RLE or bool mask)."""

    def generate(self, image: np.ndarray) -> list[dict[str, Any]]: ...


def build_mask_generator(model: Any, config: EvalConfig) -> MaskGenerator:
    """The automatic generator for the ``amg`` protocol, with the config's ``amg_*`` settings.

    Raises:
        ImportError: ``anyseg.automatic`` is not part of this build.
    """
    from anyseg.automatic import SamAutomaticMaskGenerator  # type: ignore[attr-defined]

    generator: MaskGenerator = SamAutomaticMaskGenerator(
        model,
        points_per_side=config.amg_points_per_side,
        points_per_batch=config.amg_points_per_batch,
        pred_iou_thresh=config.amg_pred_iou_thresh,
        stability_score_thresh=config.amg_stability_score_thresh,
        box_nms_thresh=config.amg_box_nms_thresh,
        crop_n_layers=config.amg_crop_n_layers,
        output_mode="coco_rle",
    )
    return generator


def default_mask_generator(
    predictor: object, config: EvalConfig
) -> tuple[MaskGenerator | None, str | None]:
    """The generator built from ``predictor.model``, or (None, a note saying why not)."""
    model = getattr(predictor, "model", None)
    if model is None:
        return None, "amg skipped: the predictor has no model to build an automatic generator from"
    try:
        return build_mask_generator(model, config), None
    except ImportError:
        return None, "amg skipped: automatic mask generation (anyseg.automatic) is not available"


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
    generated = generator.generate(image)
    pred_rles = []
    for k, rec in enumerate(generated):
        seg = rec.get("segmentation") if isinstance(rec, dict) else None
        if isinstance(seg, dict):
            pred_rles.append(seg)
        elif isinstance(seg, np.ndarray) and seg.ndim == 2:
            pred_rles.append(encode_mask(seg))
        else:
            raise InvalidInputError(
                f"automatic generator record #{k} has no 'segmentation' (COCO RLE or (H, W) mask)"
            )
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
