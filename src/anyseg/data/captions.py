"""Captions of synthetic masks, built from their attributes (:mod:`anyseg.data.attributes`).

A caption names only what a crop around the mask can show: colour, fill, shape and role ("a
yellow star", "the striped blue ellipse", "the emblem on the red panel"), through a few templates
and synonyms. Every caption comes with the :class:`Description` it asserts, so whether it is true
of any other mask is a lookup, not a parse: the contrastive trainer counts every caption true of
a crop as a positive, and the evaluation keeps only queries that name exactly one mask of their
image (:func:`referring_queries`).

Words are chosen per attribute only when the crop shows them: a colour when its palette margin is
at least ``min_colour_margin`` and at least ``min_colour_fraction`` of the pixels have it, a
pattern when its two colours differ by at least ``min_fill_contrast``, a shape when at least
``min_visible_fraction`` of it is visible.
Size and position are never named: a crop is rescaled and carries no coordinates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from anyseg.data.attributes import COLOURS, FILLS, ROLES, SHAPES, MaskAttributes
from anyseg.errors import InvalidInputError

# Words for each attribute value; the first is the canonical one (zero-shot prompts use it).
SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "polygon": ("polygon",),
    "ellipse": ("ellipse", "oval"),
    "star": ("star",),
    "blob": ("blob",),
    "rect": ("rectangle",),
    "thin": ("bar", "stick"),
}
TRIANGLE = "triangle"  # a polygon with 3 corners
FILL_ADJECTIVES: dict[str, tuple[str, ...]] = {
    "solid": ("solid", "plain"),
    "gradient": ("gradient", "fading"),
    "stripes": ("striped",),
    "checker": ("checkered", "chequered"),
    "noise": ("mottled", "speckled"),
}
FILL_NOUNS: dict[str, str] = {"stripes": "stripes", "checker": "checks"}  # "a red star with ..."
ROLE_WORDS: dict[str, tuple[str, ...]] = {
    "panel": ("panel",),
    "component": ("part", "piece"),
    "emblem": ("emblem", "badge"),
}
GENERIC_NOUNS: tuple[str, ...] = ("shape", "thing")  # when the shape is not named
_OTHER_WORDS = ("a", "an", "the", "with", "on")

# The attribute fields a description can constrain, in the order of :func:`attribute_codes`.
FIELDS: tuple[str, ...] = (
    "colour",
    "fill",
    "shape",
    "sides",
    "role",
    "parent_colour",
    "parent_fill",
    "parent_shape",
    "parent_role",
)
_VALUES: dict[str, tuple[str, ...]] = {
    "colour": COLOURS,
    "fill": FILLS,
    "shape": SHAPES,
    "role": ROLES,
}
CaptionForm = Literal["full", "short", "relational"]


@dataclass(frozen=True)
class Description:
    """What a caption asserts; None fields are left open. ``parent`` constrains the mask's
    parent (the panel an emblem is on, the body a panel is in)."""

    colour: str | None = None
    fill: str | None = None
    shape: str | None = None
    sides: int | None = None
    role: str | None = None
    parent: Description | None = None

    def codes(self) -> np.ndarray:
        """(F,) int64 over :data:`FIELDS`: the value's index, -1 where the field is open."""
        return _encode(self, self.parent)

    def matches(self, attrs: MaskAttributes, parent: MaskAttributes | None = None) -> bool:
        """Whether a mask with ``attrs`` (and ``parent``'s attributes) fits every constraint."""
        want, have = self.codes(), attribute_codes(attrs, parent)
        return bool(np.all((want < 0) | (want == have)))


@dataclass(frozen=True)
class Caption:
    """A caption's text and what it asserts."""

    text: str
    description: Description


