"""Text prompts for a SAM text path: CLIP embeddings of phrases, each encoded once, and the
check that a CLIP fits a model.

A model's text path takes L2-normalised CLIP embeddings of one width (the width of the CLIP it
was trained with, which the model records with that CLIP's SHA-256). :func:`check_clip_fits`
refuses a CLIP of another width with a message that names both, and warns when the widths agree
but the file is not the recorded one (a different CLIP of the same width gives embeddings the
text path never saw). :class:`TextEmbedder` keeps the embeddings of recent phrases, so a phrase
typed again (or a batch with repeats) runs the text tower once.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Sequence

import torch

from anyseg.clip.loading import LoadedClip
from anyseg.errors import InvalidInputError

#: What to say when text reaches a model without a text path.
NO_TEXT_PATH = (
    "this model has no text path, so it cannot take text prompts; use a checkpoint trained "
    "with text prompts (the bundled default model has one: drop --checkpoint), or fine-tune "
    "one with `anyseg train` and prompts.text_prob > 0 (README: Text prompts)"
)


def check_clip_fits(clip: LoadedClip, width: int, recorded_sha256: str | None) -> None:
    """Raise unless ``clip`` gives ``width``-wide embeddings; warn when it is not the CLIP the
    model recorded (``recorded_sha256``; None: the model records none).

    Raises:
        InvalidInputError: the widths differ.
    """
    if clip.embed_dim != width:
        recorded = f" (it records SHA-256 {recorded_sha256[:12]}...)" if recorded_sha256 else ""
        raise InvalidInputError(
            f"the CLIP {clip.source} gives {clip.embed_dim}-wide embeddings, but this model's "
            f"text path takes {width}-wide ones: pass the CLIP the model was trained with "
            f"(--clip FILE){recorded}"
        )
    if recorded_sha256 and clip.sha256 != recorded_sha256:
        warnings.warn(
            f"the CLIP {clip.source} (SHA-256 {clip.sha256[:12]}...) is not the one this "
            f"model's text path was trained with ({recorded_sha256[:12]}...); text prompts may "
            "find the wrong objects",
            stacklevel=3,
        )


class TextEmbedder:
    """L2-normalised CLIP text embeddings of phrases; each distinct phrase is encoded once and
    kept (the ``capacity`` most recent ones).

    Args:
        clip: the CLIP whose text tower embeds the phrases.
        capacity: how many phrases' embeddings to keep.
    """

    def __init__(self, clip: LoadedClip, capacity: int = 256) -> None:
        self.clip = clip
        self.capacity = capacity
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.encoded = 0  # phrases run through the text tower (for tests and benchmarks)

    def __call__(self, texts: str | Sequence[str]) -> torch.Tensor:
        """Embeddings (N, E) float32 on the CLIP's device, in the order of ``texts``.

        Raises:
            InvalidInputError: an empty phrase, or (word tokenizers) a word the CLIP does not
                know (the message names the nearest known words).
        """
        if isinstance(texts, str):
            texts = [texts]
        if not texts:
            raise InvalidInputError("give at least one text prompt")
        bad = [t for t in texts if not isinstance(t, str) or not t.strip()]
        if bad:
            raise InvalidInputError(f"text prompts must be non-empty strings, got {bad[0]!r}")
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            embeddings = self.clip.encode_text(missing, normalize=True)  # (m, E)
            self.encoded += len(missing)
            for text, emb in zip(missing, embeddings, strict=True):
                self._cache[text] = emb
        for text in texts:
            self._cache.move_to_end(text)
        out = torch.stack([self._cache[t] for t in texts])
        while len(self._cache) > self.capacity:
            self._cache.popitem(last=False)
        return out
