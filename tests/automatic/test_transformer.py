"""The re-associated two-way transformer equals the model's, in both its folded branches."""

from __future__ import annotations

import pytest
import torch

from anyseg.automatic.transformer import two_way_transformer
from anyseg.modeling.transformer import TwoWayTransformer


def perturbed_transformer(embedding_dim: int, num_heads: int, downsample: int) -> TwoWayTransformer:
    torch.manual_seed(0)
    tr = TwoWayTransformer(
        depth=2,
        embedding_dim=embedding_dim,
        num_heads=num_heads,
        mlp_dim=64,
        attention_downsample_rate=downsample,
    ).eval()
    with torch.no_grad():
        for p in tr.parameters():
            p.add_(0.2 * torch.randn_like(p))  # non-trivial biases and norms
    return tr


@pytest.mark.parametrize("image_batch", [1, 5], ids=["shared-image", "per-prompt-image"])
@pytest.mark.parametrize(
    ("dim", "heads", "down"), [(64, 2, 1), (32, 8, 2)], ids=["folded", "plain"]
)
def test_equals_the_model_transformer(image_batch: int, dim: int, heads: int, down: int) -> None:
    tr = perturbed_transformer(dim, heads, down)
    g = torch.Generator().manual_seed(1)
    image = torch.randn(image_batch, dim, 6, 7, generator=g) * 2
    pe = torch.randn(1, dim, 6, 7, generator=g)
    tokens = torch.randn(5, 7, dim, generator=g)
    with torch.inference_mode():
        ref_tokens, ref_image = tr(image, pe, tokens)
        tok, img = two_way_transformer(tr, image, pe, tokens)
    assert tok.shape == ref_tokens.shape and img.shape == ref_image.shape == (5, 42, dim)
    torch.testing.assert_close(tok, ref_tokens, atol=5e-5, rtol=1e-4)
    torch.testing.assert_close(img, ref_image, atol=5e-5, rtol=1e-4)
