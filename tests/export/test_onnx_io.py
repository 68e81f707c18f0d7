"""Atomic ONNX writing: metadata, declared output shapes, external data, failures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from anyseg.export.onnx_io import prepare_output_dir, read_metadata, write_onnx_atomically


def write_matmul_model(path: Path, external: bool) -> None:
    """y = x @ W + b with 64x64 weights; with ``external``, one data file per tensor (what
    the exporter does for models over 2 GB)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((64, 64)).astype(np.float32), "W")
    b = numpy_helper.from_array(rng.standard_normal(64).astype(np.float32), "b")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["y"]),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["a", "b"])],
        [w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if external:
        onnx.save_model(
            model,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=False,
            size_threshold=0,
        )
    else:
        onnx.save(model, str(path))


def run(path: Path) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": np.ones((1, 64), np.float32)})[0]


@pytest.mark.parametrize("external", [False, True])
def test_write_adds_metadata_and_shapes(tmp_path: Path, external: bool) -> None:
    import onnxruntime as ort

    reference = tmp_path / "plain.onnx"
    write_matmul_model(reference, external=False)
    out = tmp_path / "out" / "model.onnx"
    write_onnx_atomically(
        out,
        lambda tmp: write_matmul_model(tmp, external),
        {"anyseg.kind": "test", "anyseg.options": {"a": 1}},
        {"y": (1, 64)},
    )
    expected = {"model.onnx", "model.onnx.data"} if external else {"model.onnx"}
    assert {p.name for p in out.parent.iterdir()} == expected  # no temporary folder left
    np.testing.assert_array_equal(run(out), run(reference))
    assert read_metadata(out) == {"kind": "test", "options": {"a": 1}}
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert sess.get_outputs()[0].shape == [1, 64]


def test_replacing_a_large_model_removes_its_data_file(tmp_path: Path) -> None:
    out = tmp_path / "model.onnx"
    write_onnx_atomically(out, lambda tmp: write_matmul_model(tmp, True), {})
    assert (tmp_path / "model.onnx.data").is_file()
    write_onnx_atomically(out, lambda tmp: write_matmul_model(tmp, False), {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]
    assert run(out).shape == (1, 64)


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    def broken(tmp: Path) -> None:
        tmp.write_bytes(b"half a model")
        raise RuntimeError("exporter crashed")

    with pytest.raises(RuntimeError, match="exporter crashed"):
        write_onnx_atomically(tmp_path / "m.onnx", broken, {})
    assert list(tmp_path.iterdir()) == []


def test_output_dir_errors(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError, match="cannot create output folder"):
        prepare_output_dir(tmp_path / "file" / "sub")
    with pytest.raises(OSError, match="exists and is not a folder"):
        prepare_output_dir(tmp_path / "file")
    assert prepare_output_dir(tmp_path / "a" / "b").is_dir()