@dataclass(frozen=True)
class NamingConfig:
    """When a crop shows an attribute clearly enough to name it."""

    min_colour_margin: float = field(
        default=4.0, metadata={"help": "name a colour only with at least this palette margin (ΔE)"}
    )
    min_colour_fraction: float = field(
        default=0.6, metadata={"help": "name a colour only when this share of pixels has it"}
    )
    min_visible_fraction: float = field(
        default=0.5, metadata={"help": "name a shape only when this fraction of it is visible"}
    )
    min_fill_contrast: float = field(
        default=50.0,
        metadata={"help": "name a pattern only when its two colours differ by this (RGB)"},
    )

    def __post_init__(self) -> None:
        if self.min_colour_margin < 0 or self.min_fill_contrast < 0:
            raise InvalidInputError("min_colour_margin and min_fill_contrast must be >= 0")
        for name in ("min_colour_fraction", "min_visible_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise InvalidInputError(f"{name} must be in [0, 1], got {getattr(self, name)}")


@dataclass(frozen=True)
class CaptionConfig:
    """How captions are drawn for training."""

    naming: NamingConfig = field(default_factory=NamingConfig)
    colour_prob: float = field(default=0.6, metadata={"help": "P(a nameable colour is named)"})
    fill_prob: float = field(default=0.6, metadata={"help": "P(the fill is named)"})
    shape_prob: float = field(default=0.85, metadata={"help": "P(a nameable shape is named)"})
    relational_prob: float = field(
        default=0.25, metadata={"help": "P(a part is described by its parent: 'the emblem on ...')"}
    )

    def __post_init__(self) -> None:
        for name in ("colour_prob", "fill_prob", "shape_prob", "relational_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise InvalidInputError(f"captions.{name} must be in [0, 1], got {value}")


def vocabulary() -> tuple[str, ...]:
    """Every word a caption or zero-shot prompt of this module can contain, sorted."""
    words = set(_OTHER_WORDS) | set(GENERIC_NOUNS) | set(COLOURS) | {TRIANGLE}
    for table in (SHAPE_WORDS, FILL_ADJECTIVES, ROLE_WORDS):
        for synonyms in table.values():
            words.update(synonyms)
    words.update(FILL_NOUNS.values())
    return tuple(sorted(words))


def attribute_codes(attrs: MaskAttributes, parent: MaskAttributes | None = None) -> np.ndarray:
    """(F,) int64 over :data:`FIELDS` of a mask: value indices, -1 where the mask has none (an
    assembly has no shape, so no shape word is true of it). A colour or shape counts whatever its
    margin or visibility (training positives compare the names)."""
    own = Description(attrs.colour, attrs.fill, attrs.shape, attrs.sides, attrs.role)
    up = None
    if parent is not None:
        up = Description(parent.colour, parent.fill, parent.shape, None, parent.role)
    return _encode(own, up)


def nameable(attrs: MaskAttributes, config: NamingConfig) -> Description:
    """The attributes a crop of this mask shows clearly enough to be named."""
    colour_ok = (
        attrs.colour is not None
        and (attrs.colour_margin or 0.0) >= config.min_colour_margin
        and (attrs.colour_fraction or 0.0) >= config.min_colour_fraction
    )
    shape_ok = attrs.shape is not None and attrs.visible_fraction >= config.min_visible_fraction
    # A pattern of two near colours looks solid; solid always shows.
    fill_ok = attrs.fill == "solid" or (attrs.fill_contrast or 0.0) >= config.min_fill_contrast
    return Description(
        colour=attrs.colour if colour_ok else None,
        fill=attrs.fill if fill_ok else None,
        shape=attrs.shape if shape_ok else None,
        sides=attrs.sides if shape_ok and attrs.shape == "polygon" and attrs.sides == 3 else None,
        role=attrs.role,
    )


def random_caption(
    attrs: MaskAttributes,
    parent: MaskAttributes | None,
    rng: np.random.Generator,
    config: CaptionConfig | None = None,
) -> Caption | None:
    """A random true caption of a mask, or None when nothing about it can be named."""
    cfg = config or CaptionConfig()
    full = nameable(attrs, cfg.naming)
    if full.colour is None and full.shape is None and full.fill is None:
        return None
    up = None if parent is None else nameable(parent, cfg.naming)
    if (
        up is not None
        and attrs.role in ROLE_WORDS
        and (up.colour is not None or up.fill is not None)
        and rng.random() < cfg.relational_prob
    ):
        return _relational(full, up, rng)
    for _ in range(8):  # keep at least one of colour, fill, shape
        d = replace(
            full,
            colour=full.colour if rng.random() < cfg.colour_prob else None,
            fill=full.fill if rng.random() < cfg.fill_prob else None,
            shape=full.shape if rng.random() < cfg.shape_prob else None,
        )
        if d.colour is not None or d.shape is not None or d.fill is not None:
            break
    else:
        d = full
    if d.shape is None:
        d = replace(d, sides=None)
    elif d.sides is not None and rng.random() < 0.5:
        d = replace(d, sides=None)  # a triangle is also "a polygon"
    return Caption(_phrase(d, rng, allow_fill_noun=True), _asserted(d))


def referring_queries(
    attributes: Sequence[MaskAttributes | None],
    parents: Sequence[int],
    config: NamingConfig | None = None,
    forms: Sequence[CaptionForm] = ("full", "short"),
) -> list[tuple[int, str, CaptionForm]]:
    """Captions that name exactly one mask of an image: ``(mask index, text, form)``.

    Args:
        attributes: per mask of the image (None: not a candidate).
        parents: per mask, the index of its parent mask, -1 for none.
        config: the naming thresholds.
        forms: ``"full"`` (colour, fill, shape and role), ``"short"`` (colour and shape, or the
            role), ``"relational"`` (a part by its parent: "the emblem on the red panel").

    A mask whose colour margin or visibility is below the thresholds might be of any colour or
    shape, so it counts against a query's uniqueness; masks with no shape (assemblies) match no
    shape word. Texts use canonical words only, so queries are reproducible.
    """
    cfg = config or NamingConfig()
    n = len(attributes)
    if len(parents) != n:
        raise InvalidInputError(f"{len(parents)} parents for {n} masks")
    cand = [i for i, a in enumerate(attributes) if a is not None]
    have = np.array([_candidate_codes(attributes, parents, i, cfg) for i in cand]).reshape(
        len(cand), len(FIELDS)
    )
    out: list[tuple[int, str, CaptionForm]] = []
    for i in cand:
        a = attributes[i]
        assert a is not None
        full = nameable(a, cfg)
        if full.shape is None or full.colour is None:
            continue
        parent = attributes[parents[i]] if parents[i] >= 0 else None
        for form in forms:
            if form == "full":
                d = replace(full, sides=None, role=None if a.role == "object" else a.role)
            elif form == "short":
                d = Description(colour=full.colour, shape=full.shape)
                if a.role != "object":
                    d = replace(d, shape=None, role=a.role)
            else:
                if parent is None or a.role not in ROLE_WORDS:
                    continue
                up = nameable(parent, cfg)
                if up.colour is None:
                    continue
                # A part's parent is named by its role, a body by its shape.
                on = Description(colour=up.colour, role=parent.role)
                if parent.role not in ROLE_WORDS:
                    on = Description(colour=up.colour, shape=up.shape)
                d = Description(role=a.role, parent=on)
            want = d.codes()
            # -3: a possible match (the field is uncertain for that mask); -1 never matches.
            hits = np.all((want < 0) | (want == have) | (have == -3), axis=1)
            if int(hits.sum()) == 1 and hits[cand.index(i)]:
                text = _phrase_canonical(d) if form != "relational" else _relational_text(d)
                out.append((i, text, form))
    return out


def zero_shot_prompts(attribute: str) -> dict[str, tuple[str, ...]]:
    """Prompts for each value of ``"colour"``, ``"fill"`` or ``"shape"`` (canonical words, a
    few templates each; embeddings of one value's prompts are averaged)."""
    if attribute == "colour":
        return {c: (f"a {c} shape", f"the {c} thing") for c in COLOURS}
    if attribute == "fill":
        return {
            f: (f"a {FILL_ADJECTIVES[f][0]} shape", f"the {FILL_ADJECTIVES[f][0]} thing")
            for f in FILLS
        }
    if attribute == "shape":
        return {
            s: (_article(SHAPE_WORDS[s][0]) + " " + SHAPE_WORDS[s][0], "the " + SHAPE_WORDS[s][0])
            for s in SHAPES
        }
    raise InvalidInputError(f"attribute must be 'colour', 'fill' or 'shape', got {attribute!r}")


# ---------------------------------------------------------------------------------------------
# Private helpers


def _encode(own: Description, parent: Description | None) -> np.ndarray:
    up = parent or Description()
    values = (
        own.colour,
        own.fill,
        own.shape,
        own.sides,
        own.role,
        up.colour,
        up.fill,
        up.shape,
        up.role,
    )
    out = np.full(len(FIELDS), -1, dtype=np.int64)
    for k, (name, v) in enumerate(zip(FIELDS, values, strict=True)):
        if v is None:
            continue
        if name == "sides":
            out[k] = int(v)
            continue
        table = _VALUES[name.removeprefix("parent_")]
        if v not in table:
            raise InvalidInputError(f"{name} must be one of {list(table)}, got {v!r}")
        out[k] = table.index(v)
    return out


def _candidate_codes(
    attributes: Sequence[MaskAttributes | None], parents: Sequence[int], i: int, cfg: NamingConfig
) -> np.ndarray:
    """Codes of a candidate for uniqueness checks: uncertain colour/shape fields are -3."""
    a = attributes[i]
    assert a is not None
    p = attributes[parents[i]] if parents[i] >= 0 else None
    codes = attribute_codes(a, p)
    named = nameable(a, cfg)
    if a.colour is not None and named.colour is None:
        codes[FIELDS.index("colour")] = -3
    if a.shape is not None and named.shape is None:
        codes[FIELDS.index("shape")] = -3
    if a.fill is not None and named.fill is None:
        codes[FIELDS.index("fill")] = -3
    if p is not None:
        up = nameable(p, cfg)
        if p.colour is not None and up.colour is None:
            codes[FIELDS.index("parent_colour")] = -3
    return codes


def _asserted(d: Description) -> Description:
    """What a phrase built from ``d`` asserts: an object's role is not said (no role noun)."""
    return replace(d, role=None) if d.role == "object" else d


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _noun(d: Description, rng: np.random.Generator | None) -> list[str]:
    def pick(options: tuple[str, ...]) -> str:
        return options[0] if rng is None else options[int(rng.integers(len(options)))]

    words: list[str] = []
    if d.shape is not None:
        words.append(TRIANGLE if d.sides == 3 else pick(SHAPE_WORDS[d.shape]))
    if d.role in ROLE_WORDS:
        words.append(pick(ROLE_WORDS[d.role]))
    if not words:
        words.append(pick(GENERIC_NOUNS))
    return words


def _phrase(
    d: Description,
    rng: np.random.Generator,
    allow_fill_noun: bool = False,
    definite: bool | None = None,
) -> str:
    """A noun phrase for ``d`` with random synonyms, word order and (unless ``definite`` says)
    article."""
    noun = _noun(d, rng)
    adjectives = [] if d.colour is None else [d.colour]
    tail: list[str] = []
    if d.fill is not None:
        if allow_fill_noun and d.fill in FILL_NOUNS and rng.random() < 0.3:
            tail = ["with", FILL_NOUNS[d.fill]]
        else:
            synonyms = FILL_ADJECTIVES[d.fill]
            fill_word = synonyms[int(rng.integers(len(synonyms)))]
            at = int(rng.integers(len(adjectives) + 1))
            adjectives.insert(at, fill_word)
    words = adjectives + noun + tail
    if definite is None:
        definite = bool(rng.random() < 0.5)
    det = "the" if definite else _article(words[0])
    return " ".join([det, *words])


def _phrase_canonical(d: Description) -> str:
    words = [FILL_ADJECTIVES[d.fill][0]] if d.fill is not None else []
    if d.colour is not None:
        words.append(d.colour)
    return " ".join(["the", *words, *_noun(d, None)])


def _relational(full: Description, up: Description, rng: np.random.Generator) -> Caption:
    """ "the emblem on the red panel": the part's role, its parent's colour and/or fill and
    role (or shape, for a body)."""
    up_d = Description(
        colour=up.colour if up.colour is not None and rng.random() < 0.9 else None,
        fill=up.fill if up.colour is None or rng.random() < 0.3 else None,
        shape=up.shape if up.role == "object" else None,
        role=up.role if up.role in ROLE_WORDS else None,
    )
    own = Description(role=full.role)
    if full.colour is not None and rng.random() < 0.3:
        own = replace(own, colour=full.colour)
    text = _phrase(own, rng) + " on " + _phrase(up_d, rng, definite=True)
    return Caption(text, replace(own, parent=up_d))


def _relational_text(d: Description) -> str:
    assert d.parent is not None
    return _phrase_canonical(replace(d, parent=None)) + " on " + _phrase_canonical(d.parent)
