"""What a mask shows: shape, fill, colour, role and visible fraction of a synthetic object.

``anyseg synth`` records one :class:`MaskAttributes` per mask in the SA-1B annotation's optional
``attributes`` object (see :mod:`anyseg.data.sa1b`); captions are built from them
(:mod:`anyseg.data.captions`). Only what a crop around the mask can show is recorded: no size or
position, since a crop is rescaled and carries no coordinates.

Colours are named from the *rendered* pixels (after shading, light, blur and noise), so the name
is what the image shows. Each of the element's own visible pixels takes the name of its nearest
anchor of a fixed palette (:data:`PALETTE`; a name has a few anchors: its pure, dark and pale
forms) in CIELAB; the mask's colour is the most common name, ``colour_fraction`` the share of
pixels that have it (a stripe of two colours gives about 0.5), and ``colour_rgb`` the mean of those
pixels. ``colour_margin`` says how far that mean is from the next palette name: the distance (ΔE,
CIE76) to the nearest anchor of another name minus the distance to the nearest anchor of its own.
A margin near 0 means "between two names"; captions and evaluations name a colour only above a
margin and a fraction threshold.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from anyseg.errors import InvalidInputError

# Shape kinds of the generator (anyseg.data.synthetic_render.SHAPES), fill kinds and roles.
SHAPES: tuple[str, ...] = ("polygon", "ellipse", "star", "blob", "rect", "thin")
FILLS: tuple[str, ...] = ("solid", "gradient", "stripes", "checker", "noise")
ROLES: tuple[str, ...] = ("object", "panel", "component", "emblem")

# Named colours. A name has a few sRGB anchors (its usual, dark and light forms), since the
# generator draws dark and pale colours as often as pure ones; a colour takes the name of its
# nearest anchor. The names are basic colour terms a person uses for a flat patch.
PALETTE: tuple[tuple[str, tuple[tuple[int, int, int], ...]], ...] = (
    ("red", ((205, 30, 35), (130, 20, 25))),
    ("orange", ((240, 135, 25), (245, 175, 95))),
    ("yellow", ((240, 220, 40), (235, 230, 130))),
    ("green", ((50, 165, 55), (25, 95, 35), (140, 220, 140))),
    ("cyan", ((40, 195, 205), (20, 110, 115), (150, 225, 230))),
    ("blue", ((35, 70, 205), (25, 35, 120), (120, 150, 235))),
    ("purple", ((125, 50, 175), (70, 30, 100), (175, 130, 220))),
    ("pink", ((240, 125, 190), (245, 180, 215), (180, 40, 110))),
    ("brown", ((125, 75, 35), (85, 55, 30), (160, 120, 70))),
    ("black", ((20, 20, 20),)),
    ("grey", ((128, 128, 128), (80, 80, 80), (180, 180, 180))),
    ("white", ((240, 240, 240),)),
)
COLOURS: tuple[str, ...] = tuple(name for name, _ in PALETTE)


def _srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of sRGB colours (N, 3) in 0..255; L in 0..100."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array(
        [
            [0.4124564, 0.3575761, 0.1804375],
            [0.2126729, 0.7151522, 0.0721750],
            [0.0193339, 0.1191920, 0.9503041],
        ]
    )
    xyz = lin @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack(
        [116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], axis=1
    )


_ANCHOR_LAB = _srgb_to_lab(np.array([rgb for _, anchors in PALETTE for rgb in anchors]))
_ANCHOR_NAME = np.array([i for i, (_, anchors) in enumerate(PALETTE) for _ in anchors])


def dominant_colour(pixels: np.ndarray) -> tuple[str, float, np.ndarray, float]:
    """The most common palette name of sRGB pixels (N, 3) in 0..255, the share of pixels with
    that name, their mean colour (3,) and its margin (module docstring; 0 when the mean itself
    takes another name)."""
    px = np.asarray(pixels, dtype=np.float64).reshape(-1, 3)
    if not len(px):
        raise InvalidInputError("no pixels to name a colour from")
    lab = _srgb_to_lab(px)  # (N, 3)
    d2 = ((lab[:, None, :] - _ANCHOR_LAB[None]) ** 2).sum(-1)  # (N, anchors)
    names = _ANCHOR_NAME[d2.argmin(1)]  # (N,)
    counts = np.bincount(names, minlength=len(COLOURS))
    top = int(counts.argmax())
    mean = px[names == top].mean(0)
    name, margin = name_colour(mean)
    return COLOURS[top], float(counts[top] / len(px)), mean, margin if name == COLOURS[top] else 0.0


def name_colour(rgb: Any) -> tuple[str, float]:
    """The palette name of an sRGB colour (3,) in 0..255 and its margin (module docstring): the
    distance to the nearest anchor of another name minus the distance to the nearest anchor."""
    lab = _srgb_to_lab(np.asarray(rgb, dtype=np.float64).reshape(1, 3))
    d = np.linalg.norm(_ANCHOR_LAB - lab, axis=1)
    name = int(_ANCHOR_NAME[np.argmin(d)])
    return COLOURS[name], float(d[name != _ANCHOR_NAME].min() - d.min())


@dataclass(frozen=True)
class MaskAttributes:
    """What one mask shows.

    Attributes:
        role: ``"object"`` (a whole object), ``"panel"`` (a region inside a body),
            ``"component"`` (a touching piece of an assembly) or ``"emblem"`` (a small mark on a
            panel or component).
        shape: the outline's kind (one of :data:`SHAPES`); None for an assembly of several
            pieces, whose outline is no single shape.
        sides: corners of a polygon or points of a star, else None.
        fill: the fill pattern (one of :data:`FILLS`), None when the mask has no single fill.
        fill_contrast: RGB distance between the pattern's two colours (0 for solid): a pattern
            of two near colours does not show.
        colour: the most common palette name of its rendered pixels (one of :data:`COLOURS`),
            or None.
        colour_fraction: the share of its pixels with that name, in (0, 1].
        colour_rgb: the mean colour of those pixels, sRGB 0..255.
        colour_margin: how clearly that mean has that name (module docstring), >= 0.
        visible_fraction: visible pixels over the pixels the shape would cover unoccluded and
            uncut by the image border, in [0, 1].
    """

    role: str
    shape: str | None = None
    sides: int | None = None
    fill: str | None = None
    fill_contrast: float | None = None
    colour: str | None = None
    colour_fraction: float | None = None
    colour_rgb: tuple[int, int, int] | None = None
    colour_margin: float | None = None
    visible_fraction: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; None fields are left out."""
        out: dict[str, Any] = {"role": self.role}
        for key in (
            "shape",
            "sides",
            "fill",
            "fill_contrast",
            "colour",
            "colour_fraction",
            "colour_rgb",
            "colour_margin",
        ):
            value = getattr(self, key)
            if value is not None:
                out[key] = list(value) if isinstance(value, tuple) else value
        out["visible_fraction"] = self.visible_fraction
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "attributes") -> MaskAttributes:
        """Parse and check an ``attributes`` object; keys this version does not know are ignored
        (a newer generator may record more)."""
        if not isinstance(data, Mapping):
            raise InvalidInputError(f"{source}: attributes must be an object, got {data!r}")

        def choice(key: str, allowed: tuple[str, ...], required: bool = False) -> str | None:
            value = data.get(key)
            if value is None and not required:
                return None
            if value not in allowed:
                raise InvalidInputError(
                    f"{source}: attributes.{key} must be one of {list(allowed)}, got {value!r}"
                )
            return str(value)

        def number(key: str) -> float | None:
            value = data.get(key)
            if value is None:
                return None
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InvalidInputError(f"{source}: attributes.{key} must be a number")
            if not math.isfinite(value):
                raise InvalidInputError(f"{source}: attributes.{key} must be finite")
            return float(value)

        sides = number("sides")
        rgb = data.get("colour_rgb")
        if rgb is not None:
            if not isinstance(rgb, (list, tuple)) or len(rgb) != 3:
                raise InvalidInputError(f"{source}: attributes.colour_rgb must be [r, g, b]")
            rgb = tuple(int(v) for v in rgb)
        visible = number("visible_fraction")
        if visible is not None and not 0.0 <= visible <= 1.0:
            raise InvalidInputError(f"{source}: attributes.visible_fraction must be in [0, 1]")
        role = choice("role", ROLES, required=True)
        return cls(
            role=str(role),
            shape=choice("shape", SHAPES),
            sides=None if sides is None else int(sides),
            fill=choice("fill", FILLS),
            fill_contrast=number("fill_contrast"),
            colour=choice("colour", COLOURS),
            colour_fraction=number("colour_fraction"),
            colour_rgb=rgb,
            colour_margin=number("colour_margin"),
            visible_fraction=1.0 if visible is None else visible,
        )


def record_attributes(
    annotations: Sequence[Any], source: str = "record"
) -> tuple[list[MaskAttributes | None], list[int]]:
    """Per annotation of an image record (:class:`anyseg.data.sa1b.Annotation`): its parsed
    attributes (None where it has none) and the index of its parent annotation (-1: none, or a
    parent not in the list)."""
    index = {a.id: i for i, a in enumerate(annotations)}
    attrs = [
        None if a.attributes is None else MaskAttributes.from_dict(a.attributes, f"{source} {a.id}")
        for a in annotations
    ]
    parents = [-1 if a.parent_id is None else index.get(a.parent_id, -1) for a in annotations]
    return attrs, parents
