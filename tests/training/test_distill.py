"""Encoder distillation (MobileSAM's recipe): a TinyViT learns a teacher's embeddings, keeps
its decoder, then fine-tunes with the mask losses."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from test_train import tiny_config

from anyseg.checkpoint import load, save
from anyseg.config import PRESETS
from anyseg.errors import InvalidInputError
from anyseg.modeling import build_sam
from anyseg.training.distill import student_of
from anyseg.training.loop import train


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A "test"-preset ViT SAM at 128 px (8x8 embedding) with perturbed random weights."""
    torch.manual_seed(0)
    base = PRESETS["test"]
    model = build_sam(replace(base, image_encoder=replace(base.image_encoder, img_size=128)))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return save(model, tmp_path_factory.mktemp("teacher") / "teacher.safetensors")


STUDENT = {"preset": "test_tinyvit", "image_encoder": {"img_size": 128}}


@pytest.mark.slow
def test_distills_then_fine_tunes(tmp_path: Path, tiny_dataset: Path, teacher: Path) -> None:
    cfg = tiny_config(
        tiny_dataset,
        tmp_path / "run",
        model=STUDENT,
        distill={
            "teacher": str(teacher),
            "steps": 40,
            "images_per_step": 3,
            "lr": 3e-3,
            "warmup_steps": 5,
            "save_every": 20,
        },
        run={"steps": 2},
    )
    result = train(cfg, progress=False)
    with (tmp_path / "run" / "distill.csv").open() as f:
        mse = [float(r["mse"]) for r in csv.DictReader(f)]
    assert len(mse) == 40
    assert sum(mse[-5:]) / 5 < 0.5 * sum(mse[:5]) / 5  # the student learns the embeddings
    distilled, t = load(tmp_path / "run" / "distilled.safetensors"), load(teacher)
    assert distilled.config.family == "mobile_sam"
    for name, value in t.mask_decoder.state_dict().items():  # the teacher's decoder, unchanged
        assert torch.equal(distilled.mask_decoder.state_dict()[name], value)
    # Then the mask-loss stage starts from the distilled weights and writes the final model.
    final = load(tmp_path / "run" / "model.safetensors")
    assert final.config == distilled.config and result.step == 2
    resolved = (tmp_path / "run" / "config.resolved.toml").read_text()
    assert "distilled.safetensors" in resolved  # the fine-tuning stage's init, recorded


def test_student_must_give_the_teachers_embedding(teacher: Path, tmp_path: Path) -> None:
    model = {"preset": "test_tinyvit", "image_encoder": {"img_size": 256}}
    cfg = tiny_config(tmp_path, tmp_path / "run", model=model)
    with pytest.raises(InvalidInputError, match="must be the teacher's"):
        student_of(load(teacher), cfg)  # 256 px student, 128 px teacher
