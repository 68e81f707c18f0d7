"""``anyseg auto``: outputs, skip/resume, --overwrite, bad images, atomic results."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anyseg.automatic import generator as generator_module
from anyseg.cli.main import main
from anyseg.data.sa1b import read_image_record

FAST_OPTIONS = ["--points-per-side", "3", "--pred-iou-thresh", "0", "--stability-score-thresh", "0"]


@pytest.fixture()
def images(tmp_path: Path, small_image: np.ndarray) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(small_image).save(folder / "a.png")
    Image.fromarray(small_image[:64, :80]).save(folder / "sa_7.jpg")
    (folder / "notes.txt").write_text("not an image, ignored in folders")
    return folder


def auto(inputs: list[Path], out: Path, checkpoint: Path, *extra: str) -> int:
    args = ["auto", *map(str, inputs), "-o", str(out), "--checkpoint", str(checkpoint)]
    return main([*args, *FAST_OPTIONS, *extra])


def test_writes_sa1b_json_and_overlay(images: Path, tmp_path: Path, test_checkpoint: Path) -> None:
    out = tmp_path / "out"
    assert auto([images], out, test_checkpoint) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "a.json",
        "a_overlay.png",
        "sa_7.json",
        "sa_7_overlay.png",
    ]
    record = read_image_record(out / "sa_7.json")
    assert (record.image_id, record.file_name, record.width, record.height) == (
        7,
        "sa_7.jpg",
        80,
        64,
    )
    assert len(record.annotations) >= 1
    for ann in record.annotations:
        assert ann.decode().shape == (64, 80)
        assert ann.area == int(ann.decode().sum())
        assert ann.predicted_iou is not None and ann.point_coords is not None
    overlay = np.array(Image.open(out / "a_overlay.png"))
    original = np.array(Image.open(images / "a.png"))
    assert overlay.shape == original.shape and not np.array_equal(overlay, original)


def test_skips_done_images_and_overwrite_redoes_them(
    images: Path, tmp_path: Path, test_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert auto([images], out, test_checkpoint) == 0
    first = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    (out / "a.json").write_text(json.dumps({"marker": "kept if skipped"}))
    capsys.readouterr()
    assert auto([images], out, test_checkpoint) == 0
    assert "already done" in capsys.readouterr().err
    assert json.loads((out / "a.json").read_text()) == {"marker": "kept if skipped"}
    assert (out / "sa_7.json").stat().st_mtime_ns == first["sa_7.json"]
    assert auto([images], out, test_checkpoint, "--overwrite") == 0
    assert read_image_record(out / "a.json").file_name == "a.png"


def test_interrupted_run_resumes_without_half_written_files(
    images: Path, tmp_path: Path, test_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    real = generator_module.SamAutomaticMaskGenerator.generate_records
    calls = []

    def crash_on_second(self, image, progress=None):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, image, progress)

    monkeypatch.setattr(
        generator_module.SamAutomaticMaskGenerator, "generate_records", crash_on_second
    )
    assert auto([images], out, test_checkpoint) == 130
    assert sorted(p.name for p in out.iterdir()) == ["a.json", "a_overlay.png"]  # no temp files
    monkeypatch.setattr(generator_module.SamAutomaticMaskGenerator, "generate_records", real)
    done_before = (out / "a.json").stat().st_mtime_ns
    assert auto([images], out, test_checkpoint) == 0
    assert (out / "a.json").stat().st_mtime_ns == done_before  # not redone
    assert (out / "sa_7.json").is_file() and (out / "sa_7_overlay.png").is_file()


def test_bad_image_is_reported_and_the_run_goes_on(
    images: Path, tmp_path: Path, test_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    out = tmp_path / "out"
    assert auto([images], out, test_checkpoint) == 1
    err = capsys.readouterr().err
    assert "skipped" in err and "broken.png" in err and "2 done" in err and "1 failed" in err
    assert (out / "a.json").is_file() and (out / "sa_7.json").is_file()
    assert not (out / "broken.json").exists()


def test_user_errors(images: Path, tmp_path: Path, test_checkpoint: Path, capsys) -> None:
    out = tmp_path / "out"
    assert auto([tmp_path / "missing.png"], out, test_checkpoint) == 1
    assert "no such file or folder" in capsys.readouterr().err
    twin = tmp_path / "twin"
    twin.mkdir()
    (twin / "a.jpg").write_bytes((images / "sa_7.jpg").read_bytes())
    assert auto([images, twin], out, test_checkpoint) == 1
    assert "a.json" in capsys.readouterr().err
    assert main(["auto", str(images), "-o", str(out), "--box-nms-thresh", "2"]) == 1
    assert "box_nms_thresh" in capsys.readouterr().err


def test_says_why_no_mask_was_kept(
    images: Path, tmp_path: Path, test_checkpoint: Path, capsys
) -> None:
    args = ["auto", str(images / "a.png"), "-o", str(tmp_path / "o"), "--checkpoint"]
    strict = ["--points-per-side", "3", "--pred-iou-thresh", "1.0"]
    assert main([*args, str(test_checkpoint), *strict]) == 0
    err = capsys.readouterr().err
    assert "a.png: 0 masks kept: no mask passed the predicted-IoU filter" in err
    assert "1 done (0 masks)" in err
    assert read_image_record(tmp_path / "o" / "a.json").annotations == ()
