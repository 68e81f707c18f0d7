"""Captions: only words a crop can show, true of their mask, and unique referring queries."""

from __future__ import annotations

import numpy as np
import pytest

from anyseg.data.attributes import COLOURS, MaskAttributes
from anyseg.data.captions import (
    FILL_ADJECTIVES,
    FILL_NOUNS,
    GENERIC_NOUNS,
    ROLE_WORDS,
    SHAPE_WORDS,
    TRIANGLE,
    CaptionConfig,
    Description,
    nameable,
    random_caption,
    referring_queries,
    vocabulary,
    zero_shot_prompts,
)
from anyseg.data.synthetic import SynthConfig, generate_scene
from anyseg.errors import InvalidInputError


@pytest.fixture(scope="module")
def scenes():
    return [generate_scene(seed, SynthConfig(height=192, width=192)) for seed in range(6)]


def test_vocabulary_is_colour_fill_shape_and_role_words_only() -> None:
    showable = set(COLOURS) | set(GENERIC_NOUNS) | {TRIANGLE} | set(FILL_NOUNS.values())
    for table in (SHAPE_WORDS, FILL_ADJECTIVES, ROLE_WORDS):
        showable |= {w for words in table.values() for w in words}
    function_words = {"a", "an", "the", "with", "on"}
    assert set(vocabulary()) == showable | function_words
    # Size and position cannot be learned from rescaled crops without coordinates.
    for word in ("small", "large", "big", "left", "right", "top", "bottom", "centre", "corner"):
        assert word not in vocabulary()


def test_random_captions_are_true_of_their_mask(scenes) -> None:
    rng = np.random.default_rng(0)
    cfg = CaptionConfig()
    vocab = set(vocabulary())
    texts = set()
    for sc in scenes:
        for i, a in enumerate(sc.attributes):
            parent = sc.attributes[sc.parents[i]] if sc.parents[i] >= 0 else None
            for _ in range(3):
                cap = random_caption(a, parent, rng, cfg)
                if cap is None:
                    # Nothing shows clearly (e.g. an assembly, or a hidden two-colour part).
                    d = nameable(a, cfg.naming)
                    assert d.colour is None and d.shape is None and d.fill is None
                    continue
                texts.add(cap.text)
                assert set(cap.text.split()) <= vocab, cap.text
                assert cap.description.matches(a, parent), (cap.text, a)
                own = set(cap.text.split(" on ")[0].split())  # the mask's own phrase
                clear = (a.colour_margin or 0) >= cfg.naming.min_colour_margin and (
                    a.colour_fraction or 0
                ) >= cfg.naming.min_colour_fraction
                if not clear:
                    assert not own & set(COLOURS), (cap.text, a.colour_margin, a.colour_fraction)
                if a.visible_fraction < cfg.naming.min_visible_fraction:
                    shape_words = {w for ws in SHAPE_WORDS.values() for w in ws} | {TRIANGLE}
                    assert not own & shape_words, (cap.text, a.visible_fraction)
    assert len(texts) > 100  # templates and synonyms vary the wording
    assert any(" on the " in t for t in texts) and any(" with " in t for t in texts)


def test_descriptions_match_by_attribute() -> None:
    star = MaskAttributes(role="emblem", shape="star", sides=5, fill="stripes", colour="red")
    panel = MaskAttributes(role="panel", shape="rect", fill="solid", colour="blue")
    assert Description(colour="red", shape="star").matches(star)
    assert not Description(colour="blue", shape="star").matches(star)
    assert Description(role="emblem", parent=Description(colour="blue")).matches(star, panel)
    assert not Description(role="emblem", parent=Description(colour="red")).matches(star, panel)
    assembly = MaskAttributes(role="object")
    assert not Description(shape="star").matches(assembly)
    with pytest.raises(InvalidInputError, match="colour must be one of"):
        Description(colour="mauve").codes()


def _obj(colour: str, shape: str, **kw) -> MaskAttributes:
    return MaskAttributes(
        role="object",
        shape=shape,
        fill="solid",
        colour=colour,
        colour_fraction=1.0,
        colour_margin=20.0,
        **kw,
    )


def test_referring_queries_name_exactly_one_mask() -> None:
    two_red_stars = [_obj("red", "star"), _obj("red", "star"), _obj("blue", "ellipse")]
    queries = referring_queries(two_red_stars, [-1, -1, -1])
    assert {(i, t) for i, t, _ in queries} == {
        (2, "the solid blue ellipse"),
        (2, "the blue ellipse"),
    }
    # A mask whose colour is between two names might be red: the red star is then not unique.
    unsure = [_obj("red", "star"), _obj("blue", "star"), _obj("green", "blob")]
    assert any(i == 0 for i, _, _ in referring_queries(unsure, [-1, -1, -1]))
    unsure[1] = MaskAttributes(
        role="object",
        shape="star",
        fill="solid",
        colour="blue",
        colour_fraction=1.0,
        colour_margin=1.0,
    )
    assert not any(i == 0 for i, _, _ in referring_queries(unsure, [-1, -1, -1]))
    # Parts are named by role, or by their parent.
    scene = [
        _obj("green", "rect"),
        MaskAttributes(
            role="panel",
            shape="ellipse",
            fill="stripes",
            colour="yellow",
            colour_fraction=0.9,
            colour_margin=9.0,
        ),
    ]
    texts = {t for _, t, _ in referring_queries(scene, [-1, 0], forms=("short", "relational"))}
    assert texts == {"the green rectangle", "the yellow panel", "the panel on the green rectangle"}


def test_referring_queries_on_scenes_are_unique(scenes) -> None:
    total = 0
    for sc in scenes:
        queries = referring_queries(
            sc.attributes, sc.parents, forms=("full", "short", "relational")
        )
        total += len(queries)
        for i, text, _ in queries:
            assert set(text.split()) <= set(vocabulary())
            a = sc.attributes[i]
            assert a.colour is not None and a.shape is not None
    assert total > 30


def test_zero_shot_prompts_cover_every_value() -> None:
    for attribute in ("colour", "fill", "shape"):
        prompts = zero_shot_prompts(attribute)
        assert len(prompts) >= 5
        for texts in prompts.values():
            assert all(set(t.split()) <= set(vocabulary()) for t in texts)
    with pytest.raises(InvalidInputError):
        zero_shot_prompts("size")
