"""The CLIP modules: OpenAI key layout, config from shapes, towers, masked attention."""

from __future__ import annotations

import pytest
import torch

from anyseg.clip import ClipConfig, ClipModel, config_from_state_dict, patch_mask
from anyseg.errors import CheckpointError, InvalidInputError

from .conftest import random_clip, tiny_config

# Every key of OpenAI's ViT CLIP state dict for 2 image and 2 text blocks (clip/model.py's names).
_BLOCK = [
    "ln_1.weight",
    "ln_1.bias",
    "attn.in_proj_weight",
    "attn.in_proj_bias",
    "attn.out_proj.weight",
    "attn.out_proj.bias",
    "ln_2.weight",
    "ln_2.bias",
    "mlp.c_fc.weight",
    "mlp.c_fc.bias",
    "mlp.c_proj.weight",
    "mlp.c_proj.bias",
]
OPENAI_KEYS = {
    "visual.conv1.weight",
    "visual.class_embedding",
    "visual.positional_embedding",
    "visual.ln_pre.weight",
    "visual.ln_pre.bias",
    "visual.ln_post.weight",
    "visual.ln_post.bias",
    "visual.proj",
    "token_embedding.weight",
    "positional_embedding",
    "ln_final.weight",
    "ln_final.bias",
    "text_projection",
    "logit_scale",
    *(f"visual.transformer.resblocks.{i}.{k}" for i in range(2) for k in _BLOCK),
    *(f"transformer.resblocks.{i}.{k}" for i in range(2) for k in _BLOCK),
}


def test_state_dict_has_the_openai_layout(clip_model: ClipModel) -> None:
    sd = clip_model.state_dict()
    assert set(sd) == OPENAI_KEYS
    c = clip_model.config
    assert tuple(sd["visual.conv1.weight"].shape) == (64, 3, 8, 8)
    assert tuple(sd["visual.positional_embedding"].shape) == (c.vision.grid**2 + 1, 64)
    assert tuple(sd["visual.proj"].shape) == (64, 40)  # (W, E), OpenAI's orientation
    assert tuple(sd["text_projection"].shape) == (64, 40)
    assert tuple(sd["transformer.resblocks.0.attn.in_proj_weight"].shape) == (3 * 64, 64)
    assert sd["logit_scale"].shape == ()
    assert torch.isclose(sd["logit_scale"], torch.log(torch.tensor(1 / 0.07)), atol=0.2)


