"""The runner's plumbing with fake predictors whose right answers are known."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from anyseg.automatic import MaskRecord
from anyseg.errors import InvalidInputError
from anyseg.evaluation import (
    EvalConfig,
    evaluate,
    open_sa1b,
    read_report,
    select_masks,
    write_outputs,
)


def _degraded_iou(w: int) -> float:
    return (w - w // 2) / w


def test_oracle_predictor_scores_one_everywhere(tiny_dataset: Any, fake_predictor: Any) -> None:
    fake = fake_predictor(tiny_dataset)
    result = evaluate(fake, open_sa1b(tiny_dataset.root), EvalConfig(), progress=False)
    report = result.report
    assert fake.set_image_calls == 2  # one embedding per image
    for name in ("point", "point_oracle", "point_single", "box", "interactive"):
        assert report.scores[name].miou == 1.0
        assert report.scores[name].count == 5
        assert report.scores[name].histogram[-1] == 5
    assert report.interactive_curve == (1.0,) * 9
    # Perfect after click 1: no more clicks. Calls per mask: multimask, single, box.
    assert len(fake.calls) == 3 * 5
    assert report.dataset.num_images == 2 and report.dataset.num_masks == 5
    assert [(m.image_id, m.annotation_id) for m in result.masks] == [
        (1, 0),
        (1, 1),
        (1, 2),
        (2, 10),
        (2, 11),
    ]


def test_degraded_predictor_scores_known_values(tiny_dataset: Any, fake_predictor: Any) -> None:
    fake = fake_predictor(tiny_dataset, degrade=True)
    result = evaluate(fake, open_sa1b(tiny_dataset.root), EvalConfig(), progress=False)
    scores = result.report.scores
    expected = float(np.mean([_degraded_iou(w) for w in tiny_dataset.rect_widths]))
    assert scores["point"].miou == pytest.approx(expected, abs=1e-12)
    assert scores["point"].miou < 1.0
    assert scores["point_oracle"].miou == 1.0  # the exact mask is second of three
    assert scores["point_single"].miou == pytest.approx(expected, abs=1e-12)
    assert scores["box"].miou == pytest.approx(expected, abs=1e-12)
    # Click 1: the degraded mask; click 2 lands in the missed half -> exact from then on.
    curve = result.report.interactive_curve
    assert curve is not None and len(curve) == 9
    assert curve[0] == pytest.approx(expected, abs=1e-12)
    assert curve[1:] == (1.0,) * 8
    # Breakdowns: every rectangle is "small" (< 32*32 px); the one "part" is 5 wide -> 3/5.
    groups = result.report.breakdown
    assert groups["size"]["small"].count == 5
    assert groups["size"]["small"].miou["point"] == pytest.approx(expected, abs=1e-12)
    assert {k: g.count for k, g in groups["level"].items()} == {"whole": 2, "part": 1, "unknown": 2}
    assert groups["level"]["part"].miou["box"] == pytest.approx(0.6, abs=1e-12)
    assert groups["level"]["part"].miou["point_oracle"] == 1.0
    for m, w in zip(result.masks, tiny_dataset.rect_widths, strict=True):
        assert m.point == pytest.approx(_degraded_iou(w), abs=1e-12)
        assert m.interactive is not None and len(m.interactive) == 9


def test_interactive_clicks_and_mask_feedback(tiny_dataset: Any, fake_predictor: Any) -> None:
    fake = fake_predictor(tiny_dataset, degrade=True)
    config = EvalConfig(protocols=("interactive",), max_images=1, max_masks_per_image=1, seed=3)
    evaluate(fake, open_sa1b(tiny_dataset.root), config, progress=False)
    first, second = fake.calls  # click 1 (multimask), click 2 (single with feedback)
    assert first["multimask"] is True and first["mask_input"] is None
    assert second["multimask"] is False
    labels = second["labels"]
    points = second["points"]
    assert isinstance(labels, np.ndarray) and labels.tolist() == [1, 1]
    assert isinstance(points, np.ndarray)
    np.testing.assert_array_equal(points[0], first["points"][0])  # type: ignore[index]
    # The second click is in the missed right half of the chosen rectangle.
    mask_input = second["mask_input"]
    assert isinstance(mask_input, np.ndarray) and mask_input.shape == (1, 256, 256)
    assert np.all(mask_input == 1.0)  # the logits returned by call 1
    # Feedback off: no mask_input; first click single-mask: one call with multimask False.
    fake2 = fake_predictor(tiny_dataset, degrade=True)
    config2 = EvalConfig(
        protocols=("interactive",),
        max_images=1,
        max_masks_per_image=1,
        seed=3,
        feed_mask_input=False,
        first_point_multimask=False,
    )
    evaluate(fake2, open_sa1b(tiny_dataset.root), config2, progress=False)
    assert [c["multimask"] for c in fake2.calls][:2] == [True, False]
    assert fake2.calls[-1]["mask_input"] is None


def test_filters_and_seeded_subsets(tiny_dataset: Any, fake_predictor: Any) -> None:
    record = open_sa1b(tiny_dataset.root).images[0].record
    # The 3x5 rectangle (15 px) falls below min_mask_area 16.
    assert select_masks(record, EvalConfig(min_mask_area=16), 0) == [0, 1]
    picks = {
        tuple(select_masks(record, EvalConfig(max_masks_per_image=2, seed=s), 0)) for s in range(8)
    }
    assert all(len(p) == 2 and list(p) == sorted(p) for p in picks)
    assert len(picks) > 1  # the seed matters
    assert select_masks(record, EvalConfig(max_masks_per_image=2, seed=5), 0) == select_masks(
        record, EvalConfig(max_masks_per_image=2, seed=5), 0
    )
    fake = fake_predictor(tiny_dataset)
    result = evaluate(
        fake,
        open_sa1b(tiny_dataset.root),
        EvalConfig(protocols=("box",), max_images=1, min_mask_area=16),
        progress=False,
    )
    assert result.report.dataset.num_images == 1
    assert result.report.dataset.num_masks == 2 and result.report.dataset.num_masks_total == 3
    assert set(result.report.scores) == {"box"} and result.report.interactive_curve is None
    with pytest.raises(InvalidInputError, match="nothing to evaluate"):
        evaluate(
            fake, open_sa1b(tiny_dataset.root), EvalConfig(min_mask_area=10_000), progress=False
        )


class _FakeGenerator:
    """Generates: image 1's mask 0 exactly, image 1's mask 1 at IoU 0.6, nothing else useful."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def generate_records(self, image: np.ndarray) -> list[MaskRecord]:
        if image.shape[:2] != self.dataset.images[0].shape[:2]:
            return [MaskRecord.from_mask(np.zeros(image.shape[:2], bool))]
        exact, other = self.dataset.masks[0][0], self.dataset.masks[0][1].copy()
        cols = np.flatnonzero(other.any(axis=0))  # 30 columns; keep 18 -> IoU 0.6
        other[:, cols[18:]] = False
        return [MaskRecord.from_mask(exact), MaskRecord.from_mask(other)]


