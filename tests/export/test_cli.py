"""``anyseg export``: what it writes, its self-check, and its one-line errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from anyseg.cli.main import main
from anyseg.export import MissingDependencyError

from .conftest import Exported


def test_export_writes_graphs_and_a_self_checking_manifest(exported: Exported) -> None:
    names = sorted(p.name for p in exported.out_dir.iterdir())
    # Nothing temporary left behind.
    assert names == ["decoder.onnx", "decoder_int8.onnx", "encoder.onnx", "export.json"]
    manifest_path = exported.out_dir / "export.json"
    assert manifest_path.stat().st_mode & 0o044  # readable by others, as the .onnx files
    manifest = json.loads(manifest_path.read_text())
    files = manifest["files"]
    assert set(files) == {"decoder", "decoder_int8", "encoder"}
    assert [i["name"] for i in files["decoder"]["inputs"]] == [
        "image_embeddings",
        "point_coords",
        "point_labels",
        "mask_input",
        "has_mask_input",
        "orig_im_size",
    ]
    assert files["decoder"]["inputs"][1]["shape"] == [1, "num_points", 2]
    assert files["decoder"]["outputs"][0] == {
        "name": "masks",
        "shape": [1, 4, "H", "W"],
        "dtype": "float32",
        "doc": "mask logits at the original size",
    }
    assert files["encoder"]["inputs"][0]["shape"] == [1, 3, 256, 256]
    assert files["encoder"]["outputs"][0]["shape"] == [1, 32, 16, 16]
    for entry in files.values():
        path = exported.out_dir / entry["path"]
        assert entry["bytes"] == path.stat().st_size and len(entry["sha256"]) == 64
    assert manifest["config"]["image_encoder"]["img_size"] == 256
    assert manifest["opset"] == 17

    parity = manifest["parity"]
    assert parity["passed"] is True
    assert 0 <= parity["decoder"]["max_abs_logits"] < 1e-4
    assert parity["decoder"]["mismatched_pixels_confident"] == 0
    assert len(parity["decoder"]["cases"]) == 7
    assert parity["encoder_max_abs_embedding"] < 1e-4
    assert parity["end_to_end"]["max_abs_logits"] < 1e-4
    assert parity["decoder_int8"]["max_abs_logits"] > parity["decoder"]["max_abs_logits"]
    # The table printed at the end names each graph.
    for row in ("decoder (float32)", "decoder (int8)", "encoder+decoder", "encoder embedding"):
        assert row in exported.stdout


def test_single_mask_export_checks_itself(test_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "single"
    code = main(
        ["export", "--checkpoint", str(test_checkpoint), "-o", str(out), "--return-single-mask"]
    )
    assert code == 0
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["decoder_options"]["return_single_mask"] is True
    assert manifest["files"]["decoder"]["outputs"][0]["shape"] == [1, 1, "H", "W"]
    assert manifest["parity"]["passed"] is True
    assert sorted(p.name for p in out.iterdir()) == ["decoder.onnx", "export.json"]


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_missing_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["export", "--checkpoint", str(tmp_path / "none.pth"), "-o", str(tmp_path / "o")])
    assert code == 1
    assert error_line(capsys).startswith("anyseg export: error: checkpoint not found:")
    assert not (tmp_path / "o").exists()


def test_unloadable_checkpoint_leaves_no_output_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    code = main(["export", "--checkpoint", str(bad), "-o", str(tmp_path / "o")])
    assert code == 1
    assert error_line(capsys).startswith("anyseg export: error:")
    assert not (tmp_path / "o").exists()


def test_unwritable_output(
    test_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code = main(["export", "--checkpoint", str(test_checkpoint), "-o", str(blocker / "sub")])
    assert code == 1
    assert "cannot create output folder" in error_line(capsys)


def test_bad_opset(
    test_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["export", "--checkpoint", str(test_checkpoint), "-o", str(tmp_path), "--opset", "9"]
    )
    assert code == 1
    assert "opset must be an integer >= 14, got 9 (--opset 9)" in error_line(capsys)


@pytest.mark.parametrize("missing", ["onnx", "onnxruntime"])
def test_missing_optional_dependency(
    missing: str,
    test_checkpoint: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, missing, None)  # makes `import missing` fail
    code = main(["export", "--checkpoint", str(test_checkpoint), "-o", str(tmp_path / "o")])
    assert code == 1
    line = error_line(capsys)
    assert f"optional package {missing!r}" in line and "pip install anyseg[onnx]" in line

    if missing != "onnxruntime":
        return
    from anyseg.export import OnnxPredictor

    with pytest.raises(MissingDependencyError, match=r"pip install anyseg\[onnx\]") as info:
        OnnxPredictor(test_checkpoint)  # any existing file: the import fails first
    assert isinstance(info.value, ImportError)
