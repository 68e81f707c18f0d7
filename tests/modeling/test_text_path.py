"""The prompt encoder's optional text path: one sparse token from a CLIP embedding."""

from __future__ import annotations

import pytest
import torch

from anyseg.config import PRESETS
from anyseg.errors import InvalidInputError
from anyseg.modeling import build_sam

from .._text import CLIP_WIDTH, make_text_model


def test_no_text_keys_unless_asked() -> None:
    keys = build_sam(PRESETS["test"]).state_dict()
    assert not [k for k in keys if "text" in k]
    with_text = make_text_model().state_dict()
    extra = sorted(set(with_text) - set(keys))
    assert extra == [
        "prompt_encoder.text_embed.weight",
        "prompt_encoder.text_mlp.layers.0.bias",
        "prompt_encoder.text_mlp.layers.0.weight",
        "prompt_encoder.text_mlp.layers.1.bias",
        "prompt_encoder.text_mlp.layers.1.weight",
    ]
    assert tuple(with_text["prompt_encoder.text_mlp.layers.0.weight"].shape) == (32, CLIP_WIDTH)


def test_text_token_is_appended_after_points_and_box() -> None:
    model = make_text_model()
    pe = model.prompt_encoder
    text = torch.nn.functional.normalize(torch.randn(2, CLIP_WIDTH), dim=-1)
    points = (torch.tensor([[[10.0, 20.0]], [[30.0, 40.0]]]), torch.ones(2, 1, dtype=torch.int))
    boxes = torch.tensor([[5.0, 5.0, 50.0, 60.0], [0.0, 0.0, 20.0, 20.0]])
    alone, dense = pe(None, None, None, text=text)
    assert alone.shape == (2, 1, 32) and dense.shape == (2, 32, 16, 16)
    # the unit-norm embedding scaled to unit-size elements, the MLP, the type embedding
    expected = pe.text_mlp(text * CLIP_WIDTH**0.5) + pe.text_embed.weight
    torch.testing.assert_close(alone[:, 0], expected)
    with_points, _ = pe(points, None, None, text=text)
    plain, _ = pe(points, None, None)
    assert with_points.shape == (2, 3, 32)  # point, padding point, text
    torch.testing.assert_close(with_points[:, :2], plain)
    torch.testing.assert_close(with_points[:, 2], alone[:, 0])
    with_box, _ = pe(points, boxes, None, text=text)
    assert with_box.shape == (2, 4, 32)  # point, two corners, text
    # The token reaches the masks, and gradients reach the MLP.
    low, _ = model.decode(torch.randn(1, 32, 16, 16), alone, dense, True)
    low.sum().backward()
    assert pe.text_mlp.layers[0].weight.grad is not None


def test_text_on_a_model_without_the_path_and_wrong_widths() -> None:
    model = build_sam(PRESETS["test"])
    with pytest.raises(InvalidInputError, match="no text path"):
        model.prompt_encoder(None, None, None, text=torch.randn(1, CLIP_WIDTH))
    with pytest.raises(InvalidInputError, match=f"must be \\(B, {CLIP_WIDTH}\\)"):
        make_text_model().prompt_encoder(None, None, None, text=torch.randn(1, CLIP_WIDTH + 1))
