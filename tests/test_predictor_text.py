"""SamPredictor with text prompts: CLIP embeddings of phrases, alone or with other prompts, and
the errors a user meets (no text path, a CLIP of the wrong width, empty or unknown words)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from anyseg.clip import load_clip
from anyseg.errors import InvalidInputError
from anyseg.predictor import SamPredictor

from ._text import CLIP_WIDTH, make_text_model, write_tiny_clip
from .conftest import make_test_model


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny_clip.safetensors")


@pytest.fixture()
def predictor(clip_file: Path) -> SamPredictor:
    clip = load_clip(clip_file)
    p = SamPredictor(make_text_model(clip_sha256=clip.sha256), clip=clip)
    p.set_image(np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8))
    return p


def test_text_alone_and_with_points_box_and_mask(predictor: SamPredictor) -> None:
    masks, scores, low = predictor.predict(text="the yellow star")
    assert masks.shape == (3, 60, 80) and scores.shape == (3,) and low.shape == (3, 64, 64)
    emb = predictor.encode_text("the yellow star")
    assert emb.shape == (1, CLIP_WIDTH)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(1))
    # The same as giving the embedding itself, and as predict_torch.
    same, _, _ = predictor.predict(text_embedding=emb[0].numpy(), return_logits=True)
    logits, _, _ = predictor.predict(text="the yellow star", return_logits=True)
    np.testing.assert_array_equal(same, logits)
    batched, _, _ = predictor.predict_torch(None, None, text_embeddings=emb, return_logits=True)
    np.testing.assert_allclose(batched[0].numpy(), logits, atol=1e-5)
    # The phrase changes the answer; so do added points, a box and a mask.
    other, _, _ = predictor.predict(text="a red ellipse", return_logits=True)
    assert not np.allclose(other, logits)
    pts, _, _ = predictor.predict(
        point_coords=np.array([[10, 20]]),
        point_labels=np.array([1]),
        box=np.array([5, 5, 50, 40]),
        mask_input=low[:1],
        text="the yellow star",
        multimask_output=False,
        return_logits=True,
    )
    assert pts.shape == (1, 60, 80)
    plain, _, _ = predictor.predict(
        point_coords=np.array([[10, 20]]),
        point_labels=np.array([1]),
        box=np.array([5, 5, 50, 40]),
        mask_input=low[:1],
        multimask_output=False,
        return_logits=True,
    )
    assert not np.allclose(pts, plain)


def test_each_distinct_phrase_is_encoded_once(predictor: SamPredictor) -> None:
    embedder = predictor._embedder()
    for _ in range(3):
        predictor.predict(text="the yellow star")
    predictor.encode_text(["a red ellipse", "the yellow star", "a red ellipse"])
    assert embedder.encoded == 2


def test_batched_text_embeddings(predictor: SamPredictor) -> None:
    emb = predictor.encode_text(["the yellow star", "a red ellipse", "the blue blob"])
    boxes = torch.tensor([[0.0, 0.0, 60.0, 60.0]] * 3)
    masks, iou, _ = predictor.predict_torch(None, None, boxes, text_embeddings=emb)
    assert masks.shape == (3, 3, 60, 80) and iou.shape == (3, 3)
    one, _, _ = predictor.predict_torch(None, None, boxes[1:2], text_embeddings=emb[1:2])
    torch.testing.assert_close(one[0], masks[1])
    with pytest.raises(InvalidInputError, match="batch sizes differ"):
        predictor.predict_torch(None, None, boxes[:2], text_embeddings=emb)
    with pytest.raises(InvalidInputError, match=f"\\(B, {CLIP_WIDTH}\\)"):
        predictor.predict_torch(None, None, text_embeddings=emb[:, :5])
    with pytest.raises(InvalidInputError, match="NaN"):
        predictor.predict_torch(None, None, text_embeddings=emb * float("nan"))


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "non-empty"), ("   ", "non-empty"), ("the yelow star", "unknown word 'yelow'.*yellow")],
)
def test_bad_phrases(predictor: SamPredictor, text: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        predictor.predict(text=text)


def test_text_and_embedding_together_are_refused(predictor: SamPredictor) -> None:
    with pytest.raises(InvalidInputError, match="not both"):
        predictor.predict(text="a star", text_embedding=np.zeros(CLIP_WIDTH))


def test_a_model_without_a_text_path_says_how_to_get_one(clip_file: Path) -> None:
    p = SamPredictor(make_test_model(), clip=clip_file)
    p.set_image(np.zeros((32, 32, 3), np.uint8))
    for call in (
        lambda: p.predict(text="a star"),
        lambda: p.predict_torch(None, None, text_embeddings=torch.zeros(1, CLIP_WIDTH)),
    ):
        with pytest.raises(InvalidInputError, match=r"no text path.*prompts.text_prob"):
            call()


def test_a_clip_of_another_width_or_file(tmp_path: Path, clip_file: Path) -> None:
    from anyseg.clip import ClipConfig, ClipModel, WordTokenizer, save_clip

    other = save_clip(
        ClipModel(ClipConfig(embed_dim=16)),
        WordTokenizer(["a", "star"]),
        tmp_path / "w.safetensors",
    )
    p = SamPredictor(make_text_model(clip_sha256="f" * 64), clip=other)
    p.set_image(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(InvalidInputError, match=r"16-wide.*24-wide.*--clip.*ffffffffffff"):
        p.predict(text="a star")
    same_width = SamPredictor(make_text_model(clip_sha256="f" * 64), clip=clip_file)
    same_width.set_image(np.zeros((32, 32, 3), np.uint8))
    with pytest.warns(UserWarning, match="not the one this model's text path was trained with"):
        same_width.predict(text="a star")
