"""Geometry and painting of synthetic scenes (see :mod:`anyseg.data.synthetic`).

Everything works in image pixels, (x, y) order, on float32 RGB canvases in 0..255, and only inside
each object's bounding box, so the cost of an object follows its size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from anyseg.data.attributes import FILLS, SHAPES
from anyseg.data.synth_config import SynthConfig

_FILL_WEIGHTS = np.array([0.3, 0.2, 0.15, 0.1, 0.25])
_SHIFT = 4  # cv2 sub-pixel bits for polygon vertices


@dataclass
class Element:
    """A painted shape of an object: polygon in image pixels, clipped by an earlier element.

    ``fill`` and ``in_image`` are filled in by :func:`paint_object` (what was painted), the rest
    by :func:`object_elements` (what is to be painted).
    """

    pts: np.ndarray  # (K, 2) float, (x, y) image pixels
    clip: int = -1  # index of the element (same object) it is clipped to, -1 for none
    inst_parent: int = -1  # index of the element whose instance is its parent, -1: the whole
    is_instance: bool = False  # a part/subpart mask of its own (a plain body is not)
    label: str = ""
    min_contrast: float = 0.0
    kind: str = ""  # shape kind, one of SHAPES
    sides: int = 0  # corners of a polygon, points of a star; 0 for other kinds
    is_body: bool = False  # the object's body (its outline is the whole object's shape)
    fill: str | None = None  # fill kind painted (one of FILLS), None if nothing was painted
    fill_contrast: float = 0.0  # RGB distance between the pattern's two colours (0: solid)
    in_image: float = 1.0  # fraction of the polygon's area inside the image


# ---------------------------------------------------------------------------------------------
# Geometry


def shape_polygon(rng: np.random.Generator, kind: str, r: float, s: int) -> tuple[np.ndarray, int]:
    """Polygon (K, 2) of a shape of radius ~r centred at 0, randomly stretched and rotated, and
    its number of corners (polygon) or points (star), 0 for other kinds."""
    sides = 0
    if kind == "thin":
        length, width = r, max(r / rng.uniform(5.0, 14.0), 0.006 * s)
        t = np.linspace(-1.0, 1.0, 24)
        bend = rng.uniform(-0.35, 0.35) * length
        ys = bend * (1 - t**2)  # a slightly bent bar: parabola centreline, offset both ways
        slope = -2 * bend * t / length
        nx, ny = -slope / np.hypot(slope, 1), 1 / np.hypot(slope, 1)
        top = np.stack([t * length + nx * width, ys + ny * width], 1)
        bottom = np.stack([t * length - nx * width, ys - ny * width], 1)
        pts = np.concatenate([top, bottom[::-1]])
    else:
        k = 64 if kind in ("ellipse", "blob", "rect") else 0
        if kind == "polygon":
            m = sides = int(rng.integers(3, 10))
            ang = np.sort(rng.uniform(0, 2 * np.pi, m))
            rad = rng.uniform(0.55, 1.0, m) if rng.random() < 0.6 else np.ones(m)
        elif kind == "star":
            m = sides = int(rng.integers(5, 9))
            ang = np.arange(2 * m) * np.pi / m
            rad = np.where(np.arange(2 * m) % 2 == 0, 1.0, rng.uniform(0.35, 0.6))
        else:
            ang = np.linspace(0, 2 * np.pi, k, endpoint=False)
            if kind == "blob":
                rad = np.ones(k)
                for harmonic in range(2, 6):
                    amp = rng.uniform(0, 0.35 / harmonic)
                    rad = rad + amp * np.cos(harmonic * ang + rng.uniform(0, 2 * np.pi))
            elif kind == "rect":  # superellipse: rounded rectangle
                p = rng.uniform(3.0, 10.0)
                c, sn = np.cos(ang), np.sin(ang)
                rad = (np.abs(c) ** p + np.abs(sn) ** p) ** (-1.0 / p) * 0.8
            else:
                rad = np.ones(k)
        pts = np.stack([np.cos(ang) * rad, np.sin(ang) * rad], 1) * r
        pts[:, 1] *= rng.uniform(0.45, 1.0) if kind != "star" else rng.uniform(0.8, 1.0)
    theta = rng.uniform(0, 2 * np.pi)
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    return pts @ rot.T, sides


def place_object(
    rng: np.random.Generator,
    r: float,
    centers: list[tuple[float, float, float]],
    h: int,
    w: int,
    touch_prob: float,
) -> tuple[float, float]:
    """Object centre: next to an earlier object, across a border, or anywhere."""
    u = rng.random()
    if centers and u < touch_prob:
        cx, cy, rr = centers[int(rng.integers(len(centers)))]
        ang = rng.uniform(0, 2 * np.pi)
        d = (rr + r) * rng.uniform(0.75, 1.0)
        return cx + d * math.cos(ang), cy + d * math.sin(ang)
    if u < touch_prob + 0.15:  # straddle an image border
        side = int(rng.integers(4))
        t = rng.uniform(0, 1)
        off = rng.uniform(-0.5, 0.5) * r
        return [(off, t * h), (w - off, t * h), (t * w, off), (t * w, h - off)][side]
    return rng.uniform(0, w), rng.uniform(0, h)


def object_elements(
    rng: np.random.Generator, cx: float, cy: float, r: float, s: int, cfg: SynthConfig
) -> tuple[str, list[Element]]:
    """The object's label (shape of its body) and its elements in painting order (an element
    comes after the one it is clipped to)."""
    kind = SHAPES[int(rng.choice(len(SHAPES), p=[0.2, 0.2, 0.12, 0.23, 0.15, 0.1]))]
    c = np.array([cx, cy])
    pts, sides = shape_polygon(rng, kind, r, s)
    body = Element(
        pts + c, label=kind, min_contrast=cfg.min_contrast, kind=kind, sides=sides, is_body=True
    )
    part_contrast = cfg.min_contrast * 0.75
    if kind == "thin" or r < cfg.part_min_radius * s or rng.random() >= cfg.part_prob:
        return kind, [body]
    allow_sub = r >= cfg.subpart_min_radius * s
    elements, radii = [body], [r]
    if rng.random() < cfg.assembly_prob:
        # Assembly: the body and 1-2 touching components are each a part of the whole.
        body.is_instance, body.label = True, "component"
        for _ in range(int(rng.integers(1, 3))):
            ang = rng.uniform(0, 2 * np.pi)
            rc = r * rng.uniform(0.35, 0.7)
            cc = c + r * rng.uniform(0.7, 1.0) * np.array([math.cos(ang), math.sin(ang)])
            sub_kind = SHAPES[int(rng.choice(5))] if rng.random() < 0.8 else "thin"
            pts, sides = shape_polygon(rng, sub_kind, rc, s)
            comp = Element(
                pts + cc,
                is_instance=True,
                label="component",
                min_contrast=part_contrast,
                kind=sub_kind,
                sides=sides,
            )
            # A component lies either behind or in front of the body.
            at = 0 if rng.random() < 0.5 else len(elements)
            elements.insert(at, comp)
            radii.insert(at, rc)
        hosts = list(enumerate(radii))
    else:
        # Panels: 1-3 differently filled regions inside the body.
        m = 1 if rng.random() < 0.7 else int(rng.integers(2, 4))
        axis = rng.uniform(0, 2 * np.pi)
        direction = np.array([math.cos(axis), math.sin(axis)])
        for j in range(m):
            off = (
                rng.uniform(0, 0.3) * r * _unit(rng)
                if m == 1
                else (j - (m - 1) / 2) * 0.75 * r / (m - 1) * direction
            )
            rp = r * rng.uniform(0.32, 0.55) / (1.0 if m == 1 else 1.5)
            pk = ("rect", "ellipse", "polygon", "blob")[int(rng.integers(4))]
            pts, sides = shape_polygon(rng, pk, rp, s)
            elements.append(
                Element(
                    pts + c + off,
                    clip=0,
                    inst_parent=0,
                    is_instance=True,
                    label="panel",
                    min_contrast=part_contrast,
                    kind=pk,
                    sides=sides,
                )
            )
            radii.append(rp)
        hosts = [(k, radii[k]) for k in range(1, len(elements))]
    if allow_sub:
        for k, rh in list(hosts):
            if rng.random() >= cfg.subpart_prob:
                continue
            host = elements[k]
            centre = host.pts.mean(0) + rng.uniform(0, 0.15) * rh * _unit(rng)
            ek = ("star", "ellipse", "polygon", "rect")[int(rng.integers(4))]
            re = max(rh * rng.uniform(0.35, 0.55), 0.012 * s)
            pts, sides = shape_polygon(rng, ek, re, s)
            elements.append(
                Element(
                    pts + centre,
                    clip=k,
                    inst_parent=k,
                    is_instance=True,
                    label="emblem",
                    min_contrast=part_contrast,
                    kind=ek,
                    sides=sides,
                )
            )
    return kind, elements


def _unit(rng: np.random.Generator) -> np.ndarray:
    a = rng.uniform(0, 2 * np.pi)
    return np.array([math.cos(a), math.sin(a)])


# ---------------------------------------------------------------------------------------------
# Painting


def paint_object(
    rng: np.random.Generator,
    canvas: np.ndarray,
    id_map: np.ndarray,
    elements: list[Element],
    first_id: int,
    cfg: SynthConfig,
    s: int,
) -> tuple[int, int, int, int] | None:
    """Paint one object's elements into ``canvas`` (H, W, 3) float32 and ``id_map`` (H, W).

    Works inside the object's bounding box; returns it as (x0, y0, x1, y1) or None if off-image.
    """
    h, w = id_map.shape
    pts_all = np.concatenate([e.pts for e in elements])
    pad = int(0.03 * s) + 3
    x0, y0 = (np.floor(pts_all.min(0)) - pad).astype(int)
    x1, y1 = (np.ceil(pts_all.max(0)) + pad).astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    crop = canvas[y0:y1, x0:x1]
    ids = id_map[y0:y1, x0:x1]
    ch, cw = ids.shape
    origin = np.array([x0, y0])
    if rng.random() < cfg.shadow_prob:
        offset = rng.uniform(0.004, 0.015) * s * _unit(rng)
        shadow: np.ndarray = np.zeros((ch, cw), np.float32)
        for e in elements:
            if e.clip < 0:
                np.maximum(shadow, _raster(e.pts - origin + offset, ch, cw), out=shadow)
        shadow = cv2.GaussianBlur(shadow, (0, 0), rng.uniform(1.0, 0.01 * s + 1.5))
        crop *= (1.0 - rng.uniform(0.25, 0.5) * shadow)[..., None]
    blur = rng.uniform(0.6, 1.8) if rng.random() < cfg.soft_edge_prob else 0.0
    margin = int(3 * blur) + 2
    alphas: list[np.ndarray] = []
    for k, e in enumerate(elements):
        local = e.pts - origin
        alpha = _raster(local, ch, cw)
        e.in_image = min(1.0, float(alpha.sum()) / max(polygon_area(e.pts), 1e-6))
        # Fill and composite only inside the element's own box (parts are small).
        bx0, by0 = np.maximum(np.floor(local.min(0)).astype(int) - margin, 0)
        bx1, by1 = np.minimum(np.ceil(local.max(0)).astype(int) + margin, (cw, ch))
        if bx1 <= bx0 or by1 <= by0:
            alphas.append(alpha)
            continue
        box = (slice(by0, by1), slice(bx0, bx1))
        if blur:
            alpha[box] = cv2.GaussianBlur(alpha[box], (0, 0), blur)
        if e.clip >= 0:
            alpha[box] *= alphas[e.clip][box]
        alphas.append(alpha)
        a = alpha[box]
        inside = (a >= 0.5).view(np.uint8)
        if not cv2.countNonZero(inside):
            continue
        region = crop[box]
        under = np.array(cv2.mean(region, mask=inside)[:3], np.float32)
        fill, e.fill, e.fill_contrast = _fill(
            rng, under, e.min_contrast, by1 - by0, bx1 - bx0, local.mean(0) - (bx0, by0)
        )
        np.subtract(fill, region, out=fill)
        fill *= a[..., None]
        region += fill  # region + alpha * (fill - region)
        ids[box][inside.view(bool)] = first_id + k
    return (x0, y0, x1, y1)


def polygon_area(pts: np.ndarray) -> float:
    """Area (pixels) of a simple polygon (K, 2) (shoelace formula)."""
    x, y = pts[:, 0], pts[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _raster(pts: np.ndarray, h: int, w: int) -> np.ndarray:
    """Anti-aliased coverage (H, W) float32 in [0, 1] of a polygon given in crop pixels."""
    img = np.zeros((h, w), dtype=np.uint8)
    # Pixel centres are integers in cv2: shift by -0.5 so the polygon covers pixel squares.
    fixed = np.round((pts - 0.5) * (1 << _SHIFT)).astype(np.int32)
    cv2.fillPoly(img, [fixed], 255, lineType=cv2.LINE_AA, shift=_SHIFT)
    return img.astype(np.float32) * (1.0 / 255.0)


def _color(rng: np.random.Generator, under: np.ndarray, min_dist: float) -> np.ndarray:
    """An RGB colour (3,) in 0..255 at least ``min_dist`` from ``under`` when one is found."""
    best, best_d = np.zeros(3, np.float32), -1.0
    for _ in range(12):
        hsv = np.array(
            [[[rng.uniform(0, 180), rng.uniform(0, 1) ** 0.7 * 255, rng.uniform(0.12, 1.0) * 255]]],
            dtype=np.uint8,
        )
        rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)
        d = float(np.linalg.norm(rgb - under))
        if d >= min_dist:
            return rgb
        if d > best_d:
            best, best_d = rgb, d
    return best


def _fill(
    rng: np.random.Generator,
    under: np.ndarray,
    min_dist: float,
    h: int,
    w: int,
    centre: np.ndarray,
) -> tuple[np.ndarray, str, float]:
    """A textured, shaded fill (H, W, 3) float32 whose colours stand out from ``under``, its
    kind (one of :data:`FILLS`) and the RGB distance between its two colours (0 for solid)."""
    c1 = _color(rng, under, min_dist)
    kind = FILLS[int(rng.choice(len(FILLS), p=_FILL_WEIGHTS))]
    # Shading: a linear light ramp across the object, sometimes a radial highlight.
    ys, xs = _grid(h, w)
    xs, ys = xs - np.float32(centre[0]), ys - np.float32(centre[1])
    a, size = rng.uniform(0, 2 * np.pi), max(h, w)
    k = rng.uniform(0, 0.5) / size
    shade = 1.0 + (xs * np.float32(k * math.cos(a)) + ys * np.float32(k * math.sin(a)))
    if rng.random() < 0.25:
        d2 = (xs * xs + ys * ys) * np.float32(4.0 / size**2)
        shade = shade + np.float32(rng.uniform(0.1, 0.3)) * np.exp(-d2)
    if kind == "solid":
        return shade[..., None] * c1, kind, 0.0
    c2 = np.clip(c1 + rng.normal(0, 45, 3), 0, 255).astype(np.float32)
    if np.linalg.norm(c2 - under) < 0.6 * min_dist:
        c2 = ((c1 + c2) / 2).astype(np.float32)
    t = _pattern(rng, kind, h, w, min(h, w))
    return (c1 + t[..., None] * (c2 - c1)) * shade[..., None], kind, float(np.linalg.norm(c2 - c1))


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel row (H, 1) and column (1, W) coordinates, float32."""
    return (
        np.arange(h, dtype=np.float32)[:, None],
        np.arange(w, dtype=np.float32)[None, :],
    )


