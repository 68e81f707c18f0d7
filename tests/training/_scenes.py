"""Synthetic SA-1B-layout scenes for the training and dataset tests (shapes drawn with numpy)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from anyseg.data.sa1b import record_from_masks, write_image_record
from anyseg.io import write_image


def draw_scene(rng: np.random.Generator, h: int, w: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """An (h, w, 3) uint8 image with n flat-coloured rectangles/ellipses on a noisy background,
    and their visible masks (n, h, w) bool (later shapes occlude earlier ones)."""
    image = (rng.normal(110, 12, (h, w, 3))).clip(0, 255)
    ys, xs = np.mgrid[0:h, 0:w]
    masks = np.zeros((n, h, w), dtype=bool)
    for i in range(n):
        ch, cw = rng.integers(h // 6, h // 2.5), rng.integers(w // 6, w // 2.5)
        cy, cx = rng.integers(ch // 2, h - ch // 2), rng.integers(cw // 2, w - cw // 2)
        if i % 2 == 0:
            shape = (abs(ys - cy) <= ch // 2) & (abs(xs - cx) <= cw // 2)
        else:
            shape = ((ys - cy) / (ch / 2)) ** 2 + ((xs - cx) / (cw / 2)) ** 2 <= 1
        masks[:i] &= ~shape
        masks[i] = shape
        image[shape] = rng.integers(0, 256, 3)
    keep = masks.reshape(n, -1).sum(1) > 20
    return image.astype(np.uint8), masks[keep]


def make_sa1b_dataset(
    root: Path, num_images: int = 3, h: int = 96, w: int = 128, shapes: int = 3, seed: int = 0
) -> Path:
    """Write ``root/images/*.png`` and ``root/annotations/*.json``; returns root."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for i in range(num_images):
        image, masks = draw_scene(rng, h, w, shapes)
        name = f"img_{i:03d}"
        write_image(root / "images" / f"{name}.png", image)
        write_image_record(
            root / "annotations" / f"{name}.json",
            record_from_masks(masks, image_id=i, file_name=f"{name}.png"),
        )
    return root
