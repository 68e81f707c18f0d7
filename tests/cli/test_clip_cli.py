"""``anyseg clip train`` and ``anyseg clip eval`` through the real entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from anyseg.cli.main import main
from anyseg.data.synthetic import SynthConfig, write_dataset

TINY_TOML = """
[model]
embed_dim = 32
activation = "gelu"
[model.vision]
image_size = 32
patch_size = 8
width = 64
layers = 1
heads = 1
mlp_dim = 128
[model.text]
width = 64
layers = 1
heads = 1
mlp_dim = 128
[run]
batch_size = 16
log_every = 1
checkpoint_every = 2
device = "cpu"
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("clipcli") / "synth"
    write_dataset(
        root,
        4,
        seed=2,
        config=SynthConfig(height=128, width=128, max_objects=12),
        workers=1,
        progress=False,
    )
    return root


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_train_resume_eval(data: Path, tmp_path: Path, capsys) -> None:
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_TOML)
    out = tmp_path / "run"
    args = [
        "clip",
        "train",
        "--config",
        str(config),
        "--data",
        str(data),
        "--val",
        str(data),
        "--out",
        str(out),
        "--steps",
        "2",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "step 2/2" in printed and "held-out: colour" in printed
    assert (out / "clip.safetensors").is_file() and (out / "eval.csv").is_file()
    assert main(["clip", "train", "--resume", str(out), "--steps", "4", "--quiet"]) == 0
    assert len((out / "metrics.csv").read_text().splitlines()) == 5
    report_dir = tmp_path / "eval"
    code = main(
        [
            "clip",
            "eval",
            str(data),
            "--clip",
            str(out / "clip.safetensors"),
            "-o",
            str(report_dir),
            "--max-images",
            "3",
            "--forms",
            "full,short",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "retrieval R@1" in printed and "colour" in printed
    report = json.loads((report_dir / "report.json").read_text())
    assert set(report["attribute_accuracy"]) == {"colour", "fill", "shape"}
    assert isinstance(report["retrieval_r1"], float) and report["data"]["images"] == 3
    assert report["config"]["forms"] == ["full", "short"]
    assert (report_dir / "clip_eval.png").is_file()


def test_clear_errors(data: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[run]\nstepz = 3\n")
    assert main(["clip", "train", "--config", str(bad), "--data", str(data)]) == 1
    assert "stepz" in capsys.readouterr().err
    plain = tmp_path / "plain"
    (plain / "images").mkdir(parents=True)
    (plain / "annotations").mkdir()
    for p in sorted((data / "images").iterdir())[:1]:
        (plain / "images" / p.name).write_bytes(p.read_bytes())
        ann = json.loads((data / "annotations" / f"{p.stem}.json").read_text())
        for a in ann["annotations"]:
            a.pop("attributes")
        (plain / "annotations" / f"{p.stem}.json").write_text(json.dumps(ann))
    assert main(["clip", "eval", str(data), "--clip", "x.safetensors", "-o", str(tmp_path)]) == 1
    assert "not found" in capsys.readouterr().err
    from anyseg.clip import (
        ClipConfig,
        ClipModel,
        TextConfig,
        VisionConfig,
        WordTokenizer,
        save_clip,
    )
    from anyseg.data.captions import vocabulary

    words = vocabulary()
    tiny = ClipConfig(
        embed_dim=16,
        vision=VisionConfig(image_size=16, patch_size=8, width=64, layers=1, heads=1, mlp_dim=64),
        text=TextConfig(vocab_size=len(words) + 3, width=64, layers=1, heads=1, mlp_dim=64),
    )
    clip_file = save_clip(ClipModel(tiny), WordTokenizer(words), tmp_path / "c.safetensors")
    assert main(["clip", "eval", str(plain), "--clip", str(clip_file), "-o", str(tmp_path)]) == 1
    assert "no mask has attributes" in capsys.readouterr().err
    ckpt = tmp_path / "ViT.pt"
    scripted = torch.jit.script(torch.nn.Linear(2, 2))
    scripted.save(str(ckpt))
    assert main(["clip", "eval", str(data), "--clip", str(ckpt), "-o", str(tmp_path)]) == 1
    assert "--clip-allow-torchscript" in capsys.readouterr().err
