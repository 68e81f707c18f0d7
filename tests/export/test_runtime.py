"""OnnxPredictor: encoder graph, end-to-end parity, int8 quantization, input errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from anyseg.checkpoint import load
from anyseg.errors import InvalidInputError
from anyseg.export import (
    OnnxPredictor,
    compare_predictors,
    default_cases,
    preprocess_image,
    random_image,
    read_metadata,
)
from anyseg.predictor import SamPredictor

from .conftest import ORT_THREADS, Exported, one_torch_thread

SIZE = (75, 100)  # (H, W)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return random_image(SIZE, seed=7)


@pytest.fixture(scope="module")
def reference(exported: Exported, image: np.ndarray) -> SamPredictor:
    with one_torch_thread():
        pred = SamPredictor(load(exported.checkpoint))
        pred.set_image(image)
    return pred


@pytest.fixture(scope="module")
def onnx(exported: Exported, image: np.ndarray) -> OnnxPredictor:
    pred = OnnxPredictor.from_export_dir(exported.out_dir, threads=ORT_THREADS)
    pred.set_image(image)
    return pred


def test_preprocess_matches_the_model_bit_for_bit(reference: SamPredictor) -> None:
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (40, 90, 3), dtype=np.uint8)
    model = reference.model
    got, input_size = preprocess_image(rgb, 256, model.config.pixel_mean, model.config.pixel_std)
    from anyseg.ops.transforms import resize_longest_side

    resized = torch.as_tensor(resize_longest_side(rgb, 256)).permute(2, 0, 1)[None].float()
    expected = model.preprocess(resized).numpy()
    assert input_size == (114, 256) and got.shape == (1, 3, 256, 256)
    assert np.array_equal(got, expected)


def test_end_to_end_parity_with_encoder(onnx: OnnxPredictor, reference: SamPredictor) -> None:
    assert reference.features is not None
    embedding_error = np.abs(onnx.get_image_embedding() - reference.features.numpy()).max()
    assert embedding_error < 1e-4
    assert onnx.original_size == reference.original_size
    assert onnx.input_size == reference.input_size
    report = compare_predictors(reference, onnx, default_cases(SIZE))
    assert report.max_abs_logits < 1e-4 and report.max_abs_iou < 1e-4, report.to_dict()
    assert report.mismatched_pixels_confident == 0


def test_bgr_and_path_inputs(
    onnx: OnnxPredictor, image: np.ndarray, tmp_path: Path, exported: Exported
) -> None:
    from PIL import Image

    other = OnnxPredictor(exported.decoder, exported.encoder, threads=ORT_THREADS)
    other.set_image(np.ascontiguousarray(image[..., ::-1]), image_format="BGR")
    assert np.array_equal(other.get_image_embedding(), onnx.get_image_embedding())
    Image.fromarray(image).save(tmp_path / "img.png")
    other.set_image(tmp_path / "img.png")
    assert np.array_equal(other.get_image_embedding(), onnx.get_image_embedding())


def test_int8_decoder_deviation_is_measured(
    exported: Exported, reference: SamPredictor, onnx: OnnxPredictor
) -> None:
    assert reference.features is not None and reference.input_size is not None
    cases = default_cases(SIZE)
    # The file `anyseg export --quantize` wrote, and the quantize=True flag: same graph.
    from_file = OnnxPredictor(exported.decoder_int8, threads=ORT_THREADS)
    on_load = OnnxPredictor(exported.decoder, quantize=True, threads=ORT_THREADS)
    assert on_load.quantized and on_load.metadata["quantized"] == "dynamic quint8"
    assert from_file.metadata["quantized"] == "dynamic quint8"
    assert "quantized" not in read_metadata(exported.decoder)  # the float32 file is untouched
    reports = []
    for pred in (from_file, on_load):
        pred.set_embedding(reference.features.numpy(), SIZE, reference.input_size)
        reports.append(compare_predictors(reference, pred, cases))
    assert reports[0].to_dict() == reports[1].to_dict()
    int8 = reports[0]
    float32 = compare_predictors(reference, onnx, cases)
    # int8 is close but measurably different; the report says by how much.
    assert int8.max_abs_logits > 100 * max(float32.max_abs_logits, 1e-7)
    assert int8.max_abs_logits < 0.5
    assert int8.mismatch_fraction < 0.05


def test_decoder_only_needs_an_embedding(exported: Exported) -> None:
    pred = OnnxPredictor(exported.decoder, threads=ORT_THREADS)
    with pytest.raises(InvalidInputError, match="needs the encoder graph"):
        pred.set_image(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(RuntimeError, match="no image is set"):
        pred.predict(np.array([[1.0, 1.0]]), np.array([1]))
    with pytest.raises(InvalidInputError, match=r"embedding must have shape \(1, 32, 16, 16\)"):
        pred.set_embedding(np.zeros((1, 32, 8, 8), np.float32), (10, 10))


def test_prompt_errors(onnx: OnnxPredictor) -> None:
    with pytest.raises(InvalidInputError, match="outside"):
        onnx.predict(np.array([[500.0, 5.0]]), np.array([1]))
    with pytest.raises(InvalidInputError, match="labels must be 0 or 1"):
        onnx.predict(np.array([[5.0, 5.0]]), np.array([2]))
    with pytest.raises(InvalidInputError, match="box must be XYXY"):
        onnx.predict(box=np.array([1.0, 2.0, 3.0]))
    with pytest.raises(InvalidInputError, match=r"mask_input must be \(1, 64, 64\)"):
        onnx.predict(np.array([[5.0, 5.0]]), np.array([1]), mask_input=np.zeros((1, 32, 32)))


def test_file_errors(exported: Exported, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="decoder ONNX file not found"):
        OnnxPredictor(tmp_path / "nope.onnx")
    with pytest.raises(InvalidInputError, match="encoder ONNX file not found"):
        OnnxPredictor(exported.decoder, tmp_path / "nope.onnx")
    with pytest.raises(InvalidInputError, match="not a SAM decoder graph"):
        OnnxPredictor(exported.encoder)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    with pytest.raises(InvalidInputError, match="cannot load ONNX model"):
        OnnxPredictor(garbage)
