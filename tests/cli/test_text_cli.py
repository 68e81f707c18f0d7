"""Text prompts through the commands: ``segment --text``, ``auto --label-vocab``, ``--clip``,
and the one-line errors a user meets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anyseg.checkpoint import save
from anyseg.cli.main import main
from anyseg.clip import load_clip

from .._text import make_text_model, write_tiny_clip


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny_clip.safetensors")


@pytest.fixture(scope="module")
def text_checkpoint(tmp_path_factory: pytest.TempPathFactory, clip_file: Path) -> Path:
    model = make_text_model(clip_sha256=load_clip(clip_file).sha256)
    return save(model, tmp_path_factory.mktemp("ckpt") / "text_model.safetensors")


@pytest.fixture()
def image_path(tmp_path: Path) -> Path:
    img = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    img[10:30, 10:40] = (240, 220, 40)
    path = tmp_path / "pic.png"
    Image.fromarray(img).save(path)
    return path


def test_segment_text(
    image_path: Path, text_checkpoint: Path, clip_file: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "out"
    args = ["segment", str(image_path), "--text", "the yellow star", "--multimask"]
    args += ["--checkpoint", str(text_checkpoint), "--clip", str(clip_file), "-o", str(out)]
    assert main(args) == 0
    result = json.loads((out / "pic.json").read_text())
    assert result["prompts"]["text"] == "the yellow star" and len(result["masks"]) == 3
    assert np.array(Image.open(out / "pic_overlay.png")).shape == (48, 64, 3)
    # With a point as well: one mask.
    single = [a for a in args[:-2] if a != "--multimask"]
    assert main([*single, "--point", "20,15", "-o", str(tmp_path / "o2")]) == 0
    assert len(json.loads((tmp_path / "o2" / "pic.json").read_text())["masks"]) == 1
    assert "predicted IoU" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "text prompts must be non-empty"),
        ("the yelow star", "unknown word 'yelow'"),
    ],
)
def test_segment_text_errors(
    image_path: Path, text_checkpoint: Path, clip_file: Path, tmp_path: Path, capsys, text, message
) -> None:
    code = main(
        [
            "segment",
            str(image_path),
            "--text",
            text,
            "--checkpoint",
            str(text_checkpoint),
            "--clip",
            str(clip_file),
            "-o",
            str(tmp_path / "o"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 1 and message in err and len(err.splitlines()) == 1


def test_text_on_a_model_without_a_path_or_with_a_clip_of_another_width(
    image_path: Path, test_checkpoint: Path, text_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    code = main(
        [
            "segment",
            str(image_path),
            "--text",
            "a star",
            "--checkpoint",
            str(test_checkpoint),
            "-o",
            str(tmp_path / "o"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and "no text path" in err and "prompts.text_prob" in err
    from anyseg.clip import ClipConfig, ClipModel, WordTokenizer, save_clip

    wide = save_clip(
        ClipModel(ClipConfig(embed_dim=16)),
        WordTokenizer(["a", "star"]),
        tmp_path / "w.safetensors",
    )
    code = main(
        [
            "segment",
            str(image_path),
            "--text",
            "a star",
            "--checkpoint",
            str(text_checkpoint),
            "--clip",
            str(wide),
            "-o",
            str(tmp_path / "o"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and "16-wide" in err and "24-wide" in err


def test_auto_label_vocab(
    image_path: Path, test_checkpoint: Path, clip_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "auto"
    vocab = "the yellow star,a red ellipse,the striped bar"
    code = main(
        [
            "auto",
            str(image_path),
            "-o",
            str(out),
            "--checkpoint",
            str(test_checkpoint),
            "--clip",
            str(clip_file),
            "--label-vocab",
            vocab,
            "--points-per-side",
            "4",
            "--pred-iou-thresh",
            "0",
            "--stability-score-thresh",
            "0",
        ]
    )
    assert code == 0
    anns = json.loads((out / "pic.json").read_text())["annotations"]
    assert anns and all(a["label"] in vocab.split(",") for a in anns)
    assert all(0 < a["label_score"] <= 1 for a in anns)
    from anyseg.data.sa1b import read_image_record

    record = read_image_record(out / "pic.json")
    assert record.annotations[0].label_score == anns[0]["label_score"]
    plain = tmp_path / "plain"
    main(
        [
            "auto",
            str(image_path),
            "-o",
            str(plain),
            "--checkpoint",
            str(test_checkpoint),
            "--points-per-side",
            "4",
            "--pred-iou-thresh",
            "0",
            "--stability-score-thresh",
            "0",
        ]
    )
    labelled = np.array(Image.open(out / "pic_overlay.png"))
    unlabelled = np.array(Image.open(plain / "pic_overlay.png"))
    assert not np.array_equal(labelled, unlabelled)  # the labels are drawn
    assert "label" not in json.loads((plain / "pic.json").read_text())["annotations"][0]
