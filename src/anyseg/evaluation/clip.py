"""``anyseg clip eval``: what a CLIP knows about the masks of captioned synthetic scenes.

Two measures on held-out images (an ``anyseg synth`` seed never trained on):

- **attribute accuracy** (zero-shot, per attribute): a mask's crop is given the value whose
  prompts ("a red shape", "the red thing"; embeddings averaged) score best among all values of
  that attribute: 12 colours, 5 fills, 6 shapes. Colour is scored on masks whose colour is clear
  (``naming``: palette margin and pixel share, :class:`anyseg.data.captions.NamingConfig`),
  shape on masks visible enough.
- **retrieval R@1**: for each caption that names exactly one mask of its image
  (:func:`anyseg.data.captions.referring_queries`), whether that mask's crop scores best among
  the crops of all the image's masks (``min_mask_area`` px or more). ``retrieval_chance`` is the
  mean of 1 / candidates over the queries.

Crops are deterministic: the box enlarged ``crop_scale`` times, background kept, the last image
block's class token restricted to the mask (``masked_attention``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from anyseg.clip.crops import mask_crop
from anyseg.clip.loading import LoadedClip
from anyseg.data.attributed import AttributedImage, read_attributed_images
from anyseg.data.attributes import COLOURS, FILLS, SHAPES, MaskAttributes
from anyseg.data.captions import (
    CaptionForm,
    NamingConfig,
    nameable,
    referring_queries,
    zero_shot_prompts,
)
from anyseg.errors import InvalidInputError
from anyseg.io import atomic_path, atomic_write_json

ATTRIBUTES: dict[str, tuple[str, ...]] = {"colour": COLOURS, "fill": FILLS, "shape": SHAPES}
# Mask-size groups of the attribute breakdown: (name, smallest area in pixels).
SIZES: tuple[tuple[str, int], ...] = (("small", 0), ("medium", 400), ("large", 1600))


@dataclass(frozen=True)
class ClipEvalConfig:
    """What is evaluated and how the crops are made."""

    max_images: int = field(default=0, metadata={"help": "evaluate at most N images (0: all)"})
    min_mask_area: int = field(default=100, metadata={"help": "masks of fewer pixels are left out"})
    naming: NamingConfig = field(
        default_factory=lambda: NamingConfig(
            min_colour_margin=8.0, min_colour_fraction=0.7, min_visible_fraction=0.6
        ),
        metadata={"help": "which colours and shapes are clear enough to score"},
    )
    crop_scale: float = field(default=1.5, metadata={"help": "box enlargement of the crops"})
    zero_background: bool = field(default=False, metadata={"help": "zero pixels outside the mask"})
    masked_attention: bool = field(
        default=True, metadata={"help": "restrict the last block's class token to the mask"}
    )
    forms: tuple[str, ...] = field(
        default=("full", "short", "relational"), metadata={"help": "referring caption forms"}
    )
    batch_size: int = field(default=256, metadata={"help": "crops per forward pass"})

    def __post_init__(self) -> None:
        bad = set(self.forms) - {"full", "short", "relational"}
        if bad or not self.forms:
            raise InvalidInputError(f"forms must be from full, short, relational; got {self.forms}")
        if self.crop_scale <= 0 or self.batch_size < 1 or self.min_mask_area < 1:
            raise InvalidInputError("crop_scale > 0, batch_size >= 1 and min_mask_area >= 1")


@dataclass
class ClipEvalResult:
    """Scores of one evaluation (module docstring)."""

    attribute_accuracy: dict[str, float]
    attribute_counts: dict[str, int]
    by_size: dict[str, dict[str, dict[str, float]]]  # size -> attribute -> {accuracy, count}
    confusion: dict[str, list[list[int]]]  # [true value][predicted value], order of ATTRIBUTES
    retrieval_r1: float
    retrieval_count: int
    retrieval_chance: float
    retrieval_by_form: dict[str, dict[str, float]]
    images: int
    masks: int
    seconds: float

    def metrics(self) -> dict[str, float]:
        """Flat scores (eval.csv columns during training)."""
        out = {k: v for k, v in self.attribute_accuracy.items()}
        out["retrieval_r1"] = self.retrieval_r1
        return out


def _crops(
    clip: LoadedClip,
    images: Sequence[AttributedImage],
    index: list[tuple[int, int]],
    cfg: ClipEvalConfig,
) -> torch.Tensor:
    """Normalised embeddings (M, E) of the crops of the listed (image, mask) pairs."""
    s = clip.image_size
    out = []
    for start in range(0, len(index), cfg.batch_size):
        chunk = index[start : start + cfg.batch_size]
        crops = np.zeros((len(chunk), s, s, 3), np.uint8)
        masks = np.ones((len(chunk), s, s), bool)
        for b, (i, k) in enumerate(chunk):
            m = images[i].masks[k]
            c = mask_crop(
                images[i].image,
                m.mask,
                s,
                scale=cfg.crop_scale,
                zero_background=cfg.zero_background,
                mask_offset_xy=m.offset_xy,
                box_xyxy=m.box_xyxy,
            )
            crops[b] = c.image
            if cfg.masked_attention:
                masks[b] = c.mask
        out.append(
            clip.encode_image(crops, masks if cfg.masked_attention else None, normalize=True)
        )
    return torch.cat(out) if out else torch.zeros(0, clip.embed_dim)


def _forms(cfg: ClipEvalConfig) -> tuple[CaptionForm, ...]:
    return tuple(f for f in ("full", "short", "relational") if f in cfg.forms)  # checked: known


def _true_value(attribute: str, a: MaskAttributes, cfg: ClipEvalConfig) -> str | None:
    value: str | None = getattr(nameable(a, cfg.naming), attribute)
    return value


@torch.no_grad()
def evaluate_clip(
    clip: LoadedClip, images: Sequence[AttributedImage], cfg: ClipEvalConfig | None = None
) -> ClipEvalResult:
    """Attribute accuracy and retrieval R@1 of ``clip`` on ``images`` (module docstring)."""
    cfg = cfg or ClipEvalConfig()
    t0 = time.perf_counter()
    if cfg.max_images > 0:
        images = images[: cfg.max_images]
    index = [
        (i, k)
        for i, img in enumerate(images)
        for k, m in enumerate(img.masks)
        if m.area >= cfg.min_mask_area
    ]
    if not index:
        raise InvalidInputError(f"no mask of at least {cfg.min_mask_area} px to evaluate")
    row = {pair: r for r, pair in enumerate(index)}
    emb = _crops(clip, images, index, cfg)  # (M, E)
    attrs = [images[i].masks[k].attributes for i, k in index]

    areas = np.array([images[i].masks[k].area for i, k in index])
    size_of = np.searchsorted([lo for _, lo in SIZES], areas, side="right") - 1  # (M,)
    accuracy, counts, confusion = {}, {}, {}
    by_size: dict[str, dict[str, dict[str, float]]] = {name: {} for name, _ in SIZES}
    for attribute, values in ATTRIBUTES.items():
        prompts = zero_shot_prompts(attribute)
        text = torch.stack(
            [clip.encode_text(list(prompts[v]), normalize=True).mean(0) for v in values]
        )
        text = torch.nn.functional.normalize(text, dim=-1)  # (K, E)
        truth = [_true_value(attribute, a, cfg) for a in attrs]
        rows = [r for r, t in enumerate(truth) if t is not None]
        matrix = np.zeros((len(values), len(values)), np.int64)
        right = np.zeros(len(index), bool)
        if rows:
            pred = (emb[rows] @ text.t()).argmax(1).tolist()
            for r, p in zip(rows, pred, strict=True):
                matrix[values.index(str(truth[r])), p] += 1
                right[r] = values[p] == truth[r]
        scored = np.zeros(len(index), bool)
        scored[rows] = True
        for g, (name, _) in enumerate(SIZES):
            sel = scored & (size_of == g)
            by_size[name][attribute] = {
                "accuracy": float(right[sel].mean()) if sel.any() else 0.0,
                "count": int(sel.sum()),
            }
        counts[attribute] = len(rows)
        accuracy[attribute] = float(np.trace(matrix) / max(1, len(rows)))
        confusion[attribute] = matrix.tolist()

    hits: dict[str, list[bool]] = {f: [] for f in cfg.forms}
    chance = []
    for i, img in enumerate(images):
        cand = [row.get((i, k)) for k in range(len(img.masks))]
        cand_attrs = [
            m.attributes if c is not None else None for m, c in zip(img.masks, cand, strict=True)
        ]
        queries = referring_queries(
            cand_attrs, [m.parent for m in img.masks], cfg.naming, forms=_forms(cfg)
        )
        if not queries:
            continue
        rows_i = [c for c in cand if c is not None]
        text = clip.encode_text([t for _, t, _ in queries], normalize=True)  # (Q, E)
        best = (text @ emb[rows_i].t()).argmax(1).tolist()  # (Q,)
        for (k, _, form), b in zip(queries, best, strict=True):
            hits[form].append(rows_i[b] == cand[k])
            chance.append(1.0 / len(rows_i))
    every = [h for f in cfg.forms for h in hits[f]]
    return ClipEvalResult(
        attribute_accuracy=accuracy,
        attribute_counts=counts,
        by_size=by_size,
        confusion=confusion,
        retrieval_r1=float(np.mean(every)) if every else 0.0,
        retrieval_count=len(every),
        retrieval_chance=float(np.mean(chance)) if chance else 0.0,
        retrieval_by_form={
            f: {"r1": float(np.mean(h)) if h else 0.0, "count": len(h)} for f, h in hits.items()
        },
        images=len(images),
        masks=len(index),
        seconds=time.perf_counter() - t0,
    )


def evaluate_clip_folder(
    clip: LoadedClip, data: str | os.PathLike[str], cfg: ClipEvalConfig | None = None
) -> ClipEvalResult:
    """:func:`evaluate_clip` on an ``anyseg synth`` folder."""
    cfg = cfg or ClipEvalConfig()
    return evaluate_clip(clip, read_attributed_images(data, cfg.max_images), cfg)


def write_report(
    result: ClipEvalResult,
    out_dir: str | os.PathLike[str],
    clip: LoadedClip,
    data: str,
    cfg: ClipEvalConfig,
) -> Path:
    """``report.json`` (scores, counts, confusion matrices, CLIP and data identity, config) and
    ``clip_eval.png`` in ``out_dir``; returns the report's path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "clip": {
            "source": clip.source,
            "sha256": clip.sha256,
            "layout": clip.layout,
            "embed_dim": clip.embed_dim,
            "image_size": clip.image_size,
        },
        "data": {"path": str(data), "images": result.images, "masks": result.masks},
        "config": asdict(cfg),
        "attribute_accuracy": result.attribute_accuracy,
        "attribute_counts": result.attribute_counts,
        "attribute_accuracy_by_size": {
            "bounds_px": {name: lo for name, lo in SIZES},
            **result.by_size,
        },
        "retrieval_r1": result.retrieval_r1,
        "retrieval": {
            "count": result.retrieval_count,
            "chance": result.retrieval_chance,
            "by_form": result.retrieval_by_form,
        },
        "confusion": {
            a: {"values": list(ATTRIBUTES[a]), "matrix": m} for a, m in result.confusion.items()
        },
        "seconds": round(result.seconds, 2),
    }
    atomic_write_json(out / "report.json", report)
    _plot(result, out / "clip_eval.png")
    return out / "report.json"


def _plot(result: ClipEvalResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        1, 4, figsize=(18, 4.6), dpi=100, gridspec_kw={"width_ratios": [1.3, 0.8, 0.9, 0.9]}
    )
    for ax, (attribute, values) in zip(axes[:3], ATTRIBUTES.items(), strict=True):
        m = np.array(result.confusion[attribute], dtype=float)
        norm = m / np.maximum(m.sum(1, keepdims=True), 1)
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(len(values)), values, rotation=60, fontsize=7)
        ax.set_yticks(range(len(values)), values, fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        acc = result.attribute_accuracy[attribute]
        ax.set_title(f"{attribute}: {acc:.3f} ({result.attribute_counts[attribute]} masks)")
    ax = axes[3]
    forms = list(result.retrieval_by_form)
    ax.bar(forms, [result.retrieval_by_form[f]["r1"] for f in forms], color="#6baed6")
    ax.axhline(result.retrieval_chance, color="#d94801", ls="--", label="chance")
    ax.set_ylim(0, 1)
    ax.set_title(f"retrieval R@1 {result.retrieval_r1:.3f} ({result.retrieval_count} queries)")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp)
    plt.close(fig)