@pytest.mark.parametrize("heads", [1, 2, 4])
def test_config_from_shapes(heads: int) -> None:
    cfg = tiny_config(heads=heads, vocab_size=300)
    sd = ClipModel(cfg).state_dict()
    assert config_from_state_dict(sd, head_width=64 // heads) == cfg
    assert config_from_state_dict(sd, heads=(heads, heads)) == cfg
    gelu = config_from_state_dict(sd, head_width=64 // heads, activation="gelu")
    assert gelu.activation == "gelu"
    assert ClipConfig.from_dict(cfg.to_dict()) == cfg


def test_config_from_shapes_errors() -> None:
    sd = ClipModel(tiny_config(vocab_size=300)).state_dict()
    with pytest.raises(CheckpointError, match="not multiples of the head width"):
        config_from_state_dict(sd, head_width=48)
    del sd["ln_final.weight"]
    with pytest.raises(CheckpointError, match=r"ln_final\.weight"):
        config_from_state_dict(sd)
    with pytest.raises(CheckpointError, match="ResNet"):
        config_from_state_dict({"visual.layer1.0.conv1.weight": torch.zeros(1)})
    with pytest.raises(InvalidInputError, match="not divisible"):
        tiny_config(heads=3)


def test_towers_and_forward(clip_model: ClipModel) -> None:
    pixels = torch.randn(3, 3, 32, 32)
    tokens = torch.tensor([[49406, 736, 49407, 0], [49406, 320, 1125, 49407]])
    out = clip_model(pixels, tokens)
    assert out.image_embeds.shape == (3, 40) and out.text_embeds.shape == (2, 40)
    # Pooling is at the end-of-text token: what follows it (padding) changes nothing.
    padded = torch.tensor([[49406, 736, 49407, 5, 9, 9]])
    torch.testing.assert_close(clip_model.encode_text(padded)[0], out.text_embeds[0])
    # Causal: the state at the end token depends on the tokens before it.
    other = torch.tensor([[49406, 737, 49407, 0]])
    assert not torch.allclose(clip_model.encode_text(other)[0], out.text_embeds[0])
    out.image_embeds.sum().backward()  # differentiable (no no_grad inside)
    assert clip_model.visual.conv1.weight.grad is not None
    with pytest.raises(InvalidInputError, match="expected pixels"):
        clip_model.encode_image(torch.randn(1, 3, 16, 16))
    with pytest.raises(InvalidInputError, match="token ids"):
        clip_model.encode_text(torch.zeros(1, 13, dtype=torch.long))


def test_patch_mask_from_crop_masks() -> None:
    masks = torch.zeros(2, 32, 32, dtype=torch.bool)
    masks[0, :16, :16] = True  # exactly the top-left 2x2 patches of the 4x4 grid
    masks[1, 0, 0] = True  # one pixel: the best-covered patch is kept anyway
    grid = patch_mask(masks, 4)
    expected = torch.zeros(2, 4, 4, dtype=torch.bool)
    expected[0, :2, :2] = True
    expected[1, 0, 0] = True
    assert torch.equal(grid, expected)
    half = torch.zeros(1, 32, 32)
    half[0, :4, :8] = 1.0  # half of patch (0, 0)
    assert patch_mask(half, 4)[0, 0, 0] and patch_mask(half, 4).sum() == 1


def test_masked_attention_ignores_patches_outside_the_mask() -> None:
    """With one image block, the class output depends only on the masked patches' pixels."""
    model = random_clip(vision_layers=1)
    pixels = torch.randn(1, 3, 32, 32)
    mask = torch.zeros(1, 32, 32, dtype=torch.bool)
    mask[0, 8:24, 8:24] = True  # the 2x2 centre patches of the 4x4 grid
    changed = pixels.clone()
    changed[..., :8, :] = torch.randn(1, 3, 8, 32)  # the top row of patches only
    with torch.no_grad():
        a = model.encode_image(pixels, mask)
        b = model.encode_image(changed, mask)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
        assert not torch.allclose(model.encode_image(pixels), model.encode_image(changed))
        inside = pixels.clone()
        inside[..., 8:16, 8:16] += 1.0
        assert not torch.allclose(model.encode_image(inside, mask), a)


def test_masked_attention_in_the_last_block_of_a_deep_tower(clip_model: ClipModel) -> None:
    """In a deeper tower the restriction is the last block's: perturbing the tokens of patches
    outside the mask at that block's input leaves the class output unchanged."""
    pixels = torch.randn(2, 3, 32, 32)
    grid = torch.zeros(2, 4, 4, dtype=torch.bool)
    grid[:, 1:3, 1:3] = True
    outside = torch.cat([torch.zeros(1, dtype=torch.bool), ~grid[0].flatten()])  # (T,)

    def perturb(_module, args):
        (x,) = args[:1]
        return (x + 3.0 * outside[None, :, None] * torch.randn_like(x), *args[1:])

    last = clip_model.visual.transformer.resblocks[-1]
    with torch.no_grad():
        base = clip_model.encode_image(pixels, grid)
        handle = last.register_forward_pre_hook(perturb)
        try:
            masked = clip_model.encode_image(pixels, grid)
            unmasked = clip_model.encode_image(pixels)
        finally:
            handle.remove()
        plain = clip_model.encode_image(pixels)
    torch.testing.assert_close(masked, base, rtol=0, atol=1e-5)
    assert not torch.allclose(unmasked, plain, atol=1e-3)
