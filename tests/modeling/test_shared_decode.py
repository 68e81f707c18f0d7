"""The shared-image decoder (tokens first, masks for chosen prompts) equals the model's own
mask decoder."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from anyseg.config import PRESETS, HQConfig, MaskDecoderConfig, PromptEncoderConfig
from anyseg.modeling import Sam
from anyseg.modeling.shared_decode import decode_low_res_masks, decode_tokens, prepare_image


@pytest.mark.parametrize(
    ("points", "chosen"), [(5, [1, 3, 4]), (1, [0])]
)  # many prompts, or one (split over lanes when there are threads)
def test_split_decoder_equals_the_model_decoder(
    test_model: Sam, lanes: int, points: int, chosen: list[int]
) -> None:
    torch.manual_seed(0)
    embedding = torch.randn(1, 32, 16, 16)
    xy = torch.rand(points, 2, dtype=torch.float64) * 256
    with torch.inference_mode():
        image = prepare_image(test_model, embedding, test_model.mask_decoder)
        tokens = decode_tokens(test_model, image, xy)
        low_res = decode_low_res_masks(test_model, tokens, torch.tensor(chosen))
        sparse, dense = test_model.prompt_encoder(
            points=(xy[:, None], torch.ones(points, 1, dtype=torch.int)), boxes=None, masks=None
        )
        ref_masks, ref_iou = test_model.mask_decoder(
            embedding, test_model.prompt_encoder.get_dense_pe(), sparse, dense, True
        )
    torch.testing.assert_close(tokens.iou_preds, ref_iou, atol=1e-6, rtol=0)
    torch.testing.assert_close(low_res, ref_masks[chosen], atol=1e-5, rtol=0)


def test_masks_split_over_lanes_equal_one_pass_bit_for_bit() -> None:
    """The output upscaling of one prompt, in one band per thread, gives the one-pass values."""
    model = perturbed(dataclasses.replace(PRESETS["test"]), seed=3).eval()
    torch.manual_seed(0)
    embedding = torch.randn(1, 32, 16, 16)
    got = {}
    before = torch.get_num_threads()
    try:
        with torch.inference_mode():
            image = prepare_image(model, embedding, model.mask_decoder)
            tokens = decode_tokens(model, image, torch.tensor([[40.0, 90.0]]).double())
        for threads in (1, 2, 3):  # one pass on one thread, two and three bands
            torch.set_num_threads(threads)
            with torch.inference_mode():
                got[threads] = decode_low_res_masks(model, tokens, torch.tensor([0]))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(got[2], got[1]) and torch.equal(got[3], got[1])


def perturbed(config, seed: int = 0) -> Sam:
    from anyseg.modeling import build_sam

    torch.manual_seed(seed)
    model = build_sam(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("hq_token_only", [False, True])
@pytest.mark.parametrize("preset", ["test_hq", "test_hq_tinyvit", "hq_wide"])
def test_split_decoder_equals_the_hq_decoder(preset: str, hq_token_only: bool) -> None:
    """SAM-HQ: one candidate per prompt (SAM's best multimask output plus the HQ mask), through
    the folded transformer where it pays ("hq_wide": SAM's decoder sizes) and the plain one."""
    if preset == "hq_wide":
        small = PRESETS["test_hq"]
        config = dataclasses.replace(
            small,
            image_encoder=dataclasses.replace(small.image_encoder, out_chans=256),
            prompt_encoder=PromptEncoderConfig(),
            mask_decoder=MaskDecoderConfig(mlp_dim=64),
            hq=HQConfig(hq_token_only=hq_token_only),
        )
    else:
        config = dataclasses.replace(PRESETS[preset], hq=HQConfig(hq_token_only=hq_token_only))
    model = perturbed(config)
    points = torch.rand(6, 2, dtype=torch.float64) * 256
    with torch.inference_mode():
        encoding = model.encode(torch.randn(1, 3, 256, 256))
        image = prepare_image(model, encoding.embedding, model.mask_decoder)
        tokens = decode_tokens(model, image, points)
        chosen = torch.tensor([0, 2, 5])
        low_res = decode_low_res_masks(model, tokens, chosen, hq_features=encoding.hq_features)
        sparse, dense = model.prompt_encoder(
            points=(points[:, None], torch.ones(6, 1, dtype=torch.int)), boxes=None, masks=None
        )
        ref_masks, ref_iou = model.decode(
            encoding.embedding, sparse, dense, True, encoding.hq_features
        )
    assert tokens.iou_preds.shape == (6, 1) and low_res.shape == (3, 1, 64, 64)
    torch.testing.assert_close(tokens.iou_preds, ref_iou, atol=1e-5, rtol=0)
    # rounding only: the folded transformer re-associates products (logits reach ~±130 here)
    scale = float(ref_masks.abs().max())
    torch.testing.assert_close(low_res, ref_masks[chosen], atol=1e-5 * max(10.0, scale), rtol=0)


def test_image_features_of_any_prompts_across_chunks() -> None:
    """Consecutive prompts of one chunk come back as a view, any other selection as a copy;
    both are the prompts' own features."""
    from anyseg.modeling.shared_decode import TokenOutputs

    feats = torch.arange(5 * 3 * 2, dtype=torch.float32).reshape(5, 3, 2)
    tokens = TokenOutputs(
        iou_preds=torch.zeros(5, 3),
        mask_tokens=torch.zeros(5, 3, 2),
        feature_chunks=(feats[:2], feats[2:4], feats[4:]),
        chunk=2,
        grid_hw=(1, 3),
    )
    for prompts in ([0, 1], [2, 3], [4], [1, 2], [3, 0], [0, 1, 2, 3, 4], [2]):
        torch.testing.assert_close(tokens.image_features(prompts), feats[prompts])
    assert tokens.image_features([2, 3]).data_ptr() == feats[2].data_ptr()  # no copy


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_in_place_activation_gives_the_modules_values_bit_for_bit(approximate: str) -> None:
    from torch import nn

    from anyseg.modeling.shared_decode import _activate_

    act = nn.GELU(approximate=approximate)
    x = torch.randn(300, 64, generator=torch.Generator().manual_seed(0)) * 4
    want = act(x)
    owned = x.clone()
    got = _activate_(act, owned)
    assert torch.equal(got, want)
    assert got.data_ptr() == owned.data_ptr()  # in place: no fresh buffer
    grad_x = x.clone().requires_grad_()
    out = _activate_(act, grad_x)  # with autograd: out of place, differentiable
    out.sum().backward()
    assert torch.equal(out.detach(), want) and grad_x.grad is not None
    relu = nn.ReLU()
    assert torch.equal(_activate_(relu, x.clone()), relu(x))  # other activations as given
