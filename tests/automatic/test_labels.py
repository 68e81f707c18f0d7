"""Class labels of generated masks from CLIP on their crops (MaskLabeller, label_vocab)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from anyseg.automatic import AmgConfig
from anyseg.automatic.labels import MaskLabeller
from anyseg.automatic.records import MaskRecord
from anyseg.clip import load_clip
from anyseg.errors import InvalidInputError

from .._text import write_tiny_clip


@pytest.fixture(scope="module")
def labeller(tmp_path_factory: pytest.TempPathFactory) -> MaskLabeller:
    clip = load_clip(write_tiny_clip(tmp_path_factory.mktemp("clip") / "c.safetensors"))
    return MaskLabeller(clip, ["the yellow star", "a red ellipse", "the blue bar"])


def _scene() -> tuple[np.ndarray, list[MaskRecord]]:
    image = np.zeros((40, 50, 3), np.uint8)
    masks = [np.zeros((40, 50), bool) for _ in range(3)]
    masks[0][5:20, 5:20] = True
    masks[1][22:38, 10:45] = True
    image[masks[0]] = (240, 220, 40)
    image[masks[1]] = (205, 30, 35)
    return image, [MaskRecord.from_mask(m) for m in masks]


def test_every_mask_gets_a_phrase_and_a_probability(labeller: MaskLabeller) -> None:
    image, records = _scene()
    probs = labeller.scores(image, [r.mask() for r in records[:2]])
    assert probs.shape == (2, 3)
    torch.testing.assert_close(probs.sum(1), torch.ones(2))
    out = labeller.label(image, records)
    for r, p in zip(out[:2], probs, strict=True):
        assert r.label == labeller.vocabulary[int(p.argmax())]
        assert r.label_score == pytest.approx(float(p.max()))
        assert r.to_annotation(0).label == r.label
    assert out[2].label is None and out[2].area == 0  # an empty mask has nothing to name
    assert labeller.scores(image, []).shape == (0, 3)


def test_the_label_follows_the_best_score(
    labeller: MaskLabeller, monkeypatch: pytest.MonkeyPatch
) -> None:
    image, records = _scene()
    fixed = torch.tensor([[0.1, 0.2, 0.7], [0.6, 0.3, 0.1]])
    monkeypatch.setattr(labeller, "scores", lambda image, masks: fixed[: len(masks)])
    out = labeller.label(image, records[:2])
    assert [r.label for r in out] == ["the blue bar", "the yellow star"]
    assert [r.label_score for r in out] == pytest.approx([0.7, 0.6])


def test_vocabulary_checks(labeller: MaskLabeller) -> None:
    with pytest.raises(InvalidInputError, match="distinct non-empty"):
        AmgConfig(label_vocab=("star", "star"))
    with pytest.raises(InvalidInputError, match="distinct non-empty"):
        AmgConfig(label_vocab=("star", " "))
    assert AmgConfig(label_vocab=(" star ",)).label_vocab == ("star",)
    with pytest.raises(InvalidInputError, match="unknown word 'stra'"):
        MaskLabeller(labeller.clip, ["stra"])


def test_generator_labels_its_records(tmp_path: Path, test_model) -> None:
    from anyseg.automatic import SamAutomaticMaskGenerator

    clip = write_tiny_clip(tmp_path / "c.safetensors")
    cfg = AmgConfig(
        points_per_side=4, pred_iou_thresh=0, stability_score_thresh=0, label_vocab=("a star",)
    )
    records = SamAutomaticMaskGenerator(test_model, config=cfg, clip=clip).generate_records(
        _scene()[0]
    )
    assert records and all(r.label == "a star" and r.label_score == 1.0 for r in records)
    assert all(d["label"] == "a star" for d in SamAutomaticMaskGenerator(
        test_model, config=cfg, clip=clip).generate(_scene()[0]))  # fmt: skip
