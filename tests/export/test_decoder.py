"""The decoder graph: contract, float32 parity with the PyTorch predictor, export options."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from anyseg.export import (
    OnnxPredictor,
    SamOnnxDecoder,
    compare_predictors,
    default_cases,
    export_decoder,
    random_image,
    read_metadata,
)
from anyseg.export.config import DecoderExportOptions
from anyseg.export.runtime import decoder_feed
from anyseg.predictor import SamPredictor

from ..conftest import make_test_model
from .conftest import ORT_THREADS, Exported, one_torch_thread

SIZE = (96, 128)  # (H, W) of the test image: not square


@pytest.fixture(scope="module")
def reference() -> SamPredictor:
    with one_torch_thread():
        pred = SamPredictor(make_test_model())
        pred.set_image(random_image(SIZE, seed=3))
    return pred


def onnx_on(reference: SamPredictor, decoder: Path, **kwargs) -> OnnxPredictor:
    pred = OnnxPredictor(decoder, threads=ORT_THREADS, **kwargs)
    assert reference.features is not None and reference.input_size is not None
    pred.set_embedding(reference.features.numpy(), SIZE, reference.input_size)
    return pred


def test_graph_has_the_original_onnx_contract(exported: Exported) -> None:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(exported.decoder), providers=["CPUExecutionProvider"])
    inputs = {i.name: (i.shape, i.type) for i in sess.get_inputs()}
    # The test preset: 32 channels, 16x16 embedding, 64x64 low-res masks.
    assert inputs == {
        "image_embeddings": ([1, 32, 16, 16], "tensor(float)"),
        "point_coords": ([1, "num_points", 2], "tensor(float)"),
        "point_labels": ([1, "num_points"], "tensor(float)"),
        "mask_input": ([1, 1, 64, 64], "tensor(float)"),
        "has_mask_input": ([1], "tensor(float)"),
        "orig_im_size": ([2], "tensor(float)"),
    }
    assert [(o.name, o.shape) for o in sess.get_outputs()] == [
        ("masks", [1, 4, "H", "W"]),
        ("iou_predictions", [1, 4]),
        ("low_res_masks", [1, 4, 64, 64]),
    ]
    meta = read_metadata(exported.decoder)
    assert meta["kind"] == "decoder" and meta["img_size"] == 256
    assert meta["options"]["return_single_mask"] is False

    # An app feeding the graph directly (as the original's web demo): N is free, all 4 masks
    # come back at orig_im_size.
    rng = np.random.default_rng(0)
    for n in (1, 4, 9):
        feed = {
            "image_embeddings": rng.standard_normal((1, 32, 16, 16)).astype(np.float32),
            "point_coords": rng.uniform(0, 256, (1, n, 2)).astype(np.float32),
            "point_labels": rng.integers(-1, 4, (1, n)).astype(np.float32),
            "mask_input": np.zeros((1, 1, 64, 64), np.float32),
            "has_mask_input": np.zeros(1, np.float32),
            "orig_im_size": np.array([70, 50], np.float32),
        }
        masks, iou, low = sess.run(None, feed)
        assert masks.shape == (1, 4, 70, 50) and iou.shape == (1, 4) and low.shape == (1, 4, 64, 64)


def test_float32_parity_with_pytorch_predictor(exported: Exported, reference: SamPredictor) -> None:
    report = compare_predictors(
        reference, onnx_on(reference, exported.decoder), default_cases(SIZE)
    )
    assert [c.name for c in report.cases] == [
        "point_multimask",
        "points_single",
        "box",
        "box_multimask",
        "box_point",
        "mask_points",
        "mask_only",
    ]
    assert report.max_abs_logits < 1e-4, report.to_dict()
    assert report.max_abs_low_res_logits < 1e-4
    assert report.max_abs_iou < 1e-4
    assert report.mismatched_pixels_confident == 0
    assert report.passed()


def test_multimask_on_off_and_thresholded_masks(
    exported: Exported, reference: SamPredictor
) -> None:
    onnx = onnx_on(reference, exported.decoder)
    point = np.array([[60.0, 40.0]])
    for multimask, count in ((True, 3), (False, 1)):
        got = onnx.predict(point, np.array([1]), multimask_output=multimask)
        ref = reference.predict(point, np.array([1]), multimask_output=multimask)
        ref_logits = reference.predict(
            point, np.array([1]), multimask_output=multimask, return_logits=True
        )[0]
        assert got[0].shape == (count, *SIZE) and got[0].dtype == bool
        assert got[1].shape == (count,) and got[2].shape == (count, 64, 64)
        # Identical thresholded masks, except pixels whose logit is within 1e-3 of 0.
        confident = np.abs(ref_logits) >= 1e-3
        assert np.array_equal(got[0][confident], ref[0][confident])
        np.testing.assert_allclose(got[1], ref[1], atol=1e-4)


def test_eager_wrapper_matches_predictor(reference: SamPredictor) -> None:
    """The traced module itself (before ONNX) computes what the predictor computes."""
    assert reference.features is not None
    wrapper = SamOnnxDecoder(reference.model)
    point, label, box = np.array([[50.0, 50.0]]), np.array([0]), np.array([10.0, 20, 90, 80])
    feed = decoder_feed(reference.features.numpy(), SIZE, 256, point, label, box)
    assert feed["point_labels"].tolist() == [[0.0, 2.0, 3.0]]  # point, then box corners
    with torch.no_grad():
        masks, iou, low = wrapper(*(torch.from_numpy(v) for v in feed.values()))
    ref = reference.predict(point, label, box, multimask_output=False, return_logits=True)
    np.testing.assert_allclose(low[0, :1].numpy(), ref[2], atol=1e-5)
    np.testing.assert_allclose(masks[0, :1].numpy(), ref[0], atol=1e-5)
    np.testing.assert_allclose(iou[0, :1].numpy(), ref[1], atol=1e-6)


def test_single_mask_stability_and_extra_metrics(tmp_path: Path, reference: SamPredictor) -> None:
    import onnxruntime as ort

    path = tmp_path / "single.onnx"
    options = DecoderExportOptions(
        return_single_mask=True, use_stability_score=True, return_extra_metrics=True
    )
    wrapper = export_decoder(reference.model, path, options)
    assert [s.name for s in wrapper.output_specs()] == [
        "masks",
        "iou_predictions",
        "stability_scores",
        "areas",
        "low_res_masks",
    ]
    onnx = onnx_on(reference, path)
    assert onnx.single_mask
    report = compare_predictors(
        reference, onnx, default_cases(SIZE), single_mask=True, use_stability_score=True
    )
    assert report.max_abs_logits < 1e-4 and report.max_abs_iou < 1e-3, report.to_dict()

    # The selection rule, checked against the predictor directly: one click (two tokens with
    # the padding point) -> the best of the three ambiguity masks; three clicks -> token 0.
    one = np.array([[60.0, 40.0]]), np.array([1])
    masks3, _, low3 = reference.predict(*one, multimask_output=True, return_logits=True)
    stab3 = ((low3 > 1).sum((1, 2)) / (low3 > -1).sum((1, 2))).astype(np.float32)
    got_masks, got_score, _ = onnx.predict(*one, return_logits=True)
    np.testing.assert_allclose(got_masks[0], masks3[int(np.argmax(stab3))], atol=1e-4)
    np.testing.assert_allclose(got_score[0], stab3.max(), atol=1e-6)
    three = np.array([[60.0, 40.0], [30.0, 30.0], [100.0, 70.0]]), np.array([1, 0, 1])
    masks1, _, _ = reference.predict(*three, multimask_output=False, return_logits=True)
    np.testing.assert_allclose(onnx.predict(*three, return_logits=True)[0], masks1, atol=1e-4)

    # Extra outputs: stability and area of the upscaled masks.
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = onnx.decoder_inputs(*three)
    masks, _, stability, areas, low = sess.run(None, feed)
    assert masks.shape == (1, 1, *SIZE) and low.shape == (1, 1, 64, 64)
    assert areas[0, 0] == int((masks > 0).sum())
    expected = (masks > 1).sum() / (masks > -1).sum()
    assert stability[0, 0] == pytest.approx(expected, abs=1e-6)


def test_gelu_approximate_fixed_points_leave_the_model_alone(
    tmp_path: Path, reference: SamPredictor
) -> None:
    model = reference.model
    model.train()
    path = tmp_path / "approx.onnx"
    export_decoder(model, path, DecoderExportOptions(gelu_approximate=True, dynamic_points=False))
    # The caller's model is unchanged: exact GELU, training flags restored.
    gelus = [m for m in model.modules() if isinstance(m, torch.nn.GELU)]
    assert gelus and all(m.approximate == "none" for m in gelus)
    assert all(m.training for m in model.modules())
    model.eval()

    onnx = onnx_on(reference, path)
    assert onnx.fixed_num_points == DecoderExportOptions().num_points
    # 4 points + padding = 5 tokens fits; other counts are a clear error.
    four = (
        np.array([[10.0, 10.0], [60.0, 40.0], [30.0, 70.0], [100.0, 20.0]]),
        np.array([1, 0, 1, 1]),
    )
    got = onnx.predict(*four, multimask_output=False, return_logits=True)
    ref = reference.predict(*four, multimask_output=False, return_logits=True)
    deviation = float(np.abs(got[0] - ref[0]).max())
    assert 0 < deviation < 0.05  # tanh GELU: close, but not the same function
    from anyseg.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="exactly 5 prompt points"):
        onnx.predict(np.array([[10.0, 10.0]]), np.array([1]))


def test_opset_is_validated(tmp_path: Path, reference: SamPredictor) -> None:
    from anyseg.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="opset must be an integer >= 14"):
        export_decoder(reference.model, tmp_path / "d.onnx", opset=11)
    assert not (tmp_path / "d.onnx").exists()
