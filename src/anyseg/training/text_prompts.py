"""Text-first prompts of the simulated interaction (SAM paper §7.5, appendix D.5).

Training needs no captions: a text-first mask is prompted with the L2-normalised CLIP *image*
embedding of a crop around it, which CLIP aligns with the text embeddings of phrases that
describe it; at inference the text embedding takes its place. The crop is the paper's (the
mask's box enlarged by a random factor in [1, 2], made square, zero-padded past the image,
resized to the CLIP input, the background zeroed half the time; :mod:`anyseg.clip.crops`) and
the CLIP's last image block attends only to the patches inside the mask. Where the data has
captions, a share of the text-first masks takes its caption's CLIP *text* embedding instead.

:class:`CropTextSource` runs beside the model (the CLIP is frozen and never part of ``Sam``):
given a batch it chooses which masks are text-first and embeds them. Its random numbers come from
a generator per image seeded by the image's prompt seed, apart from the interaction's own, so a
run with ``text_prob = 0`` draws exactly what a run without text prompts draws.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from anyseg.clip import LoadedClip, random_mask_crop
from anyseg.data.dataset import Batch
from anyseg.training.config import PromptConfig

#: Mixed into each image's prompt seed for the text draws (any fixed number apart from 0).
_TEXT_STREAM = 7_351


class TextPrompts(NamedTuple):
    """Which masks of a batch are text-first, and their prompts.

    Fields:
        first: (M,) bool, the masks whose first prompt is text.
        embeddings: (M, E) float32 L2-normalised CLIP embeddings (zeros where ``first`` is
            False).
        from_caption: (M,) bool, prompted with the caption's text embedding (else the crop's
            image embedding).
    """

    first: torch.Tensor
    embeddings: torch.Tensor
    from_caption: torch.Tensor


def denormalize(
    image: torch.Tensor, mean: Sequence[float], std: Sequence[float], hw: tuple[int, int]
) -> np.ndarray:
    """RGB uint8 (h, w, 3) of a normalised, padded model input (3, S, S): the resized image,
    without the padding."""
    h, w = hw
    m = torch.tensor(mean, dtype=image.dtype, device=image.device).view(3, 1, 1)
    s = torch.tensor(std, dtype=image.dtype, device=image.device).view(3, 1, 1)
    pixels = (image[:, :h, :w] * s + m).round().clamp(0, 255).to(torch.uint8)
    return pixels.permute(1, 2, 0).cpu().numpy()  # (3, h, w) -> (h, w, 3)


class CropTextSource:
    """Chooses the text-first masks of a batch and embeds their prompts (module docstring).

    Args:
        clip: the frozen CLIP (any device).
        prompts: ``text_prob``, ``text_min_area_fraction``, ``text_caption_prob`` and the crop
            settings.
        pixel_mean, pixel_std: the SAM model's input normalisation (0..255 scale), to recover
            the pixels of a batch.
    """

    def __init__(
        self,
        clip: LoadedClip,
        prompts: PromptConfig,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
    ) -> None:
        self.clip = clip
        self.prompts = prompts
        self.mean = tuple(pixel_mean)
        self.std = tuple(pixel_std)

    @property
    def embed_dim(self) -> int:
        return self.clip.embed_dim

    @torch.no_grad()
    def __call__(self, batch: Batch) -> TextPrompts:
        """The text prompts of ``batch`` (on the batch's device)."""
        p = self.prompts
        device = batch.masks.device
        num_masks, side = batch.masks.shape[0], batch.masks.shape[-1]
        first = torch.zeros(num_masks, dtype=torch.bool)
        from_caption = torch.zeros(num_masks, dtype=torch.bool)
        embeddings = torch.zeros(num_masks, self.embed_dim)
        areas = batch.masks.flatten(1).sum(1).cpu()  # (M,)
        counts = torch.bincount(batch.mask_image_index, minlength=batch.images.shape[0]).tolist()
        crops: list[np.ndarray] = []
        crop_masks: list[np.ndarray] = []
        crop_rows: list[int] = []
        texts: list[str] = []
        text_rows: list[int] = []
        start = 0
        for i, n in enumerate(counts):
            rows = range(start, start + n)
            start += n
            if n == 0:
                continue
            rng = np.random.default_rng([int(batch.prompt_seeds[i]), _TEXT_STREAM])
            choice, caption_choice = rng.random(n), rng.random(n)  # a fixed order of draws
            eligible = areas[rows.start : rows.stop].numpy() >= p.text_min_area_fraction * side**2
            chosen = [r for k, r in enumerate(rows) if eligible[k] and choice[k] < p.text_prob]
            if not chosen:
                continue
            hw = (int(batch.input_hw[i, 0]), int(batch.input_hw[i, 1]))
            image = denormalize(batch.images[i], self.mean, self.std, hw)
            for r in chosen:
                first[r] = True
                caption = batch.captions[r] if batch.captions else ""
                if caption and caption_choice[r - rows.start] < p.text_caption_prob:
                    from_caption[r] = True
                    texts.append(caption)
                    text_rows.append(r)
                    continue
                mask = batch.masks[r, : hw[0], : hw[1]].cpu().numpy()
                crop = random_mask_crop(
                    image,
                    mask,
                    self.clip.image_size,
                    rng,
                    scale_range=p.text_crop_scale,
                    zero_background_prob=p.text_zero_background_prob,
                )
                crops.append(crop.image)
                crop_masks.append(crop.mask)
                crop_rows.append(r)
        if crops:
            embeddings[crop_rows] = self.clip.encode_image(
                np.stack(crops), np.stack(crop_masks), normalize=True
            ).cpu()
        if texts:
            embeddings[text_rows] = self.clip.encode_text(texts, normalize=True).cpu()
        return TextPrompts(first.to(device), embeddings.to(device), from_caption.to(device))