def _pattern(rng: np.random.Generator, kind: str, h: int, w: int, size: int) -> np.ndarray:
    """A texture (H, W) float32 in [0, 1]: gradient, stripes, checker or smooth noise."""
    if kind == "noise":
        g = int(rng.integers(2, 7))
        small = rng.random((g, g)).astype(np.float32)
        t = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        return np.clip(t, 0, 1)
    ys, xs = _grid(h, w)
    a = rng.uniform(0, np.pi)
    ca, sa = np.float32(math.cos(a)), np.float32(math.sin(a))
    if kind == "gradient":
        u = xs * ca + ys * sa
        return (u - u.min()) * np.float32(1.0 / max(float(np.ptp(u)), 1.0))
    f = np.float32(2 * np.pi / max(size * rng.uniform(0.08, 0.35), 3.0))  # 1 / period
    wave = np.sin(xs * (ca * f) + ys * (sa * f))
    if kind == "checker":
        wave = wave * np.sin(ys * (ca * f) - xs * (sa * f))
    sharp = np.float32(0.5 * rng.uniform(1.0, 6.0))  # soft sinusoid .. hard bands
    return np.clip(wave * sharp + np.float32(0.5), 0, 1)


def background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A low-contrast textured background (H, W, 3) float32 in 0..255."""
    base = _color(rng, np.zeros(3, np.float32), 0.0)
    c2 = np.clip(base + rng.normal(0, 30, 3), 0, 255).astype(np.float32)
    kind = ("noise", "gradient", "stripes", "checker", "noise")[int(rng.integers(5))]
    # The pattern is smooth: draw it at half resolution and upsample (4x fewer pixels).
    hh, hw = (h + 1) // 2, (w + 1) // 2
    t = _pattern(rng, kind, hh, hw, min(hh, hw))
    low = base + t[..., None] * (c2 - base)
    out = cv2.resize(low, (w, h), interpolation=cv2.INTER_LINEAR)
    # Fine grain: a higher-frequency noise layer of a few grey levels.
    g = int(rng.integers(16, 48))
    grain = cv2.resize(
        rng.random((g, g)).astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR
    )
    out += (grain - 0.5)[..., None] * rng.uniform(4, 20)
    return out


def finish(rng: np.random.Generator, canvas: np.ndarray, cfg: SynthConfig, s: int) -> np.ndarray:
    """Uneven light, blur and sensor noise; returns RGB uint8 (H, W, 3)."""
    h, w = canvas.shape[:2]
    if rng.random() < 0.5:
        light = cv2.resize(
            rng.random((3, 3)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC
        )
        canvas *= (1.0 + rng.uniform(0.1, 0.35) * (light - 0.5))[..., None]
    if cfg.max_blur_sigma > 0.3 and rng.random() < cfg.blur_prob:
        sigma = rng.uniform(0.3, cfg.max_blur_sigma) * max(1.0, s / 512)
        canvas = cv2.GaussianBlur(canvas, (0, 0), sigma)
    if cfg.max_noise >= 0.5:
        # Uniform integer noise of the drawn standard deviation (cheaper than Gaussian).
        half = round(rng.uniform(0, cfg.max_noise) * math.sqrt(3.0))
        canvas += rng.integers(0, 2 * half + 1, canvas.shape, dtype=np.uint8)
        canvas -= np.float32(half - 0.5)  # + 0.5: round, not floor, in the cast below
    else:
        canvas += np.float32(0.5)
    return np.clip(canvas, 0, 255, out=canvas).astype(np.uint8)
