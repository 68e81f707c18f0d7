"""Auxiliary attribute heads for CLIP training: a push out of the colour-only saddle.

Trained contrastively from scratch, both towers first learn colour, the one attribute a linear
map of the pixels shows. Then they sit at a symmetric point: the text tower maps "a red star" and
"a red ellipse" alike because the image tower cannot tell red stars from red ellipses, and the
image tower has no reason to, since the two captions embed alike; the contrastive gradient for
shape and fill cancels out on average (measured: after 750 steps of 256 pairs, linear probes of
the image embedding found no shape or fill, and the text embeddings of every non-colour word had
cosine similarity 0.99).

These heads break the symmetry with direct supervision of each tower: linear classifiers on the
L2-normalised embeddings predict the crop's colour, fill, shape and role (where the crop shows
them clearly, :func:`anyseg.data.captions.nameable`) and the attributes the caption asserts. They
are used only in training; the saved CLIP has no trace of them.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from anyseg.data.attributes import COLOURS, FILLS, ROLES, SHAPES
from anyseg.data.captions import FIELDS

# Head name -> (number of values, column of the attribute codes).
HEADS: dict[str, tuple[int, int]] = {
    "colour": (len(COLOURS), FIELDS.index("colour")),
    "fill": (len(FILLS), FIELDS.index("fill")),
    "shape": (len(SHAPES), FIELDS.index("shape")),
    "role": (len(ROLES), FIELDS.index("role")),
}


class AttributeHeads(nn.Module):
    """One linear classifier per attribute and tower, on unit-length embeddings."""

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.image = nn.ModuleDict({k: nn.Linear(embed_dim, n) for k, (n, _) in HEADS.items()})
        self.text = nn.ModuleDict({k: nn.Linear(embed_dim, n) for k, (n, _) in HEADS.items()})

    def forward(
        self,
        image_embeds: torch.Tensor,
        text_embeds: torch.Tensor,
        image_codes: torch.Tensor,
        text_codes: torch.Tensor,
    ) -> torch.Tensor:
        """Mean cross-entropy over heads and towers.

        Args:
            image_embeds, text_embeds: (B, E), not normalised.
            image_codes, text_codes: (B, F) int64 attribute codes over
                :data:`anyseg.data.captions.FIELDS`; negative entries are not supervised.
        """
        img, txt = F.normalize(image_embeds, dim=-1), F.normalize(text_embeds, dim=-1)
        losses = []
        for name, (_, col) in HEADS.items():
            for head, x, codes in ((self.image, img, image_codes), (self.text, txt, text_codes)):
                target = codes[:, col]
                if bool((target >= 0).any()):
                    losses.append(F.cross_entropy(head[name](x), target, ignore_index=-1))
        return torch.stack(losses).mean() if losses else image_embeds.sum() * 0


def ignore_unknown(codes: np.ndarray) -> torch.Tensor:
    """Codes with every negative entry set to -1 (cross-entropy's ignored index)."""
    out = torch.from_numpy(codes.copy())
    out[out < 0] = -1
    return out
