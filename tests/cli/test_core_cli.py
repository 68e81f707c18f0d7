"""``anyseg segment``, ``info`` and ``download`` through the real entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anyseg.cli.main import main
from anyseg.ops.rle import decode_rle


@pytest.fixture()
def image_path(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    path = tmp_path / "pic.png"
    Image.fromarray(img).save(path)
    return path


def test_segment_multimask_writes_masks_overlay_and_json(
    image_path: Path, test_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "out"
    code = main(
        [
            "segment",
            str(image_path),
            "--point",
            "20,10",
            "--point",
            "40,30,0",
            "--multimask",
            "--checkpoint",
            str(test_checkpoint),
            "-o",
            str(out),
        ]
    )
    assert code == 0
    result = json.loads((out / "pic.json").read_text())
    assert len(result["masks"]) == 3
    scores = [m["predicted_iou"] for m in result["masks"]]
    assert scores == sorted(scores, reverse=True)
    for m in result["masks"]:
        png = np.array(Image.open(out / m["file"])) > 0
        assert png.shape == (48, 64)
        assert np.array_equal(decode_rle(m["segmentation"]), png)
        assert m["area"] == int(png.sum())
    assert result["prompts"]["labels"] == [1, 0]
    overlay = np.array(Image.open(out / "pic_overlay.png"))
    assert overlay.shape == (48, 64, 3)
    assert np.array(Image.open(out / "pic_candidates.png")).shape == (48, 192, 3)
    assert "predicted IoU" in capsys.readouterr().out


def test_segment_box_single_mask(image_path: Path, test_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    assert (
        main(
            [
                "segment",
                str(image_path),
                "--box",
                "5,5,40,30",
                "--checkpoint",
                str(test_checkpoint),
                "-o",
                str(out),
            ]
        )
        == 0
    )
    result = json.loads((out / "pic.json").read_text())
    assert len(result["masks"]) == 1 and (out / "pic_mask.png").is_file()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "at least one --point"),
        (["--point", "1"], "expected X,Y"),
        (["--point", "a,b"], "numbers"),
        (["--point", "1,2,5"], "LABEL must be 1"),
        (["--point", "500,2"], "outside"),
        (["--box", "1,2,3"], "four numbers"),
        (["--box", "30,30,10,10"], "x0<=x1"),
    ],
)
def test_segment_bad_input_one_line_error(
    image_path: Path, test_checkpoint: Path, tmp_path: Path, capsys, extra, message
) -> None:
    code = main(
        [
            "segment",
            str(image_path),
            "--checkpoint",
            str(test_checkpoint),
            "-o",
            str(tmp_path / "o"),
            *extra,
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("anyseg segment: error:") and message in err
    assert err.count("\n") == 1  # one line, no traceback


def test_segment_bad_image_and_checkpoint(tmp_path: Path, test_checkpoint: Path, capsys) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    assert (
        main(
            [
                "segment",
                str(bad),
                "--point",
                "1,1",
                "--checkpoint",
                str(test_checkpoint),
                "-o",
                str(tmp_path),
            ]
        )
        == 1
    )
    assert "not a readable image" in capsys.readouterr().err
    img = tmp_path / "ok.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(img)
    assert (
        main(["segment", str(img), "--point", "1,1", "--checkpoint", str(bad), "-o", str(tmp_path)])
        == 1
    )
    assert "not a readable PyTorch checkpoint" in capsys.readouterr().err


def test_info(test_checkpoint: Path, capsys) -> None:
    assert main(["info", str(test_checkpoint)]) == 0
    out = capsys.readouterr().out
    assert "2 blocks, width 32, 2 heads" in out
    assert "global blocks [1]" in out and "256x256 -> embedding 32x16x16" in out
    from .. import conftest

    n = sum(p.numel() for p in conftest.make_test_model().parameters())
    assert f"{n:,}" in out


def test_download_offline_fails_fast(tmp_path: Path, capsys) -> None:
    code = main(
        [
            "download",
            "vit_b",
            "-o",
            str(tmp_path),
            "--url",
            "http://127.0.0.1:9/x.pth",
            "--timeout",
            "2",
        ]
    )
    assert code == 1
    assert "cannot download" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_console_script_help() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "anyseg.cli.main", "segment", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--point X,Y[,LABEL]" in out and "--multimask" in out


def test_python_dash_m_anyseg() -> None:
    from anyseg import __version__

    done = subprocess.run(
        [sys.executable, "-m", "anyseg", "--version"], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == __version__
