"""Mask attributes: what the generator records, palette naming, and the SA-1B round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from anyseg.data.attributes import (
    COLOURS,
    FILLS,
    ROLES,
    SHAPES,
    MaskAttributes,
    dominant_colour,
    name_colour,
)
from anyseg.data.sa1b import ImageRecord, read_image_record, write_image_record
from anyseg.data.synthetic import SynthConfig, generate_scene, write_dataset
from anyseg.errors import InvalidInputError

CFG = SynthConfig(height=160, width=160)


@pytest.fixture(scope="module")
def scenes():
    return [generate_scene(seed, CFG) for seed in range(8)]


def test_palette_names_and_margins() -> None:
    assert name_colour((205, 30, 35))[0] == "red"
    assert name_colour((30, 30, 120))[0] == "blue"
    assert name_colour((250, 250, 250))[0] == "white"
    assert name_colour((128, 128, 128))[0] == "grey"
    # On an anchor the margin is large; halfway between two names it is near zero.
    _, on_anchor = name_colour((240, 220, 40))
    _, between = name_colour(((240 + 240) / 2, (135 + 220) / 2, (25 + 40) / 2))
    assert on_anchor > 15 and between < on_anchor / 2


def test_every_mask_has_attributes_that_fit_its_label(scenes) -> None:
    roles = {"whole": "object"}
    for sc in scenes:
        assert len(sc.attributes) == len(sc.masks)
        for a, label, level in zip(sc.attributes, sc.labels, sc.levels, strict=True):
            assert a.role in ROLES and 0.0 <= a.visible_fraction <= 1.0
            assert a.role == roles.get(level, label) if level == "whole" else a.role == label
            if level == "whole" and a.shape is not None:
                assert a.shape == label  # a whole's label is its body's shape
            assert a.shape is None or a.shape in SHAPES
            assert a.fill is None or a.fill in FILLS
            if a.colour is not None:
                assert a.colour in COLOURS and a.colour_margin is not None
                assert a.colour_margin >= 0 and 0 < (a.colour_fraction or 0) <= 1
                if a.colour_margin > 1:  # the stored RGB is rounded
                    assert name_colour(a.colour_rgb)[0] == a.colour
            if a.shape in ("polygon", "star"):
                assert a.sides is not None and 3 <= a.sides <= 9
    kinds = {a.shape for sc in scenes for a in sc.attributes}
    assert set(SHAPES) <= kinds | {"thin"}, kinds


def test_colour_is_what_the_image_shows(scenes) -> None:
    """The recorded colour is the most common palette name of the element's own visible pixels:
    for a mask without children those are the mask's pixels."""
    checked = striped = 0
    for sc in scenes:
        for i, a in enumerate(sc.attributes):
            children = [j for j, p in enumerate(sc.parents) if p == i]
            if a.colour is None or children or sc.masks[i].sum() < 50:
                continue
            name, fraction, mean, _ = dominant_colour(sc.image[sc.masks[i]])
            # (A child too small to be a mask of its own still covers a few of the pixels.)
            assert name == a.colour and abs(fraction - a.colour_fraction) < 0.02
            np.testing.assert_allclose(mean, a.colour_rgb, atol=2)
            checked += 1
            striped += a.fill == "stripes" and fraction < 0.7
    assert checked > 20
    assert striped > 0  # two-colour stripes: no one name covers most pixels


def test_dominant_colour() -> None:
    red, blue = np.array([205, 30, 35]), np.array([35, 70, 205])
    px = np.stack([red] * 70 + [blue] * 30)
    name, fraction, mean, margin = dominant_colour(px)
    assert (name, fraction) == ("red", 0.7) and np.allclose(mean, red) and margin > 10
    with pytest.raises(InvalidInputError):
        dominant_colour(np.zeros((0, 3)))


def test_visible_fraction_falls_with_occlusion(scenes) -> None:
    """Masks cut by the image border are less visible than the others, and occluded ones exist."""
    cut, inside = [], []
    for sc in scenes:
        for m, a in zip(sc.masks, sc.attributes, strict=True):
            touches = m[0].any() or m[-1].any() or m[:, 0].any() or m[:, -1].any()
            (cut if touches else inside).append(a.visible_fraction)
    assert len(cut) > 10 and len(inside) > 10
    assert np.median(cut) < np.median(inside) - 0.1, (np.median(cut), np.median(inside))
    assert min(inside) < 0.5  # occlusion by later objects alone


def test_attributes_round_trip_through_sa1b_files(scenes, tmp_path: Path) -> None:
    sc = scenes[0]
    write_image_record(tmp_path / "a.json", sc.to_record(0, "a.png"))
    back = read_image_record(tmp_path / "a.json")
    parsed = [MaskAttributes.from_dict(a.attributes) for a in back.annotations]
    assert parsed == list(sc.attributes)
    # Readers accept records without attributes (SA-1B itself, anyseg auto).
    data = json.loads((tmp_path / "a.json").read_text())
    for ann in data["annotations"]:
        del ann["attributes"]
    plain = ImageRecord.from_json_dict(data)
    assert all(a.attributes is None for a in plain.annotations)
    assert "attributes" not in plain.annotations[0].to_json_dict()


def test_dataset_files_carry_attributes(tmp_path: Path) -> None:
    cfg = SynthConfig(height=64, width=64, min_objects=3, max_objects=6)
    write_dataset(tmp_path / "d", 2, seed=3, config=cfg, workers=1, progress=False)
    rec = read_image_record(tmp_path / "d" / "annotations" / "synth_000001.json")
    assert rec.annotations and all(a.attributes is not None for a in rec.annotations)


def test_bad_attributes_are_clear_errors() -> None:
    good = MaskAttributes(
        role="panel", shape="star", sides=5, fill="solid", colour="red", colour_fraction=0.9
    )
    assert MaskAttributes.from_dict(good.to_dict()) == good
    assert MaskAttributes.from_dict({**good.to_dict(), "future_key": 1}) == good
    with pytest.raises(InvalidInputError, match=r"attributes\.shape"):
        MaskAttributes.from_dict({"role": "panel", "shape": "hexagram"})
    with pytest.raises(InvalidInputError, match=r"attributes\.role"):
        MaskAttributes.from_dict({"shape": "star"})
    with pytest.raises(InvalidInputError, match="visible_fraction"):
        MaskAttributes.from_dict({"role": "object", "visible_fraction": 2})
    record = {
        "image": {"image_id": 1, "file_name": "x.png", "width": 2, "height": 2},
        "annotations": [
            {
                "id": 0,
                "segmentation": {"size": [2, 2], "counts": "04"},
                "bbox": [0, 0, 2, 2],
                "area": 4,
                "attributes": ["red"],
            }
        ],
    }
    with pytest.raises(InvalidInputError, match="annotation id 0: attributes must be an object"):
        ImageRecord.from_json_dict(record, "x.json")
