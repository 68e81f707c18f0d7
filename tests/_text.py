"""Tiny text-prompt models for the tests: a word-level CLIP that knows every caption word, and
the "test" SAM with a text path of that CLIP's width (random weights, written by the tests)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from anyseg.clip import ClipConfig, ClipModel, TextConfig, VisionConfig, WordTokenizer, save_clip
from anyseg.config import PRESETS, SamConfig, TextClipRecord
from anyseg.data.captions import vocabulary
from anyseg.modeling import Sam, build_sam

CLIP_WIDTH = 24


def tiny_word_clip(seed: int = 0) -> tuple[ClipModel, WordTokenizer]:
    """32 px crops, 8 px patches, 32-wide towers, 24-wide embeddings; every caption word."""
    words = vocabulary()
    config = ClipConfig(
        embed_dim=CLIP_WIDTH,
        vision=VisionConfig(image_size=32, patch_size=8, width=32, layers=2, heads=2, mlp_dim=64),
        text=TextConfig(
            context_length=12, vocab_size=len(words) + 3, width=32, layers=1, heads=2, mlp_dim=64
        ),
    )
    torch.manual_seed(seed)
    return ClipModel(config).eval(), WordTokenizer(words, context_length=12)


def write_tiny_clip(path: Path, seed: int = 0) -> Path:
    """The tiny word CLIP saved as anyseg's ``.safetensors`` (loads with ``load_clip``)."""
    model, tokenizer = tiny_word_clip(seed)
    return save_clip(model, tokenizer, path)


def text_config(width: int = CLIP_WIDTH) -> SamConfig:
    """The "test" preset with a text path for ``width``-wide CLIP embeddings."""
    base = PRESETS["test"]
    return dataclasses.replace(
        base, prompt_encoder=dataclasses.replace(base.prompt_encoder, text_embed_dim=width)
    )


def make_text_model(seed: int = 0, clip_sha256: str | None = None) -> Sam:
    """The "test" SAM with a text path, perturbed random weights, eval mode; records
    ``clip_sha256`` as its CLIP when given."""
    torch.manual_seed(seed)
    model = build_sam(text_config())
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    if clip_sha256 is not None:
        model.text_clip = TextClipRecord(clip_sha256, CLIP_WIDTH, "tiny clip")
    return model.eval()
