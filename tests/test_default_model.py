"""The bundled default model: it loads, and it really segments fresh synthetic scenes.

Thresholds sit well above what an untrained model of the same architecture reaches (measured in
the test itself) and below what the shipped model reaches here, so the test fails if the shipped
weights are missing, corrupt, replaced by random ones, or wired to the wrong frame.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anyseg.checkpoint import DEFAULT_WEIGHTS, default_model_available, load_default
from anyseg.data.synthetic import SynthConfig, generate_scene, image_seed
from anyseg.modeling import build_sam
from anyseg.predictor import SamPredictor

SEED = 20261124  # never used for training data (training used seed 1, held-out 987654)


def _box_and_point_miou(model, scenes) -> tuple[float, float, np.ndarray]:
    """(box mIoU, 1-point oracle mIoU, (N, 2) predicted and actual IoU of those predictions)."""
    predictor = SamPredictor(model)
    box_ious, point_ious = [], []
    pairs: list[tuple[float, float]] = []
    for scene in scenes:
        predictor.set_image(scene.image)
        for mask in scene.masks:
            if mask.sum() < 200:  # the model card reports small masks separately
                continue
            ys, xs = np.nonzero(mask)
            box = np.array([xs.min(), ys.min(), xs.max(), ys.max()])
            pred, score, _ = predictor.predict(box=box, multimask_output=False)
            box_ious.append(_iou(pred[0], mask))
            pairs.append((float(score[0]), box_ious[-1]))
            # one click at a foreground pixel near the mask's median
            i = np.argmin((xs - np.median(xs)) ** 2 + (ys - np.median(ys)) ** 2)
            preds, scores, _ = predictor.predict(np.array([[xs[i], ys[i]]]), np.array([1]))
            ious = [_iou(p, mask) for p in preds]
            point_ious.append(max(ious))
            pairs += [(float(sc), iou) for sc, iou in zip(scores, ious, strict=True)]
    return float(np.mean(box_ious)), float(np.mean(point_ious)), np.array(pairs)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def test_default_model_is_bundled() -> None:
    assert default_model_available(), f"missing {DEFAULT_WEIGHTS}"
    assert DEFAULT_WEIGHTS.stat().st_size < 25 * 2**20


@pytest.mark.slow
def test_default_model_segments_fresh_scenes() -> None:
    scenes = [
        generate_scene(image_seed(SEED, i), SynthConfig(height=256, width=256)) for i in range(3)
    ]
    model = load_default()
    box_miou, oracle_miou, iou_pairs = _box_and_point_miou(model, scenes)
    torch.manual_seed(0)
    untrained = build_sam(model.config)
    box_untrained, oracle_untrained, untrained_pairs = _box_and_point_miou(untrained, scenes)
    # Shipped model on these scenes: box 0.62, 1-point oracle 0.63; untrained: 0.02 and 0.03.
    assert box_miou > 0.5 and box_miou > box_untrained + 0.4, (box_miou, box_untrained)
    assert oracle_miou > 0.5, (oracle_miou, oracle_untrained)
    assert oracle_miou > oracle_untrained + 0.4, (oracle_miou, oracle_untrained)
    # The IoU head ranks its masks by their real IoU (what the automatic generator's filter
    # relies on) far better than an untrained head, whose mean error is small only because it
    # predicts about 0 for masks of IoU about 0. Shipped: mean error 0.162, r 0.60 (stage 3's
    # weights before the IoU-head recalibration: 0.181, so the bound also catches losing it).
    error = float(np.abs(iou_pairs[:, 0] - iou_pairs[:, 1]).mean())
    r = float(np.corrcoef(iou_pairs.T)[0, 1])
    r_untrained = float(np.corrcoef(untrained_pairs.T)[0, 1])
    assert r > 0.4 and r > r_untrained + 0.3, (r, r_untrained)
    assert error < 0.175, error


@pytest.mark.slow
def test_default_settings_keep_masks_on_the_example_scene() -> None:
    """Out of the box, the fully automatic and the semi-automatic (pre-fill) stages propose
    masks on the bundled scene, at their default settings (the thresholds the bundled model
    recommends in its checkpoint), and those masks find the scene's objects."""
    import json
    from pathlib import Path

    from anyseg.automatic import AmgConfig, SamAutomaticMaskGenerator
    from anyseg.evaluation.metrics import best_match_iou, rle_iou_matrix
    from anyseg.io import read_image
    from anyseg.server.config import PrefillConfig

    repo = Path(__file__).resolve().parents[1]
    image = read_image(repo / "examples" / "scene.png")
    model = load_default()
    assert model.amg_thresholds is not None  # recorded by scripts/recommend_amg_thresholds.py
    generator = SamAutomaticMaskGenerator(model, config=AmgConfig())
    assert generator.config.pred_iou_thresh == model.amg_thresholds.pred_iou_thresh
    auto = generator.generate_records(image)
    assert 5 <= len(auto) <= 300, len(auto)  # shipped: 78
    gt = json.loads((repo / "examples" / "scene.json").read_text())["annotations"]
    ious = rle_iou_matrix([a["segmentation"] for a in gt], [r.coco_rle() for r in auto])
    recall = float((best_match_iou(ious) >= 0.5).mean())
    assert recall > 0.15, recall  # shipped: 0.24 of the scene's 50 masks
    prefill = SamAutomaticMaskGenerator(model, config=PrefillConfig().amg).generate_records(image)
    assert len(prefill) >= 1