def test_amg_recall_with_fake_generator(tiny_dataset: Any, fake_predictor: Any) -> None:
    config = EvalConfig(protocols=("amg",))
    result = evaluate(
        fake_predictor(tiny_dataset),
        open_sa1b(tiny_dataset.root),
        config,
        mask_generator=_FakeGenerator(tiny_dataset),
        progress=False,
    )
    amg = result.report.amg
    assert amg is not None
    assert amg.recall == {"0.5": 2 / 5, "0.75": 1 / 5}
    assert amg.num_gt == 5 and amg.num_generated == 3
    assert amg.mean_best_iou == pytest.approx((1.0 + 0.6) / 5, abs=1e-12)
    assert result.report.scores.keys() == set()
    assert result.report.timing.num_predict_calls == 0


def test_amg_skipped_with_a_note_without_generator(tiny_dataset: Any, fake_predictor: Any) -> None:
    result = evaluate(
        fake_predictor(tiny_dataset),
        open_sa1b(tiny_dataset.root),
        EvalConfig(protocols=("box", "amg")),
        progress=False,
    )
    assert result.report.amg is None
    assert any("amg skipped" in n for n in result.report.notes)


def test_outputs_written_and_report_round_trips(
    tiny_dataset: Any, fake_predictor: Any, tmp_path: Path
) -> None:
    result = evaluate(
        fake_predictor(tiny_dataset, degrade=True),
        open_sa1b(tiny_dataset.root),
        EvalConfig(num_samples=3),
        progress=False,
    )
    assert len(result.samples) == 3
    written = write_outputs(result, tmp_path / "out")
    assert sorted(written) == [
        "calibration.png",
        "interactive_curve.png",
        "iou_hist.png",
        "per_mask.jsonl",
        "report.json",
        "samples.png",
    ]
    for name in ("calibration.png", "interactive_curve.png", "iou_hist.png", "samples.png"):
        assert written[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(written["report.json"].read_text())
    assert data["dataset"]["num_masks"] == 5 and data["config"]["num_points"] == 9
    assert len(data["interactive_curve"]) == 9
    assert read_report(written["report.json"]).metrics() == result.report.metrics()
    rows = [json.loads(line) for line in written["per_mask.jsonl"].read_text().splitlines()]
    assert len(rows) == 5 and rows[0]["point_oracle"] == 1.0


def test_determinism_with_random_first_point(
    tmp_path: Path, make_dataset: Callable[[Path], Any], fake_predictor: Any
) -> None:
    data = make_dataset(tmp_path / "d")
    config = EvalConfig(first_point="random", seed=11, max_masks_per_image=2)
    a = evaluate(fake_predictor(data, degrade=True), open_sa1b(data.root), config, progress=False)
    b = evaluate(fake_predictor(data, degrade=True), open_sa1b(data.root), config, progress=False)
    assert a.report.metrics() == b.report.metrics()
    assert a.masks == b.masks


def test_calibration_of_every_protocol_in_the_report(
    tiny_dataset: Any, fake_predictor: Any, tmp_path: Path
) -> None:
    """The fake predictor scores its masks 0.9 / 0.5 / 0.1 while their IoUs are 1 / 1 / 0."""
    result = evaluate(
        fake_predictor(tiny_dataset),
        open_sa1b(tiny_dataset.root),
        EvalConfig(protocols=("point", "box")),
        progress=False,
    )
    cal = result.report.calibration
    assert cal is not None and cal.count == 5 * 5  # 3 candidates + single + box, per mask
    assert cal.by_protocol["point"].mae == pytest.approx((0.1 + 0.5 + 0.1) / 3)
    assert cal.by_protocol["point_single"].mae == pytest.approx(0.1)
    assert cal.by_protocol["box"].mae == pytest.approx(0.1)
    assert cal.mae == pytest.approx((0.7 + 0.1 + 0.1) / 5)
    assert set(cal.by_protocol) == {"point", "point_single", "box"}
    data = result.report.to_dict()["calibration"]
    assert data["mae"] == pytest.approx(cal.mae) and "pearson" in data
    assert read_report_from(result, tmp_path).to_dict()["calibration"] == data


def read_report_from(result: Any, tmp_path: Path) -> Any:
    written = write_outputs(result, tmp_path / "cal")
    assert written["calibration.png"].read_bytes()[:4] == b"\x89PNG"
    return read_report(written["report.json"])
