"""Class labels for automatically generated masks, from CLIP on each mask's crop.

SAM's masks carry no class; users ask for one. With a vocabulary of phrases
(``AmgConfig.label_vocab``, ``anyseg auto --label-vocab "star,ellipse,..."``), each mask's crop
(the mask's box enlarged 1.5x and squared, the class token of CLIP's last image block restricted to
the mask's patches: :mod:`anyseg.clip.crops`) is embedded by CLIP's image tower and compared with
every phrase's text embedding; the mask takes the best-matching phrase, and as its score that
phrase's probability among the vocabulary (a softmax of the cosine similarities at CLIP's learned
temperature). The phrases are what the CLIP can read (the bundled CLIP knows the words of
synthetic captions: colours, fills, shapes, roles).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch

from anyseg.automatic.records import MaskRecord
from anyseg.clip import LoadedClip, mask_crop
from anyseg.errors import InvalidInputError

#: Box enlargement of the crops (the middle of the paper's [1, 2]).
CROP_SCALE = 1.5
#: Crops embedded at once.
CROP_BATCH = 64


class MaskLabeller:
    """Labels masks with the best-matching phrase of a vocabulary (module docstring).

    Args:
        clip: the CLIP.
        vocabulary: the phrases (at least one).
    """

    def __init__(self, clip: LoadedClip, vocabulary: Sequence[str]) -> None:
        if not vocabulary:
            raise InvalidInputError("a label vocabulary needs at least one phrase")
        self.clip = clip
        self.vocabulary = tuple(vocabulary)
        self.text = clip.encode_text(list(self.vocabulary), normalize=True)  # (V, E)
        self.scale = float(clip.model.logit_scale.detach().exp().clamp(max=100.0))

    def scores(self, image: np.ndarray, masks: Sequence[np.ndarray]) -> torch.Tensor:
        """(N, V) probabilities of each phrase for each of the (H, W) bool masks of ``image``
        (RGB uint8 (H, W, 3)); rows sum to 1."""
        if not masks:
            return torch.zeros(0, len(self.vocabulary))
        size = self.clip.image_size
        out = []
        for start in range(0, len(masks), CROP_BATCH):
            crops = [
                mask_crop(image, m, size, scale=CROP_SCALE)
                for m in masks[start : start + CROP_BATCH]
            ]
            emb = self.clip.encode_image(
                np.stack([c.image for c in crops]),
                np.stack([c.mask for c in crops]),
                normalize=True,
            )  # (n, E)
            out.append(torch.softmax(self.scale * emb @ self.text.T, dim=-1).cpu())
        return torch.cat(out)

    def label(self, image: np.ndarray, records: Sequence[MaskRecord]) -> list[MaskRecord]:
        """``records`` with ``label`` and ``label_score`` set (empty masks keep none)."""
        usable = [i for i, r in enumerate(records) if r.area > 0]
        probs = self.scores(image, [records[i].mask() for i in usable])
        out = list(records)
        for row, i in enumerate(usable):
            best = int(probs[row].argmax())
            out[i] = dataclasses.replace(
                records[i], label=self.vocabulary[best], label_score=float(probs[row, best])
            )
        return out
