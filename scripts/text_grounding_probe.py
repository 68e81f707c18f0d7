"""Where does a CLIP embedding of an object's look point in the image? A probe for the text path.

The text path (SAM paper §7.5) has to find an object from the CLIP embedding of how it looks.
With the image encoder frozen, everything the decoder can match that embedding against is in
the image embedding. This probe asks how much of it is there: it fits a small grounding head,
a score per grid cell ``q(clip embedding) . k(cell features)`` with a softmax over the cells,
trained to put its mass on the mask's cells, on the crop embeddings of one folder's masks, and
scores the held-out folder's masks: ``hit`` is the fraction whose best cell lies in the mask
(``chance``: a cell drawn at random), with the crop's image embedding (``crop``, the training
prompt) and with the text embedding of a phrase that names exactly one mask (``text``, the
inference prompt). The cell features are the frozen image embedding, the cell's mean colour
(CIE Lab of the input frame, area-averaged to the grid), or both; ``k`` is linear or an MLP.

    anyseg synth data/probe_train --count 300 --seed 31
    anyseg synth data/probe_test --count 60 --seed 32
    .venv/bin/python scripts/text_grounding_probe.py data/probe_train data/probe_test

``--checkpoint`` and ``--clip`` take other models (default: the bundled ones). Measured
2026-12-03 with these commands (2-core CPU, about 20 minutes; bundled SAM and CLIP; 6,824
training crops on 300 scenes, 699 held-out crops and 153 phrases on 60; 3,000 steps of 8
images; chance 0.034 for crops, 0.033 for phrases):

| cell features | k | crop hit | text hit |
|---|---|---:|---:|
| embedding | linear | 0.383 | 0.261 |
| embedding | mlp | 0.356 | 0.261 |
| colour | mlp | 0.717 | 0.425 |
| both | mlp | 0.708 | 0.373 |

The frozen embedding locates an object from its look half as well as the cell
colours alone do: what a text token should match is mostly not in it, so the text path needs
the image encoder trained with it (configs/default_model_text_gpu.toml), not the frozen-encoder
CPU fine-tunes. The gap between crop and text hits is the bundled CLIP's: its text embeddings
sit apart from its crop embeddings.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import nn

from anyseg.checkpoint import load, load_default
from anyseg.clip import LoadedClip, load_clip, mask_crop, random_mask_crop
from anyseg.data.attributes import record_attributes
from anyseg.data.captions import NamingConfig, referring_queries
from anyseg.data.sa1b import find_dataset, read_dataset_image, read_image_record
from anyseg.ops.transforms import get_preprocess_shape
from anyseg.predictor import SamPredictor

FEATURES = ("embedding", "colour", "both")
KEYS = ("linear", "mlp")


@dataclass(frozen=True)
class ProbeSet:
    """Cell features of a folder's images and the prompts of its masks.

    Attributes:
        embedding: (N, cells, C) frozen image embeddings.
        colour: (N, cells, 3) mean CIE Lab colour per cell.
        image: (P,) the image of each prompt.
        prompt: (P, E) L2-normalised CLIP embeddings.
        inside: (P, cells) bool, the prompt's mask cells (coverage >= 0.5, else the best cell).
        text: (P,) bool, the prompt is a phrase's text embedding (else a crop's image embedding).
    """

    embedding: torch.Tensor
    colour: torch.Tensor
    image: torch.Tensor
    prompt: torch.Tensor
    inside: torch.Tensor
    text: torch.Tensor

    def cells(self, features: str) -> torch.Tensor:
        if features == "embedding":
            return self.embedding
        if features == "colour":
            return self.colour
        return torch.cat([self.embedding, self.colour], dim=-1)

    def subset(self, keep: torch.Tensor) -> ProbeSet:
        return ProbeSet(
            self.embedding,
            self.colour,
            self.image[keep],
            self.prompt[keep],
            self.inside[keep],
            self.text[keep],
        )


def to_grid(values: np.ndarray, long_side: int, grid: int) -> np.ndarray:
    """(H, W[, K]) float values in the model's input frame (resized, padded bottom and right)
    area-averaged to (grid, grid[, K])."""
    h, w = values.shape[:2]
    nh, nw = get_preprocess_shape(h, w, long_side)
    resized = cv2.resize(values, (nw, nh), interpolation=cv2.INTER_AREA)
    frame = np.zeros((long_side, long_side, *values.shape[2:]), np.float32)
    frame[:nh, :nw] = resized.reshape(nh, nw, *values.shape[2:])
    return cv2.resize(frame, (grid, grid), interpolation=cv2.INTER_AREA)


def inside_cells(coverage: np.ndarray) -> np.ndarray:
    """The cells a grounding head should pick for a mask: coverage >= 0.5, else the best one."""
    inside = coverage >= 0.5
    if not inside.any():
        inside = coverage == coverage.max()
    return inside.reshape(-1)


def build_set(
    root: str,
    predictor: SamPredictor,
    clip: LoadedClip,
    *,
    training: bool,
    min_area: int,
    crops_per_mask: int,
    seed: int,
) -> ProbeSet:
    """Features and prompts of a folder: training sets take ``crops_per_mask`` random crops per
    mask (the training recipe's), held-out sets one fixed crop and every phrase that names one
    mask (their prompts follow the crops')."""
    rng = np.random.default_rng(seed)
    long_side = predictor.model.img_size
    embeddings, colours, images, prompts, insides, texts = [], [], [], [], [], []
    for k, (image_file, record_file) in enumerate(find_dataset(root)):
        pixels = read_dataset_image(image_file)
        anns = read_image_record(record_file).annotations
        with torch.inference_mode():
            predictor.set_image(pixels)
            emb = predictor.get_image_embedding()[0].float()  # (C, g, g)
        grid = emb.shape[-1]
        embeddings.append(emb.flatten(1).T)
        lab = cv2.cvtColor(pixels, cv2.COLOR_RGB2LAB).astype(np.float32)
        colours.append(torch.from_numpy(to_grid(lab, long_side, grid).reshape(-1, 3)))
        masks = {i: a.decode() for i, a in enumerate(anns) if a.area >= min_area}
        cells = {
            i: inside_cells(to_grid(m.astype(np.float32), long_side, grid))
            for i, m in masks.items()
        }
        crops, crop_masks, rows = [], [], []
        for i, m in masks.items():
            for _ in range(crops_per_mask if training else 1):
                crop = (
                    random_mask_crop(pixels, m, clip.image_size, rng, scale_range=(1.0, 2.0))
                    if training
                    else mask_crop(pixels, m, clip.image_size, scale=1.5)
                )
                crops.append(crop.image)
                crop_masks.append(crop.mask)
                rows.append(i)
        if crops:
            prompts.append(clip.encode_image(np.stack(crops), np.stack(crop_masks), normalize=True))
            insides += [cells[i] for i in rows]
            images += [k] * len(rows)
            texts += [False] * len(rows)
        if not training:
            attrs, parents = record_attributes(anns)
            queries = [
                q for q in referring_queries(attrs, parents, NamingConfig()) if q[0] in masks
            ]
            if queries:
                prompts.append(clip.encode_text([q[1] for q in queries], normalize=True))
                insides += [cells[q[0]] for q in queries]
                images += [k] * len(queries)
                texts += [True] * len(queries)
    if not images:
        raise SystemExit(f"{root}: no mask of at least {min_area} pixels")
    return ProbeSet(
        torch.stack(embeddings).cpu(),
        torch.stack(colours),
        torch.tensor(images),
        torch.cat(prompts).cpu(),
        torch.from_numpy(np.stack(insides)),
        torch.tensor(texts),
    )


class GroundingHead(nn.Module):
    """Scores (P, cells) of prompts against their images' cells: ``q(prompt) . k(cell)``."""

    def __init__(self, prompt_dim: int, cell_dim: int, keys: str, width: int = 64) -> None:
        super().__init__()
        self.q = nn.Sequential(nn.Linear(prompt_dim, 256), nn.GELU(), nn.Linear(256, width))
        self.k: nn.Module = (
            nn.Linear(cell_dim, width)
            if keys == "linear"
            else nn.Sequential(nn.Linear(cell_dim, 256), nn.GELU(), nn.Linear(256, width))
        )
        self.scale = width**-0.5

    def forward(
        self, cells: torch.Tensor, images: torch.Tensor, prompts: torch.Tensor
    ) -> torch.Tensor:
        used, slot = torch.unique(images, return_inverse=True)
        keys = self.k(cells[used])  # (U, cells, width)
        every = torch.einsum("ucw,pw->puc", keys, self.q(prompts))  # each prompt, every image
        return every[torch.arange(len(images)), slot] * self.scale


def grounding_loss(scores: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
    """Mean -log of the softmax mass on each prompt's mask cells."""
    logp = scores.log_softmax(dim=-1)
    return -torch.logsumexp(logp.masked_fill(~inside, float("-inf")), dim=-1).mean()


def hit_rate(scores: torch.Tensor, inside: torch.Tensor) -> float:
    """Fraction of prompts whose best cell is one of their mask's cells."""
    return float(inside.gather(1, scores.argmax(dim=1, keepdim=True)).float().mean())


def fit(
    train: ProbeSet,
    features: str,
    keys: str,
    *,
    steps: int,
    images_per_step: int = 8,
    lr: float = 1e-3,
    seed: int = 0,
) -> tuple[GroundingHead, torch.Tensor, torch.Tensor]:
    """A grounding head fitted on ``train``; also the cell features' mean and std (the
    normalisation it expects)."""
    torch.manual_seed(seed)
    cells = train.cells(features)
    mean, std = cells.mean(dim=(0, 1)), cells.std(dim=(0, 1)) + 1e-6
    cells = (cells - mean) / std
    head = GroundingHead(train.prompt.shape[1], cells.shape[-1], keys)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-4)
    rng = np.random.default_rng(seed)
    count = len(cells)
    for _ in range(steps):
        chosen = torch.from_numpy(rng.choice(count, min(images_per_step, count), replace=False))
        rows = torch.isin(train.image, chosen)
        loss = grounding_loss(
            head(cells, train.image[rows], train.prompt[rows]), train.inside[rows]
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    return head, mean, std


@torch.no_grad()
def score(
    head: GroundingHead, mean: torch.Tensor, std: torch.Tensor, test: ProbeSet, features: str
) -> float:
    cells = (test.cells(features) - mean) / std
    hits = [
        hit_rate(head(cells, test.image[rows], test.prompt[rows]), test.inside[rows])
        * int(rows.sum())
        for rows in (test.image == k for k in torch.unique(test.image))
    ]
    return sum(hits) / len(test.image)


def chance(test: ProbeSet) -> float:
    """Hit rate of a cell drawn uniformly at random."""
    return float(test.inside.float().mean())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("train", help="SA-1B folder with attributes (anyseg synth) to fit on")
    parser.add_argument("test", help="held-out folder: its masks' crops and unique phrases")
    parser.add_argument("--checkpoint", help="SAM weights (default: the bundled model)")
    parser.add_argument("--clip", help="CLIP weights (default: the bundled CLIP)")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--min-area", type=int, default=2500, help="smallest mask, pixels")
    parser.add_argument("--crops-per-mask", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--runs",
        default="embedding:linear,embedding:mlp,colour:mlp,both:mlp",
        help="comma-separated FEATURES:KEYS pairs (features: embedding, colour, both; keys: "
        "linear, mlp)",
    )
    args = parser.parse_args(argv)
    runs = [tuple(r.split(":")) for r in args.runs.split(",")]
    for run in runs:
        if len(run) != 2 or run[0] not in FEATURES or run[1] not in KEYS:
            parser.error(f"--runs: {':'.join(run)!r} is not FEATURES:KEYS")
    model = load(args.checkpoint, device="cpu") if args.checkpoint else load_default("cpu")
    predictor, clip = SamPredictor(model), load_clip(args.clip)
    common = {"min_area": args.min_area, "crops_per_mask": args.crops_per_mask}
    train = build_set(args.train, predictor, clip, training=True, seed=args.seed, **common)
    test = build_set(args.test, predictor, clip, training=False, seed=args.seed + 1, **common)
    crops, texts = test.subset(~test.text), test.subset(test.text)
    if not len(texts.image):
        raise SystemExit(f"{args.test}: no phrase names exactly one mask (no attributes?)")
    print(
        f"{len(train.image)} training crops on {len(train.embedding)} images; held out "
        f"{len(crops.image)} crops and {len(texts.image)} phrases on {len(test.embedding)} images"
    )
    print(f"chance: crop {chance(crops):.3f}, text {chance(texts):.3f}")
    print("| cell features | k | crop hit | text hit |\n|---|---|---:|---:|")
    for features, keys in runs:
        head, mean, std = fit(train, features, keys, steps=args.steps, seed=args.seed)
        crop_hit = score(head, mean, std, crops, features)
        text_hit = score(head, mean, std, texts, features)
        print(f"| {features} | {keys} | {crop_hit:.3f} | {text_hit:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
