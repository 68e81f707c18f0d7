"""Drawing masks and prompts over images (overlay PNGs of the CLI, the evaluation and the tools).

Pure functions on numpy arrays: (H, W, 3) uint8 RGB images, (N, H, W) bool masks, xy pixels.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence

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


def draw_labels(
    image: np.ndarray,
    boxes_xywh: Sequence[Sequence[float]],
    texts: Sequence[str],
    colors: np.ndarray | None = None,
) -> np.ndarray:
    """Write each text at the top-left corner of its (x, y, w, h) box on a copy (white on a
    dark band, the band edged in the mask's colour)."""
    out = np.ascontiguousarray(image.copy())
    colors = distinct_colors(len(texts)) if colors is None else np.asarray(colors, np.uint8)
    scale = max(0.3, min(image.shape[:2]) / 700)
    thick = max(1, round(scale * 1.5))
    h, w = image.shape[:2]
    for (x, y, _, _), text, color in zip(boxes_xywh, texts, colors, strict=True):
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        x0 = int(min(max(x, 0), max(w - tw - 2, 0)))
        y0 = int(min(max(y, th + base + 2), h - 1))
        cv2.rectangle(out, (x0, y0 - th - base - 2), (x0 + tw + 2, y0), (20, 20, 20), -1)
        cv2.rectangle(
            out, (x0, y0 - th - base - 2), (x0 + tw + 2, y0), tuple(int(c) for c in color), 1
        )
        cv2.putText(out, text, (x0 + 1, y0 - base - 1), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (255, 255, 255), thick, cv2.LINE_AA)  # fmt: skip
    return out
