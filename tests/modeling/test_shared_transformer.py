"""The re-associated two-way transformer equals the model's (shared first block, folded later
blocks), and folding is only chosen where it saves work."""

from __future__ import annotations

import itertools

import pytest
import torch

from anyseg.modeling.shared_transformer import folding_pays, prepare_image_side, two_way_transformer
from anyseg.modeling.transformer import TwoWayTransformer
from anyseg.ops.threads import FEW_TOKENS


def perturbed_transformer(
    embedding_dim: int, heads: int, downsample: int, depth: int
) -> TwoWayTransformer:
    torch.manual_seed(0)
    tr = TwoWayTransformer(
        depth=depth,
        embedding_dim=embedding_dim,
        num_heads=heads,
        mlp_dim=64,
        attention_downsample_rate=downsample,
    ).eval()
    with torch.no_grad():
        for p in tr.parameters():
            p.add_(0.2 * torch.randn_like(p))  # non-trivial biases and norms
    return tr


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("prompts", [1, 5])  # the token ops on one thread (FEW_TOKENS), or not
def test_equals_the_model_transformer(depth: int, prompts: int, lanes: int) -> None:
    dim = 64
    tr = perturbed_transformer(dim, heads=2, downsample=1, depth=depth)
    assert folding_pays(tr, 7)
    g = torch.Generator().manual_seed(1)
    image = torch.randn(1, dim, 6, 7, generator=g) * 2
    pe = torch.randn(1, dim, 6, 7, generator=g)
    tokens = torch.randn(prompts, 7, dim, generator=g)
    with torch.inference_mode():
        ref_tokens, ref_image = tr(image, pe, tokens)
        tok, img = two_way_transformer(tr, prepare_image_side(tr, image, pe), tokens)
    assert tok.shape == ref_tokens.shape and img.shape == ref_image.shape == (prompts, 42, dim)
    torch.testing.assert_close(tok, ref_tokens, atol=5e-5, rtol=1e-4)
    torch.testing.assert_close(img, ref_image, atol=5e-5, rtol=1e-4)


def test_kept_tokens_are_those_of_the_full_run(lanes: int) -> None:
    """Only the tokens a caller reads go through the final attention, in the order asked."""
    dim = 64
    tr = perturbed_transformer(dim, heads=2, downsample=1, depth=2)
    g = torch.Generator().manual_seed(2)
    image, pe = torch.randn(1, dim, 5, 6, generator=g), torch.randn(1, dim, 5, 6, generator=g)
    tokens = torch.randn(3, 7, dim, generator=g)
    with torch.inference_mode():
        side = prepare_image_side(tr, image, pe)
        full, full_img = two_way_transformer(tr, side, tokens)
        kept, kept_img = two_way_transformer(tr, side, tokens, keep=[4, 0, 2])
    assert kept.shape == (3, 3, dim)
    torch.testing.assert_close(kept, full[:, [4, 0, 2]], atol=1e-6, rtol=0)
    torch.testing.assert_close(kept_img, full_img, atol=0, rtol=0)


def test_folding_is_skipped_for_tiny_decoders() -> None:
    assert not folding_pays(perturbed_transformer(32, heads=8, downsample=2, depth=2), 7)
    assert not folding_pays(perturbed_transformer(64, heads=2, downsample=1, depth=0), 7)


@pytest.mark.parametrize("prompts", [1, 2, 3])
def test_a_few_prompts_tokens_run_on_one_thread(prompts: int) -> None:
    """Up to FEW_TOKENS prompt tokens, the token-side ops run without worker threads (waking
    them costs more than the op); the products with the image cells keep all threads."""
    dim = 64
    tr = perturbed_transformer(dim, heads=2, downsample=1, depth=2)
    seen: list[int] = []
    for layer in tr.layers:
        layer.mlp.register_forward_hook(lambda *_: seen.append(torch.get_num_threads()))
    g = torch.Generator().manual_seed(3)
    image, pe = torch.randn(1, dim, 5, 6, generator=g), torch.randn(1, dim, 5, 6, generator=g)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with torch.inference_mode():
            side = prepare_image_side(tr, image, pe)
            two_way_transformer(tr, side, torch.randn(prompts, 7, dim, generator=g))
        after = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    serial = prompts * 7 <= FEW_TOKENS
    assert seen == [1 if serial else 2] * 2
    assert after == 2


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_partial_softmaxes_merge_to_the_whole_softmax(dtype: torch.dtype) -> None:
    """Merged parts are as close to the float64 truth as torch's own softmax in that dtype (for
    bfloat16: exponentials and sums in float32, as torch.softmax keeps them)."""
    from anyseg.modeling.shared_transformer import _PartialSoftmax

    torch.manual_seed(0)
    scores64 = 20 * torch.randn(4, 6, 4096, dtype=torch.float64)
    values64 = torch.randn(4, 4096, 32, dtype=torch.float64)
    scores, values = scores64.to(dtype), values64.to(dtype)
    truth = torch.softmax(scores.double(), dim=-1) @ values.double()
    cuts = [0, 1000, 2048, 4096]
    parts = [
        _PartialSoftmax.of(scores[..., a:b].clone(), values[:, a:b])
        for a, b in itertools.pairwise(cuts)
    ]
    assert all(p.top.dtype == p.total.dtype == torch.float32 for p in parts)
    merged = _PartialSoftmax.merge(parts, dtype)
    assert merged.dtype == dtype
    ours = (merged.double() - truth).abs().mean()
    theirs = ((torch.softmax(scores, dim=-1) @ values).double() - truth).abs().mean()
    assert ours <= 1.25 * theirs + 1e-7, (ours, theirs)
