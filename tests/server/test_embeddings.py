"""Embedding cache: LRU in memory over safetensors files keyed by image hash and model."""

from __future__ import annotations

from pathlib import Path

import torch

from anyseg.modeling import Sam
from anyseg.server.embeddings import EmbeddingCache, ImageEmbedding, state_dict_fingerprint


def _emb(v: float) -> ImageEmbedding:
    return ImageEmbedding(torch.full((1, 4, 2, 2), v), (30, 40), (12, 16))


def test_lru_and_disk(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, "model1", capacity=2)
    assert cache.get("a") == (None, None) and cache.where("a") is None
    for key, v in (("a", 1.0), ("b", 2.0), ("c", 3.0)):
        cache.put(key, _emb(v))
    assert cache.where("c") == "memory" and cache.where("a") == "disk"  # "a" was evicted
    emb, source = cache.get("a")
    assert source == "disk" and emb is not None
    assert torch.equal(emb.features, _emb(1.0).features)
    assert emb.original_size == (30, 40) and emb.input_size == (12, 16)
    assert cache.get("a")[1] == "memory"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a-model1.safetensors",
        "b-model1.safetensors",
        "c-model1.safetensors",
    ]
    # Another model never sees these embeddings.
    assert EmbeddingCache(tmp_path, "model2").get("a") == (None, None)


def test_damaged_file_is_dropped(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, "m")
    cache.path("x").write_bytes(b"not safetensors")
    assert cache.get("x") == (None, None)
    assert not cache.path("x").exists()


def test_fingerprint_follows_weights(test_model: Sam) -> None:
    before = state_dict_fingerprint(test_model)
    assert state_dict_fingerprint(test_model) == before and len(before) == 16
    with torch.no_grad():
        next(test_model.parameters()).add_(1e-3)
    assert state_dict_fingerprint(test_model) != before
