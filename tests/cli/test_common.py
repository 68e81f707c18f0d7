"""The shared ``--mode`` flag reaches the predictor of every command that runs one, and fast
mode says which arithmetic it took."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from anyseg.cli.main import main
from anyseg.precision import FastPath
from anyseg.predictor import SamPredictor

SIMULATED = FastPath("int8", "simulated probe: no fast bfloat16 here")


@pytest.fixture()
def modes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The mode of every SamPredictor built; the probe's verdict is simulated."""
    built: list[str] = []
    real = SamPredictor.__init__

    def init(
        self: SamPredictor, model: Any, mode: Any = "exact", fast_path: Any = None, **kw: Any
    ) -> None:
        built.append(mode)
        real(self, model, mode, fast_path, **kw)

    monkeypatch.setattr(SamPredictor, "__init__", init)
    monkeypatch.setattr("anyseg.predictor.choose_fast_path", lambda device_type: SIMULATED)
    return built


@pytest.fixture()
def image(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(folder / "pic.png")
    return folder / "pic.png"


def check(modes: list[str], err: str) -> None:
    assert modes and set(modes) == {"fast"}
    assert "fast mode: int8 linear layers" in err and "simulated probe" in err


def test_segment(
    modes: list[str], image: Path, test_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    args = ["segment", str(image), "--point", "10,10", "-o", str(tmp_path / "out")]
    assert main([*args, "--checkpoint", str(test_checkpoint), "--mode", "fast"]) == 0
    check(modes, capsys.readouterr().err)


def test_auto(modes: list[str], image: Path, test_checkpoint: Path, tmp_path: Path, capsys) -> None:
    args = ["auto", str(image), "-o", str(tmp_path / "out"), "--points-per-side", "2"]
    assert main([*args, "--checkpoint", str(test_checkpoint), "--mode", "fast"]) == 0
    check(modes, capsys.readouterr().err)


def test_eval(modes: list[str], image: Path, test_checkpoint: Path, tmp_path: Path, capsys) -> None:
    from anyseg.data.sa1b import record_from_masks, write_image_record

    root = image.parent.parent
    (root / "annotations").mkdir()
    mask = np.zeros((1, 40, 48), dtype=bool)
    mask[0, 5:20, 8:30] = True
    write_image_record(root / "annotations" / "pic.json", record_from_masks(mask, 1, "pic.png"))
    args = ["eval", str(root), "-o", str(tmp_path / "out"), "--protocols", "point", "--quiet"]
    assert main([*args, "--checkpoint", str(test_checkpoint), "--mode", "fast"]) == 0
    check(modes, capsys.readouterr().err)
    report = (tmp_path / "out" / "report.json").read_text()
    assert "fast mode: int8" in report  # the report says how the numbers were computed


def test_serve(
    modes: list[str], image: Path, test_checkpoint: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    import uvicorn

    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: None)
    args = ["serve", str(image.parent), "--port", "0", "--project", str(tmp_path / "p")]
    assert main([*args, "--checkpoint", str(test_checkpoint), "--mode", "fast"]) == 0
    check(modes, capsys.readouterr().err)
