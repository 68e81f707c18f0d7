"""Recommended AMG thresholds: the search replays the generator exactly, picks the best F1, and
the pair travels in the checkpoint to every generator built from it (explicit values win)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from anyseg.automatic import AmgConfig, SamAutomaticMaskGenerator
from anyseg.automatic.config import PAPER_THRESHOLDS
from anyseg.checkpoint import AMG_THRESHOLDS_METADATA_KEY, load, save
from anyseg.config import AmgThresholds
from anyseg.errors import CheckpointError, InvalidInputError
from anyseg.evaluation import metrics
from anyseg.evaluation.dataset import open_sa1b
from anyseg.evaluation.thresholds import (
    PairScore,
    ThresholdSearchConfig,
    recommend_thresholds,
    search_thresholds,
)

AMG = AmgConfig(points_per_side=6)


def test_each_pair_scores_what_the_generator_keeps_with_it(test_model, tiny_dataset) -> None:
    dataset = open_sa1b(tiny_dataset.root)
    grid = ThresholdSearchConfig(iou_grid=(0.0, 0.3, 0.6), stability_grid=(0.0, 0.6, 0.9))
    scores = search_thresholds(test_model, dataset, AMG, grid)
    assert len(scores) == 9
    assert [s.f1 for s in scores] == sorted((s.f1 for s in scores), reverse=True)
    for s in scores:
        pair = replace(
            AMG, pred_iou_thresh=s.pred_iou_thresh, stability_score_thresh=s.stability_score_thresh
        )
        generator = SamAutomaticMaskGenerator(test_model, config=pair)
        kept = matched = recalled = total = 0
        for item in dataset.images:
            records = generator.generate_records(item.load_image())
            gt = [a.segmentation for a in item.record.annotations]
            hit = metrics.rle_iou_matrix(gt, [r.coco_rle() for r in records]) >= 0.5
            kept += len(records)
            matched += int(hit.any(axis=0).sum())
            recalled += int(hit.any(axis=1).sum())
            total += len(gt)
        assert s.kept_per_image == pytest.approx(kept / len(dataset.images))
        assert s.precision == pytest.approx(matched / kept if kept else 0.0)
        assert s.recall == pytest.approx(recalled / total)


def test_the_recommendation_is_the_best_f1_and_the_stricter_of_ties() -> None:
    scores = sorted(
        [
            PairScore(0.5, 0.8, 3.0, 0.5, 0.5),
            PairScore(0.7, 0.9, 2.0, 0.9, 0.6),
            PairScore(0.6, 0.9, 2.5, 0.6, 0.9),  # same F1 as the one above, laxer
        ],
        key=lambda s: (-s.f1, -s.pred_iou_thresh, -s.stability_score_thresh),
    )
    record = recommend_thresholds(scores, "held-out")
    assert (record.pred_iou_thresh, record.stability_score_thresh) == (0.7, 0.9)
    assert "precision 0.900" in record.source and "held-out" in record.source
    with pytest.raises(InvalidInputError):
        recommend_thresholds([], "x")


def test_recommended_thresholds_travel_in_the_checkpoint(test_model, tmp_path: Path) -> None:
    assert SamAutomaticMaskGenerator(test_model).config.pred_iou_thresh == 0.88  # none: paper's
    test_model.amg_thresholds = AmgThresholds(0.42, 0.61, "test")
    path = save(test_model, tmp_path / "m.safetensors", half=True)
    test_model.amg_thresholds = None
    model = load(path, device="cpu")
    assert model.amg_thresholds == AmgThresholds(0.42, 0.61, "test")
    cfg = SamAutomaticMaskGenerator(model).config
    assert (cfg.pred_iou_thresh, cfg.stability_score_thresh) == (0.42, 0.61)
    explicit = SamAutomaticMaskGenerator(model, pred_iou_thresh=0.9).config
    assert (explicit.pred_iou_thresh, explicit.stability_score_thresh) == (0.9, 0.61)
    # The generator keeps exactly what the explicit pair keeps.
    image = np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8)
    by_default = SamAutomaticMaskGenerator(model, points_per_side=4).generate_records(image)
    spelled = SamAutomaticMaskGenerator(
        model, points_per_side=4, pred_iou_thresh=0.42, stability_score_thresh=0.61
    ).generate_records(image)
    assert [r.rle for r in by_default] == [r.rle for r in spelled]
    assert PAPER_THRESHOLDS.pred_iou_thresh == 0.88


def test_a_bad_thresholds_record_is_a_checkpoint_error(test_model, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    path = save(test_model, tmp_path / "m.safetensors")
    config_meta = json.dumps(test_model.config.to_dict())
    for bad in ('{"pred_iou_thresh": 1.5, "stability_score_thresh": 0.9}', "{not json"):
        save_file(
            load_file(path),
            tmp_path / "bad.safetensors",
            metadata={"anyseg_config": config_meta, AMG_THRESHOLDS_METADATA_KEY: bad},
        )
        with pytest.raises(CheckpointError, match=AMG_THRESHOLDS_METADATA_KEY):
            load(tmp_path / "bad.safetensors", device="cpu")
