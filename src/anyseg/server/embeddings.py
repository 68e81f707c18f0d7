"""Image embeddings for the annotation server: an in-memory LRU over an on-disk cache.

An embedding is computed once per (image content, model) pair and stored as
``<dir>/<sha256 of image bytes>-<model fingerprint>.safetensors``: reopening an image, restarting
the server or renaming the file all reuse it, and a different model never sees a stale one.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from anyseg.io import atomic_path

EmbeddingSource = Literal["memory", "disk", "computed"]


@dataclass(frozen=True)
class ImageEmbedding:
    """The encoder's output for one image.

    Attributes:
        features: (1, C, h, w) float32 image embedding (C = 256 for SAM; h = w = img_size / 16).
        original_size: (H, W) of the original image in pixels.
        input_size: (h, w) of the resized image in the model frame (long side = img_size).
        hq_features: (1, C/8, 4h, 4w) SAM-HQ's per-image HQ features (None for other models).
    """

    features: torch.Tensor
    original_size: tuple[int, int]
    input_size: tuple[int, int]
    hq_features: torch.Tensor | None = None


def state_dict_fingerprint(model: torch.nn.Module) -> str:
    """First 16 hex digits of a SHA-256 over the model's parameter names, shapes and values."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()[:16]


def file_fingerprint(path: Path) -> str:
    """First 16 hex digits of the SHA-256 of a checkpoint (file, or model folder's weights)."""
    from anyseg.checkpoint import sha256_file

    return sha256_file(path)[:16]


def _pair(text: str) -> tuple[int, int]:
    a, b = text.split(",")
    return int(a), int(b)


class EmbeddingCache:
    """LRU of ``capacity`` embeddings in memory, backed by every embedding on disk."""

    def __init__(self, directory: Path, model_fingerprint: str, capacity: int = 16) -> None:
        self.directory = Path(directory)
        self.model_fingerprint = model_fingerprint
        self.capacity = max(1, int(capacity))
        self._memory: OrderedDict[str, ImageEmbedding] = OrderedDict()
        self._lock = threading.Lock()

    def path(self, image_sha256: str) -> Path:
        return self.directory / f"{image_sha256}-{self.model_fingerprint}.safetensors"

    def where(self, image_sha256: str) -> Literal["memory", "disk"] | None:
        """Where the embedding of that image is held now, without loading it."""
        with self._lock:
            if image_sha256 in self._memory:
                return "memory"
        return "disk" if self.path(image_sha256).is_file() else None

    def get(self, image_sha256: str) -> tuple[ImageEmbedding | None, EmbeddingSource | None]:
        """The embedding and where it came from, or (None, None) when it must be computed."""
        with self._lock:
            emb = self._memory.get(image_sha256)
            if emb is not None:
                self._memory.move_to_end(image_sha256)
                return emb, "memory"
        emb = self._read(self.path(image_sha256))
        if emb is None:
            return None, None
        self._remember(image_sha256, emb)
        return emb, "disk"

    def put(self, image_sha256: str, emb: ImageEmbedding) -> None:
        """Keep the embedding in memory and write it to disk atomically."""
        self._remember(image_sha256, emb)
        self.directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path(image_sha256)) as tmp:
            tensors = {"features": emb.features}
            if emb.hq_features is not None:
                tensors["hq_features"] = emb.hq_features
            save_file(
                {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in tensors.items()},
                tmp,
                metadata={
                    "original_size": f"{emb.original_size[0]},{emb.original_size[1]}",
                    "input_size": f"{emb.input_size[0]},{emb.input_size[1]}",
                    "model": self.model_fingerprint,
                },
            )

    def _remember(self, key: str, emb: ImageEmbedding) -> None:
        with self._lock:
            self._memory[key] = emb
            self._memory.move_to_end(key)
            while len(self._memory) > self.capacity:
                self._memory.popitem(last=False)

    @staticmethod
    def _read(path: Path) -> ImageEmbedding | None:
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
            tensors = load_file(str(path))
            return ImageEmbedding(
                features=tensors["features"],
                original_size=_pair(meta["original_size"]),
                input_size=_pair(meta["input_size"]),
                hq_features=tensors.get("hq_features"),
            )
        except (OSError, KeyError, ValueError, SafetensorError):
            # A damaged cache file is dropped and the embedding computed again.
            path.unlink(missing_ok=True)
            return None
