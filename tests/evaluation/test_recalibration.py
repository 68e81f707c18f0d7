"""Recalibrating the IoU head: the folded map is exact, the fit finds the line, the command
writes a model whose predicted IoUs moved and whose masks did not."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from tests.conftest import make_test_model

from anyseg.checkpoint import load_model, save
from anyseg.cli.main import main
from anyseg.config import AmgThresholds
from anyseg.errors import InvalidInputError
from anyseg.evaluation.recalibration import (
    AffineMap,
    IouRecalibration,
    fit_lad_line,
    fit_recalibration,
    output_kind,
    recalibrate_model,
)
from anyseg.evaluation.report import MaskResult


def _decode(model: Any) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(3)
    dim = model.mask_decoder.transformer_dim
    emb = torch.randn(1, dim, 8, 8)
    pe = torch.randn(1, dim, 8, 8)
    sparse = torch.randn(2, 3, dim)
    dense = torch.randn(2, dim, 8, 8)
    with torch.no_grad():
        return model.mask_decoder.predict_masks(emb, pe, sparse, dense)


def test_rescale_iou_head_is_the_affine_map_exactly_and_leaves_the_masks() -> None:
    model = make_test_model()
    masks, iou = _decode(model)
    scale = torch.tensor([1.5, 0.5, 2.0, 1.0])
    shift = torch.tensor([0.1, -0.2, 0.0, 0.3])
    model.mask_decoder.rescale_iou_head(scale, shift)
    masks2, iou2 = _decode(model)
    assert torch.equal(masks, masks2)
    torch.testing.assert_close(iou2, iou * scale + shift, atol=1e-5, rtol=1e-5)
    model.mask_decoder.rescale_iou_head(torch.tensor(2.0), torch.tensor(0.0))  # one for all
    torch.testing.assert_close(_decode(model)[1], 2 * (iou * scale + shift), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="1 or 4 values"):
        model.mask_decoder.rescale_iou_head(torch.ones(3), torch.zeros(3))


def test_the_lad_line_ignores_outliers_and_keeps_the_order() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(0.1, 0.6, 400)
    a = 1.2 * p + 0.1 + rng.normal(0, 0.01, p.size)
    a[:40] = 0.0  # a tenth are wild misses (an ambiguous click's other object)
    line = fit_lad_line(p, a)
    assert line.scale == pytest.approx(1.2, abs=0.05) and line.shift == pytest.approx(0.1, abs=0.03)
    assert line.count == 400
    falling = fit_lad_line(p, 1.0 - p)  # a head that ranks backwards: the slope stays positive
    assert falling.scale == pytest.approx(0.05)
    assert fit_lad_line(np.full(5, 0.3), np.ones(5)) == AffineMap(1.0, 0.0, 5)


def _result(point: float, later: float) -> MaskResult:
    preds = [("point", point, point + 0.2)] * 3 + [("point_single", later, later + 0.1)]
    preds += [("interactive", point, point + 0.2), ("interactive", later, later + 0.1)]
    preds += [("interactive", float("nan"), 0.9), ("box", later, later + 0.1), ("text", 0.5, 0.0)]
    return MaskResult(image_id=0, annotation_id=0, area=1, iou_predictions=tuple(preds))


def test_the_fit_separates_multimask_from_single_outputs() -> None:
    results = [_result(0.1 + 0.01 * i, 0.3 + 0.005 * i) for i in range(40)]
    kinds = output_kind(results)
    # 3 candidates + the first click; point_single, the second click, the box; no NaN, no text
    assert [k for k, _, _ in kinds[:7]] == ["multimask"] * 3 + ["single", "multimask"] + [
        "single"
    ] * 2
    assert len(kinds) == 40 * 7
    assert [k for k, _, _ in output_kind(results[:1], first_point_multimask=False)][4] == "single"
    fit = fit_recalibration(results)
    assert fit.multimask.scale == pytest.approx(1.0, abs=1e-3)
    assert fit.multimask.shift == pytest.approx(0.2, abs=1e-3)
    assert fit.single.shift == pytest.approx(0.1, abs=1e-3)
    assert fit.mae_after < 1e-3 < fit.mae_before
    with pytest.raises(InvalidInputError, match="no IoU predictions"):
        fit_recalibration([MaskResult(0, 0, 1)])


def test_recalibrating_a_model_moves_its_recommended_threshold() -> None:
    model = make_test_model()
    model.amg_thresholds = AmgThresholds(0.3, 0.85, "best F1")
    fit = IouRecalibration(AffineMap(1.5, 0.1, 10), AffineMap(1.0, 0.0, 10), 0.2, 0.1)
    recalibrate_model(model, fit)
    assert model.amg_thresholds.pred_iou_thresh == pytest.approx(0.55)
    assert model.amg_thresholds.stability_score_thresh == 0.85
    assert "recalibration" in model.amg_thresholds.source


def test_calibrate_cli_writes_the_recalibrated_model(
    tiny_dataset: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = make_test_model()
    model.amg_thresholds = AmgThresholds(0.3, 0.85, "test")
    src = tmp_path / "in.safetensors"
    save(model, src)
    out = tmp_path / "out.safetensors"
    args = ["calibrate", str(tiny_dataset.root), "--checkpoint", str(src), "-o", str(out)]
    args += ["--points", "3", "--device", "cpu", "--quiet", "--json", str(tmp_path / "fit.json")]
    assert main(args) == 0
    printed = capsys.readouterr()
    assert "mean |predicted - actual|" in printed.out and f"wrote {out}" in printed.out
    record = json.loads((tmp_path / "fit.json").read_text())
    assert record["num_images"] == 2 and record["config"]["num_points"] == 3
    fit = record["recalibration"]
    assert fit["mae_after"] <= fit["mae_before"] + 1e-9
    before, after = load_model(src, "cpu"), load_model(out, "cpu")
    masks, iou = _decode(before)
    masks2, iou2 = _decode(after)
    assert torch.equal(masks, masks2)
    m, s = fit["multimask"], fit["single"]
    torch.testing.assert_close(iou2[:, 0], iou[:, 0] * s["scale"] + s["shift"], atol=1e-5, rtol=0)
    torch.testing.assert_close(iou2[:, 1:], iou[:, 1:] * m["scale"] + m["shift"], atol=1e-5, rtol=0)
    assert after.amg_thresholds is not None
    expected = min(max(0.3 * m["scale"] + m["shift"], 0.0), 1.0)
    assert after.amg_thresholds.pred_iou_thresh == pytest.approx(expected, abs=1e-4)
    # nothing is overwritten, and a run that predicts no IoU is refused before any work
    stamp = out.stat().st_mtime_ns
    assert main(args) != 0
    assert "exists" in capsys.readouterr().err and out.stat().st_mtime_ns == stamp
    other = tmp_path / "x.safetensors"
    assert main([*args[:4], "-o", str(other), "--protocols", "amg"]) != 0
    assert "--protocols must include" in capsys.readouterr().err and not other.exists()
