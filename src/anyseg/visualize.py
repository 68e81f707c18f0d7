"""Drawing masks and prompts over images (overlay PNGs of the CLI, the evaluation and the tools).

Pure functions on numpy arrays: (H, W, 3) uint8 RGB images, (N, H, W) bool masks, xy pixels.
"""

from __future__ import annotations

import colorsys

import cv2
import numpy as np


def distinct_colors(n: int, seed: int = 0) -> np.ndarray:
    """(n, 3) uint8 RGB colours spread around the hue circle (golden-ratio steps)."""
    hues = (seed * 0.137 + np.arange(n) * 0.618033988749895) % 1.0
    rgb = [colorsys.hsv_to_rgb(h, 0.75, 1.0) for h in hues]
    return (np.array(rgb, dtype=np.float64).reshape(-1, 3) * 255).round().astype(np.uint8)


def overlay_masks(
    image: np.ndarray,
    masks: np.ndarray,
    colors: np.ndarray | None = None,
    alpha: float = 0.5,
    outline: bool = True,
) -> np.ndarray:
    """Tint each of the (N, H, W) masks over the (H, W, 3) image and draw its outline.

    Masks are painted in order, so later masks lie on top of earlier ones.
    """
    out = image.astype(np.float32).copy()
    masks = np.asarray(masks, dtype=bool).reshape(-1, *image.shape[:2])
    colors = distinct_colors(len(masks)) if colors is None else np.asarray(colors, np.uint8)
    for mask, color in zip(masks, colors, strict=True):
        out[mask] = (1 - alpha) * out[mask] + alpha * color.astype(np.float32)
    result = out.round().clip(0, 255).astype(np.uint8)
    if outline:
        for mask, color in zip(masks, colors, strict=True):
            contours, _ = cv2.findContours(
                mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
            )
            cv2.drawContours(result, contours, -1, tuple(int(c) for c in color), 1)
    return result


def draw_prompts(
    image: np.ndarray,
    points_xy: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    box_xyxy: np.ndarray | None = None,
) -> np.ndarray:
    """Draw positive points (green), negative points (red) and a box (blue) on a copy."""
    out = np.ascontiguousarray(image.copy())
    radius = max(3, round(max(image.shape[:2]) / 120))
    if box_xyxy is not None:
        x0, y0, x1, y1 = (round(float(v)) for v in np.asarray(box_xyxy).reshape(4))
        cv2.rectangle(out, (x0, y0), (x1, y1), (40, 120, 255), max(1, radius // 2))
    if points_xy is not None:
        pts = np.asarray(points_xy).reshape(-1, 2)
        labs = np.ones(len(pts), int) if labels is None else np.asarray(labels).reshape(-1)
        for (x, y), lab in zip(pts, labs, strict=True):
            color = (30, 220, 60) if lab == 1 else (235, 40, 40)
            center = (round(float(x)), round(float(y)))
            cv2.circle(out, center, radius + 1, (255, 255, 255), -1)
            cv2.circle(out, center, radius, color, -1)
    return out
