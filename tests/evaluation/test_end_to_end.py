"""The runner end to end with the tiny "test" preset model, and COCO input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from anyseg.automatic import AmgConfig, SamAutomaticMaskGenerator
from anyseg.data.coco import write_coco
from anyseg.errors import InvalidInputError
from anyseg.evaluation import EvalConfig, EvalReport, evaluate, open_coco, open_sa1b, write_outputs
from anyseg.modeling import Sam
from anyseg.predictor import SamPredictor


def test_test_model_end_to_end_is_deterministic(
    tiny_dataset: Any, test_model: Sam, tmp_path: Path
) -> None:
    dataset = open_sa1b(tiny_dataset.root)
    config = EvalConfig(num_samples=2, max_masks_per_image=1)
    first = evaluate(SamPredictor(test_model), dataset, config, progress=False)
    second = evaluate(SamPredictor(test_model), dataset, config, progress=False)
    report = first.report
    # Same model, data and config: the same numbers, per mask and overall.
    assert report.metrics() == second.report.metrics()
    assert first.masks == second.masks

    assert report.dataset.num_images == 2 and report.dataset.num_masks == 2
    assert set(report.scores) == {"point", "point_oracle", "point_single", "box", "interactive"}
    for summary in report.scores.values():
        assert summary.count == 2 and sum(summary.histogram) == 2
        assert 0.0 <= summary.miou <= 1.0
    assert report.scores["point_oracle"].miou >= report.scores["point"].miou
    curve = report.interactive_curve
    assert curve is not None and len(curve) == 9
    assert all(0.0 <= v <= 1.0 for v in curve)
    assert curve[0] == pytest.approx(report.scores["point"].miou, abs=1e-12)
    assert report.model.image_size == 256
    assert report.model.num_parameters == sum(p.numel() for p in test_model.parameters())
    assert report.model.config is not None
    assert report.timing.num_predict_calls > 0 and report.timing.total_s > 0

    written = write_outputs(first, tmp_path / "out")
    data = json.loads(written["report.json"].read_text())
    assert EvalReport.from_dict(data).metrics() == report.metrics()
    assert len(data["interactive_curve"]) == 9
    for key in ("checkpoint", "model", "dataset", "config", "scores", "timing", "environment"):
        assert key in data


def test_coco_input_skips_crowd_annotations(
    tiny_dataset: Any, fake_predictor: Any, tmp_path: Path
) -> None:
    records = [item.record for item in open_sa1b(tiny_dataset.root).images]
    ann_path = tmp_path / "instances.json"
    write_coco(ann_path, records)
    data = json.loads(ann_path.read_text())
    data["annotations"][0]["iscrowd"] = 1  # image 1's first rectangle becomes a crowd region
    ann_path.write_text(json.dumps(data))

    dataset = open_coco(ann_path, tiny_dataset.root / "images")
    assert dataset.format == "coco" and dataset.num_crowd_skipped == 1
    assert [len(i.record.annotations) for i in dataset.images] == [2, 2]
    result = evaluate(fake_predictor(tiny_dataset), dataset, EvalConfig(), progress=False)
    assert result.report.dataset.num_masks == 4 and result.report.dataset.num_crowd_skipped == 1
    assert result.report.scores["box"].miou == 1.0

    with pytest.raises(InvalidInputError, match="not found"):
        open_coco(ann_path, tmp_path)
    with pytest.raises(InvalidInputError, match="does not exist"):
        open_coco(tmp_path / "missing.json", tiny_dataset.root / "images")


def test_image_size_mismatch_is_reported(tiny_dataset: Any, fake_predictor: Any) -> None:
    from anyseg.io import write_image

    write_image(tiny_dataset.root / "images" / "img0.png", np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(InvalidInputError, match="annotations say 64x48"):
        evaluate(
            fake_predictor(tiny_dataset), open_sa1b(tiny_dataset.root), EvalConfig(), progress=False
        )


def test_amg_protocol_with_the_automatic_generator(tiny_dataset: Any, test_model: Sam) -> None:
    config = EvalConfig(
        protocols=("amg",),
        max_images=1,
        amg=AmgConfig(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0),
    )
    result = evaluate(
        SamPredictor(test_model), open_sa1b(tiny_dataset.root), config, progress=False
    )
    amg = result.report.amg
    assert amg is not None and not result.report.notes
    # The same numbers, computed here from the generator's own output on the same image.
    image = open_sa1b(tiny_dataset.root).images[0]
    records = SamAutomaticMaskGenerator(test_model, config=config.amg).generate_records(
        image.load_image()
    )
    gt = [a.decode() for a in image.record.annotations]
    best = np.array(
        [max((_iou(m, r.mask()) for r in records), default=0.0) for m in gt], dtype=np.float64
    )
    assert amg.num_gt == len(gt) == 3 and amg.num_generated == len(records) > 0
    assert amg.recall == {"0.5": float((best >= 0.5).mean()), "0.75": float((best >= 0.75).mean())}
    assert amg.mean_best_iou == pytest.approx(best.mean(), abs=1e-9)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0
