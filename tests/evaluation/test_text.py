"""The ``text`` protocol: queries that name one mask, its scores, files and errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from anyseg.checkpoint import save
from anyseg.cli.main import main
from anyseg.clip import load_clip
from anyseg.data.synthetic import SynthConfig, write_dataset
from anyseg.errors import InvalidInputError
from anyseg.evaluation import EvalConfig, evaluate, open_sa1b, write_outputs
from anyseg.evaluation.text import TEXT_SCORES, select_queries
from anyseg.predictor import SamPredictor

from .._text import make_text_model, write_tiny_clip
from ..conftest import make_test_model


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    write_dataset(
        root,
        3,
        seed=11,
        config=SynthConfig(height=96, width=96, max_objects=8),
        workers=1,
        progress=False,
    )
    return root


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny_clip.safetensors")


class ReferentPredictor:
    """Answers a phrase with the mask it names (a perfect text path), everything else with an
    empty mask; an image embedding (the image oracle) with the first mask of the image."""

    def __init__(self, clip: Any, answers: dict[str, np.ndarray], first: np.ndarray) -> None:
        self.clip = clip
        self.model = type("M", (), {"has_text": True})()
        self.answers = answers
        self.first = first
        self.calls: list[dict[str, Any]] = []

    def set_image(self, image: np.ndarray) -> None:
        pass

    def predict(self, **kw: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self.calls.append(kw)
        if kw.get("text") is not None:
            mask = self.answers[kw["text"]]
        elif kw.get("text_embedding") is not None:
            mask = self.first
        else:
            mask = np.zeros_like(self.first)
        n = 3 if kw.get("multimask_output", True) else 1
        masks = np.stack([mask] + [np.zeros_like(mask)] * (n - 1))
        return masks, np.linspace(0.9, 0.1, n), np.zeros((n, 64, 64), np.float32)


def test_queries_name_one_mask_and_perfect_answers_score_one(synth: Path, clip_file: Path) -> None:
    data = open_sa1b(synth, max_images=1)
    item = data.images[0]
    config = EvalConfig(protocols=("text",))
    queries = select_queries(item.record, config, 0)
    assert queries and {form for _, _, form in queries} <= {"full", "short"}
    assert all(text.startswith("the ") for _, text, _ in queries)
    answers = {text: item.record.annotations[i].decode() for i, text, _ in queries}
    first = item.record.annotations[queries[0][0]].decode()
    fake = ReferentPredictor(load_clip(clip_file), answers, first)
    from anyseg.evaluation.runner import evaluate as run

    result = run(fake, open_sa1b(synth, max_images=1), config, progress=False)
    scores = result.report.scores
    assert set(scores) == set(TEXT_SCORES)
    assert scores["text"].miou == 1.0 and scores["text_hit"].miou == 1.0
    assert scores["text_click"].miou == 1.0  # nothing to fix: no click, the IoU stands
    assert scores["text"].count == len(queries) == len(result.text_queries)
    assert 0 < scores["text_random_baseline"].miou < 0.5
    assert 0 < scores["text_image_oracle"].miou < 1.0  # the fake's oracle answers one mask
    assert result.report.calibration is not None
    assert "text" in result.report.calibration.by_protocol
    assert not result.masks  # no per-mask protocol ran


def test_a_real_model_end_to_end_and_the_files(
    synth: Path, clip_file: Path, tmp_path: Path
) -> None:
    clip = load_clip(clip_file)
    predictor = SamPredictor(make_text_model(clip_sha256=clip.sha256), clip=clip)
    config = EvalConfig(protocols=("point", "text"), max_masks_per_image=3, num_samples=4)
    result = evaluate(predictor, open_sa1b(synth), config, progress=False)
    s = result.report.scores
    assert "point" in s and "text" in s
    assert 0 <= s["text"].miou <= s["text_oracle"].miou <= 1
    assert s["text_hit"].miou in {k / s["text"].count for k in range(s["text"].count + 1)}
    per_image = {}
    for q in result.text_queries:
        per_image.setdefault(q.image_id, set()).add(q.annotation_id)
    assert all(len(ids) <= 3 for ids in per_image.values())  # max_masks_per_image referents
    written = write_outputs(result, tmp_path / "out")
    assert {"per_text.jsonl", "text_iou_hist.png", "text_samples.png"} <= set(written)
    rows = (tmp_path / "out" / "per_text.jsonl").read_text().splitlines()
    assert len(rows) == s["text"].count and "query" in json.loads(rows[0])
    assert any("CLIP" in n for n in result.report.notes)


def test_errors(synth: Path, clip_file: Path, tmp_path: Path) -> None:
    plain = SamPredictor(make_test_model(), clip=clip_file)
    with pytest.raises(InvalidInputError, match="no text path"):
        evaluate(plain, open_sa1b(synth), EvalConfig(protocols=("text",)), progress=False)
    with pytest.raises(InvalidInputError, match="text_forms"):
        EvalConfig(text_forms=("poetic",))
    # Data without attributes has no referring phrases.
    from ..training._scenes import make_sa1b_dataset

    bare = make_sa1b_dataset(tmp_path / "bare", num_images=1)
    text_model = SamPredictor(make_text_model(), clip=clip_file)
    with pytest.raises(InvalidInputError, match="attributes"):
        evaluate(text_model, open_sa1b(bare), EvalConfig(protocols=("text",)), progress=False)


def test_eval_cli_text_protocol(
    synth: Path, clip_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = save(make_text_model(), tmp_path / "text_model.safetensors")
    code = main(
        [
            "eval",
            str(synth),
            "--checkpoint",
            str(ckpt),
            "--clip",
            str(clip_file),
            "--protocols",
            "text",
            "--text-forms",
            "full,short,relational",
            "--max-images",
            "2",
            "--device",
            "cpu",
            "--quiet",
            "-o",
            str(tmp_path / "out"),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "text, hit rate (IoU >= 0.5)" in printed and "random mask of the image" in printed
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert set(report["scores"]) == set(TEXT_SCORES)
    assert set(report["scores"]["text"]) >= {"miou", "count"}
