"""(Mask crop, caption) pairs for contrastive training, with every true caption a positive.

A batch draws masks from the training images in groups of one colour (``colour_group_size``; see
:class:`~anyseg.training.clip_config.ClipDataConfig`), one random crop (the paper's recipe,
:func:`anyseg.clip.random_mask_crop`) and one random caption
(:func:`anyseg.data.captions.random_caption`) per mask. Captions often fit several masks of a
batch ("a red shape"), so the targets are a matrix: ``positives[i, j]`` says whether caption
``j`` is true of crop ``i`` (its :class:`~anyseg.data.captions.Description` against the crop's
attributes), computed for all pairs at once from attribute codes.

Batches are a function of (seed, step), so a resumed run draws what an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from anyseg.clip.crops import random_mask_crop
from anyseg.clip.tokenizer import Tokenizer
from anyseg.data.attributed import AttributedImage
from anyseg.data.attributes import MaskAttributes
from anyseg.data.captions import FIELDS, Description, attribute_codes, nameable, random_caption
from anyseg.errors import InvalidInputError
from anyseg.training.clip_config import ClipDataConfig


@dataclass(frozen=True, eq=False)
class PairBatch:
    """One training batch.

    Attributes:
        crops: RGB uint8 (B, S, S, 3).
        masks: bool (B, S, S), the crop masks (all True where masked attention is off).
        tokens: caption token ids (B, L).
        positives: bool (B, B), ``[i, j]``: caption j is true of crop i (the diagonal is).
        texts: the captions.
        descriptions: what each caption asserts.
        items: (image index, mask index) of each crop.
        crop_codes: (B, F) int64 attribute codes of what each crop clearly shows (negative:
            not shown clearly), over :data:`anyseg.data.captions.FIELDS`.
        caption_codes: (B, F) int64 codes of what each caption asserts (-1: open).
    """

    crops: np.ndarray
    masks: np.ndarray
    tokens: torch.Tensor
    positives: torch.Tensor
    texts: list[str]
    descriptions: list[Description]
    items: list[tuple[int, int]]
    crop_codes: np.ndarray
    caption_codes: np.ndarray


class PairSampler:
    """Draws :class:`PairBatch` es from images with attributed masks."""

    def __init__(
        self,
        images: Sequence[AttributedImage],
        tokenizer: Tokenizer,
        cfg: ClipDataConfig,
        image_size: int,
    ) -> None:
        self.images = images
        self.tokenizer = tokenizer
        self.cfg = cfg
        self.image_size = image_size
        # Masks big enough whose crop shows at least one nameable attribute.
        self.items = [
            (i, k)
            for i, img in enumerate(images)
            for k, m in enumerate(img.masks)
            if m.area >= cfg.min_mask_area and _has_words(m.attributes, cfg)
        ]
        if len(self.items) < 2:
            raise InvalidInputError(
                f"only {len(self.items)} masks of at least {cfg.min_mask_area} px with nameable "
                "attributes: not enough to train on"
            )
        # Attribute codes of every item, for the positive matrix; a fill that does not show (a
        # pattern of two near colours) is -3: any fill word may be true of the crop.
        self.codes = np.stack(
            [
                attribute_codes(images[i].masks[k].attributes, images[i].parent_attributes(k))
                for i, k in self.items
            ]
        )  # (M, F)
        unclear_fill = [
            nameable(images[i].masks[k].attributes, cfg.captions.naming).fill is None
            for i, k in self.items
        ]
        self.codes[np.array(unclear_fill), FIELDS.index("fill")] = -3
        # What each item's crop shows clearly (the auxiliary heads' targets).
        self.clear_codes = np.stack(
            [
                attribute_codes(
                    replace(
                        images[i].masks[k].attributes,
                        **_unclear(images[i].masks[k].attributes, cfg),
                    )
                )
                for i, k in self.items
            ]
        )  # (M, F)
        # Items by the colour a caption may name (None: unnamed), for same-colour groups.
        self.colour_of = [
            nameable(images[i].masks[k].attributes, cfg.captions.naming).colour
            for i, k in self.items
        ]
        groups: dict[str | None, list[int]] = {}
        for j, colour in enumerate(self.colour_of):
            groups.setdefault(colour, []).append(j)
        self.by_colour = {c: np.array(js) for c, js in groups.items()}

    def _picks(self, rng: np.random.Generator, batch_size: int) -> np.ndarray:
        """Item indices (B,): groups of ``colour_group_size`` masks of one colour, each around a
        uniformly drawn mask (uniform draws when the group size is 1)."""
        group = self.cfg.colour_group_size
        if group <= 1:
            return rng.choice(len(self.items), size=batch_size, replace=batch_size > len(self))
        picks: list[np.ndarray] = []
        total = 0
        while total < batch_size:
            pool = self.by_colour[self.colour_of[int(rng.integers(len(self.items)))]]
            n = min(group, batch_size - total)
            picks.append(rng.choice(pool, size=n, replace=len(pool) < n))
            total += n
        return np.concatenate(picks)

    def __len__(self) -> int:
        return len(self.items)

    def sample(self, rng: np.random.Generator, batch_size: int) -> PairBatch:
        s, cfg = self.image_size, self.cfg
        picks = self._picks(rng, batch_size)
        crops = np.zeros((batch_size, s, s, 3), np.uint8)
        masks = np.ones((batch_size, s, s), bool)
        texts, descriptions, items = [], [], []
        for b, item in enumerate(picks):
            i, k = self.items[int(item)]
            img, m = self.images[i], self.images[i].masks[k]
            crop = random_mask_crop(
                img.image,
                m.mask,
                s,
                rng,
                scale_range=(cfg.scale_min, cfg.scale_max),
                zero_background_prob=cfg.zero_background_prob,
                mask_offset_xy=m.offset_xy,
                box_xyxy=m.box_xyxy,
            )
            crops[b] = crop.image
            if rng.random() < cfg.masked_attention_prob:
                masks[b] = crop.mask
            caption = random_caption(m.attributes, img.parent_attributes(k), rng, cfg.captions)
            assert caption is not None  # items have nameable attributes
            texts.append(caption.text)
            descriptions.append(caption.description)
            items.append((i, k))
        want = np.stack([d.codes() for d in descriptions])  # (B, F)
        have = self.codes[picks]  # (B, F)
        fits = (want[None] < 0) | (want[None] == have[:, None]) | (have[:, None] == -3)  # (B, B, F)
        positives = torch.from_numpy(fits.all(-1))
        return PairBatch(
            crops,
            masks,
            self.tokenizer(texts),
            positives,
            texts,
            descriptions,
            items,
            self.clear_codes[picks],
            want,
        )


def _unclear(attrs: MaskAttributes, cfg: ClipDataConfig) -> dict[str, Any]:
    """The attributes a crop of this mask does not show clearly, as None overrides."""
    d = nameable(attrs, cfg.captions.naming)
    return {k: None for k in ("colour", "shape", "fill") if getattr(d, k) is None}


def _has_words(attrs: MaskAttributes, cfg: ClipDataConfig) -> bool:
    d = nameable(attrs, cfg.captions.naming)
    return d.colour is not None or d.shape is not None or d.fill is not None
