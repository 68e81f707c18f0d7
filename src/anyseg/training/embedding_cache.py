"""Image embeddings of a frozen encoder, computed once per image and kept on disk.

When training only the prompt encoder and mask decoder (``optim.freeze_image_encoder``), the
image encoder's output for an input image never changes, and it is most of a step's work on a
CPU. :class:`EmbeddingCache` computes each embedding once and stores it as a float32 safetensors
file, keyed by

- the encoder's weights (a SHA-256 over its parameters and buffers: another model, or the same
  model after more training, never reads a stale embedding), and
- the exact input tensor (a SHA-256 of the normalized, padded, possibly flipped image the
  encoder would see: any change of resizing, normalization or augmentation is a new key).

A cached embedding is the one the encoder computes (same eval-mode arithmetic, stored in
float32), so a run with the cache gives the losses of a run without it (bit for bit with one
image per step; with several, up to the rounding of differently sized batched products). Files are
written atomically; a corrupt or foreign file is recomputed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from anyseg.io import atomic_path


def encoder_fingerprint(encoder: nn.Module) -> str:
    """SHA-256 (hex) of an encoder's parameters and buffers, names and shapes included."""
    digest = hashlib.sha256()
    for name, tensor in sorted(encoder.state_dict().items()):
        digest.update(name.encode("utf-8"))
        digest.update(str(tuple(tensor.shape)).encode("ascii"))
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def input_key(image: torch.Tensor) -> str:
    """SHA-256 (hex) of one (3, S, S) encoder input, as float32 bytes."""
    data = image.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
    return hashlib.sha256(data).hexdigest()


class EmbeddingCache:
    """On-disk embeddings of one frozen encoder (see the module docstring).

    Args:
        folder: where the files go (``<folder>/<encoder fingerprint[:16]>/<input
            key>.safetensors``); several runs and models may share it.
        encoder: the frozen image encoder.
    """

    def __init__(self, folder: str | Path, encoder: nn.Module) -> None:
        self.fingerprint = encoder_fingerprint(encoder)
        self.folder = Path(folder) / self.fingerprint[:16]
        self.folder.mkdir(parents=True, exist_ok=True)
        self.hits = 0
        self.misses = 0

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.safetensors"

    @torch.no_grad()
    def embed(self, encoder: nn.Module, images: torch.Tensor) -> torch.Tensor:
        """Embeddings (B, C, h, w) of the (B, 3, S, S) ``images``, from disk where present;
        the missing ones are computed in one encoder call (eval mode) and stored."""
        keys = [input_key(img) for img in images]
        found: dict[int, torch.Tensor] = {}
        for i, key in enumerate(keys):
            cached = self._read(self.path(key))
            if cached is not None:
                found[i] = cached
        missing = [i for i in range(len(keys)) if i not in found]
        if missing:
            was_training = encoder.training
            encoder.eval()
            computed = encoder(images[missing])  # (m, C, h, w)
            encoder.train(was_training)
            for j, i in enumerate(missing):
                emb = computed[j].detach().to("cpu", torch.float32).contiguous()
                found[i] = emb
                with atomic_path(self.path(keys[i])) as tmp:
                    save_file({"embedding": emb}, str(tmp), metadata={"encoder": self.fingerprint})
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        return torch.stack([found[i] for i in range(len(keys))]).to(images.device)

    def _read(self, path: Path) -> torch.Tensor | None:
        if not path.is_file():
            return None
        try:
            return load_file(str(path))["embedding"]
        except (SafetensorError, OSError, KeyError, ValueError):
            return None  # half-written by a killed run elsewhere, or foreign: recompute
