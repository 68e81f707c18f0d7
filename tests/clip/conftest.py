"""Tiny CLIPs with random weights, and the OpenAI key layout they must follow."""

from __future__ import annotations

import pytest
import torch

from anyseg.clip import ClipConfig, ClipModel, TextConfig, VisionConfig


def tiny_config(
    vocab_size: int = 49408, activation: str = "quick_gelu", heads: int = 1, vision_layers: int = 2
) -> ClipConfig:
    """32 px crops, 8 px patches, 64-wide towers (one head of OpenAI's width 64 by default)."""
    return ClipConfig(
        embed_dim=40,
        vision=VisionConfig(
            image_size=32, patch_size=8, width=64, layers=vision_layers, heads=heads, mlp_dim=128
        ),
        text=TextConfig(
            context_length=12, vocab_size=vocab_size, width=64, layers=2, heads=heads, mlp_dim=96
        ),
        activation=activation,  # type: ignore[arg-type]
    )


def random_clip(seed: int = 0, **kw) -> ClipModel:
    torch.manual_seed(seed)
    model = ClipModel(tiny_config(**kw))
    with torch.no_grad():
        for p in model.parameters():  # biases and norms away from 0/1, so every weight matters
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


@pytest.fixture()
def clip_model() -> ClipModel:
    return random_clip()
