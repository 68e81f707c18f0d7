"""The ViT encoder's chunked inference path equals its training path (fused attention)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from anyseg.config import PRESETS
from anyseg.modeling import build_sam, vit_inference
from anyseg.modeling.image_encoder import Attention, decomposed_rel_pos_bias


def _encoder(window_size: int = 6):
    """The "test" preset's ViT (16x16 grid, one global block) with perturbed weights and
    non-zero relative positions; windows of 6 need padding (16 = 2 * 6 + 4)."""
    cfg = PRESETS["test"]
    cfg = dataclasses.replace(
        cfg, image_encoder=dataclasses.replace(cfg.image_encoder, window_size=window_size)
    )
    torch.manual_seed(0)
    encoder = build_sam(cfg).image_encoder
    with torch.no_grad():
        for p in encoder.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return encoder.eval()


@pytest.mark.parametrize("budget", [vit_inference.CHUNK_BYTES, 4096])
def test_chunked_encoder_equals_the_fused_one(monkeypatch, budget: int) -> None:
    """Inference (chunked explicit attention, row-chunked MLP) and the differentiable path give
    the same embedding, also with chunks far smaller than one row of logits."""
    monkeypatch.setattr(vit_inference, "CHUNK_BYTES", budget)
    encoder = _encoder()
    x = torch.randn(2, 3, 256, 256)
    with torch.inference_mode():
        chunked = encoder(x)
    fused = encoder(x)  # grad mode: the training path
    assert fused.requires_grad and not chunked.requires_grad
    torch.testing.assert_close(chunked, fused.detach(), atol=2e-5, rtol=1e-5)


def test_chunked_attention_equals_the_explicit_form() -> None:
    """softmax((q * scale) k^T + bias_h + bias_w) v, the original's order of operations."""
    torch.manual_seed(0)
    b, h, w, heads, d = 2, 5, 7, 3, 8
    q, k, v = (torch.randn(b, h * w, heads, d) for _ in range(3))
    rel_h, rel_w = torch.randn(2 * h - 1, d), torch.randn(2 * w - 1, d)
    per_head = [t.permute(0, 2, 1, 3).reshape(b * heads, h * w, d) for t in (q, k, v)]
    bias = decomposed_rel_pos_bias(per_head[0], rel_h, rel_w, (h, w), (h, w))  # (B*nH, N, N)
    scale = d**-0.5
    explicit = ((per_head[0] * scale) @ per_head[1].transpose(1, 2) + bias).softmax(-1)
    explicit = (explicit @ per_head[2]).reshape(b, heads, h * w, d).permute(0, 2, 1, 3)

    attn = Attention(heads * d, heads, use_rel_pos=True, input_size=(h, w))
    with torch.no_grad():
        attn.rel_pos_h.copy_(rel_h)
        attn.rel_pos_w.copy_(rel_w)
        # the bias the chunked path builds, from the unscaled queries
        from anyseg.modeling.image_encoder import rel_pos_for

        grid = q.view(b, h, w, heads, d)
        bias_h = torch.einsum("bhwnc,hkc->bnhwk", grid, rel_pos_for(h, h, rel_h))
        bias_w = torch.einsum("bhwnc,wkc->bnhwk", grid, rel_pos_for(w, w, rel_w))
        rel_bias = (bias_h.reshape(b, heads, h * w, h), bias_w.reshape(b, heads, h * w, w))
        out = vit_inference.rel_pos_attention(q.clone(), k, v, scale, rel_bias)
    torch.testing.assert_close(out, explicit.reshape(b, h * w, heads * d), atol=1e-6, rtol=1e-5)


def test_no_intermediate_exceeds_the_budget(monkeypatch) -> None:
    """The largest tensor the inference path allocates stays within CHUNK_BYTES (besides the
    block's (tokens, C) activations themselves)."""
    encoder = _encoder(window_size=0)  # every block global: the largest logits
    x = torch.randn(1, 3, 256, 256)
    tokens_bytes = 16 * 16 * encoder.config.embed_dim * 4
    budget = 64 * 1024  # a 256-token grid of 2 heads: one row of logits is 2 KiB
    monkeypatch.setattr(vit_inference, "CHUNK_BYTES", budget)
    largest = 0

    def track(fn):
        def wrapped(*args, **kwargs):
            nonlocal largest
            out = fn(*args, **kwargs)
            largest = max(largest, out.numel() * out.element_size())
            return out

        return wrapped

    def hook(module, inputs, out) -> None:
        nonlocal largest
        largest = max(largest, out.numel() * out.element_size())

    monkeypatch.setattr(torch, "bmm", track(torch.bmm))  # attention logits and outputs
    for block in encoder.blocks:
        block.attn.qkv.register_forward_hook(hook)
        block.mlp.lin1.register_forward_hook(hook)  # the MLP's hidden layer
    with torch.inference_mode():
        encoder(x)
    assert 0 < largest <= max(budget, tokens_bytes)
