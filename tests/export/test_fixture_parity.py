"""The decoder of the parity-fixture model (the full-size SAM decoder) exported to ONNX:
against the original implementation's outputs and against our PyTorch predictor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from anyseg.checkpoint import load
from anyseg.export import OnnxPredictor, compare_predictors, default_cases, export_decoder
from anyseg.export.quantize import quantize_decoder
from anyseg.predictor import SamPredictor

from .conftest import ORT_THREADS, one_torch_thread

# (fixture case, multimask) on the non-square coffee crop (300x451 -> model frame 681x1024).
CASES = (
    ("pt1_mm", True),
    ("pt3_single", False),
    ("box", False),
    ("box_neg", False),
    ("maskin_pt2", False),
)


@pytest.fixture(scope="module")
def fixture_model(shared_fixtures: Path, tmp_path_factory: pytest.TempPathFactory):
    model = load(shared_fixtures / "tiny_sam.pth")
    out = tmp_path_factory.mktemp("tiny_onnx")
    with one_torch_thread():
        export_decoder(model, out / "decoder.onnx")
    ref = np.load(shared_fixtures / "ref_coffee_crop.npz")
    return model, out / "decoder.onnx", ref


def case_inputs(ref, name: str) -> dict[str, np.ndarray]:
    keys = {"point_coords": "point_coords", "point_labels": "point_labels", "box": "box"}
    kwargs = {arg: ref[f"{name}.{key}"] for arg, key in keys.items() if f"{name}.{key}" in ref}
    if f"{name}.mask_input" in ref:
        kwargs["mask_input"] = ref[f"{name}.mask_input"]
    return kwargs


def test_onnx_decoder_reproduces_the_original(fixture_model) -> None:
    _, decoder, ref = fixture_model
    onnx = OnnxPredictor(decoder, threads=ORT_THREADS)
    onnx.set_embedding(ref["embedding"], (300, 451))
    assert onnx.input_size == (681, 1024)
    for name, multimask in CASES:
        kwargs = case_inputs(ref, name)
        masks, iou, low = onnx.predict(**kwargs, multimask_output=multimask)
        np.testing.assert_allclose(low, ref[f"{name}.low_res_logits"], atol=1e-3, err_msg=name)
        np.testing.assert_allclose(iou, ref[f"{name}.iou_predictions"], atol=1e-4, err_msg=name)
        flipped = (masks != ref[f"{name}.masks"]).mean()
        assert flipped < 1e-3, (name, flipped)
    # Full-resolution logits of the original: equal masks wherever |logit| >= 1e-3.
    logits = onnx.predict(**case_inputs(ref, "pt1_mm"), return_logits=True)[0]
    ref_logits = ref["pt1_mm.masks_logits"]
    np.testing.assert_allclose(logits, ref_logits, atol=1e-3)
    confident = np.abs(ref_logits) >= 1e-3
    assert np.array_equal((logits > 0)[confident], ref["pt1_mm.masks"][confident])


def test_onnx_decoder_matches_pytorch_and_int8_is_smaller(fixture_model, tmp_path: Path) -> None:
    model, decoder, ref = fixture_model
    torch_pred = SamPredictor(model)
    torch_pred.set_embedding(torch.from_numpy(ref["embedding"]), (300, 451))
    onnx = OnnxPredictor(decoder, threads=ORT_THREADS)
    onnx.set_embedding(ref["embedding"], (300, 451))
    report = compare_predictors(torch_pred, onnx, default_cases((300, 451)))
    # Logits reach +-18 here. The low-res logits agree to ~6e-5; the upscaled ones to ~4e-4,
    # the float32 coordinate rounding of the final resize at steep edges (see passed()).
    assert report.max_abs_low_res_logits < 1e-4, report.to_dict()
    assert report.max_abs_logits < 1e-3 and report.max_abs_iou < 1e-4, report.to_dict()
    assert report.mismatched_pixels_confident == 0
    assert report.passed()

    int8 = quantize_decoder(decoder, tmp_path / "decoder_int8.onnx")
    assert int8.stat().st_size < 0.4 * decoder.stat().st_size  # 8-bit weights
    q = OnnxPredictor(int8, threads=ORT_THREADS)
    q.set_embedding(ref["embedding"], (300, 451))
    q_report = compare_predictors(torch_pred, q, default_cases((300, 451)))
    # Measured on these perturbed random weights: ~1.6 max |logit| (of +-18), ~2 % of the
    # mask pixels flipped. Close, clearly not float32: that is why the report exists.
    assert 100 * report.max_abs_logits < q_report.max_abs_logits < 5.0
    assert q_report.mismatch_fraction < 0.05
