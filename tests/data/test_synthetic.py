"""Synthetic scenes: determinism, mask hierarchy, SA-1B round trip, dataset writing, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from anyseg.cli.main import main as cli_main
from anyseg.data.sa1b import find_dataset, read_image_record
from anyseg.data.synthetic import (
    SynthConfig,
    generate_scene,
    image_seed,
    write_dataset,
)
from anyseg.errors import InvalidInputError
from anyseg.io import read_image

SMALL = SynthConfig(height=128, width=160)
SEEDS = range(12)


@pytest.fixture(scope="module")
def scenes():
    return [generate_scene(seed, SMALL) for seed in SEEDS]


def test_deterministic_and_seed_dependent() -> None:
    a, b = generate_scene(3, SMALL), generate_scene(3, SMALL)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.masks, b.masks)
    assert (a.levels, a.parents, a.labels) == (b.levels, b.parents, b.labels)
    c = generate_scene(4, SMALL)
    assert not np.array_equal(a.image, c.image)


def test_image_seed() -> None:
    assert image_seed(0, 1) == image_seed(0, 1)
    assert len({image_seed(s, i) for s in range(3) for i in range(50)}) == 150
    with pytest.raises(InvalidInputError):
        image_seed(-1, 0)


def test_shapes_and_dtypes(scenes) -> None:
    for sc in scenes:
        assert sc.image.shape == (128, 160, 3) and sc.image.dtype == np.uint8
        n = len(sc.masks)
        assert sc.masks.shape == (n, 128, 160) and sc.masks.dtype == bool
        assert len(sc.levels) == len(sc.parents) == len(sc.labels) == n
        assert n >= 1


def test_mask_hierarchy(scenes) -> None:
    min_area = max(4, SMALL.min_area_frac * 128 * 160)
    level_depth = {"whole": 0, "part": 1, "subpart": 2}
    counts = dict.fromkeys(level_depth, 0)
    for sc in scenes:
        masks = sc.masks
        areas = masks.reshape(len(masks), -1).sum(1)
        assert (areas >= min_area).all()
        wholes = [i for i, p in enumerate(sc.parents) if p < 0]
        # Visible wholes never overlap: each pixel shows one object or the background.
        assert masks[wholes].sum(0).max() <= 1
        for i, (level, p) in enumerate(zip(sc.levels, sc.parents, strict=True)):
            counts[level] += 1
            if p < 0:
                assert level == "whole"
                continue
            assert p < i  # parents come first
            assert level_depth[level] == level_depth[sc.levels[p]] + 1
            assert not (masks[i] & ~masks[p]).any(), "a part leaks out of its parent"
            assert areas[i] < 0.95 * areas[p]  # near-duplicates of the parent are dropped
            siblings = [j for j, q in enumerate(sc.parents) if q == p and j != i]
            assert not (masks[i] & masks[siblings].any(0)).any() if siblings else True
    # The hierarchy is really there across a handful of scenes.
    assert counts["whole"] > 30 and counts["part"] > 5 and counts["subpart"] > 1, counts


def test_objects_stand_out_from_their_surroundings(scenes) -> None:
    import cv2

    contrasts = []
    for sc in scenes:
        img = sc.image.astype(np.float32)
        occupied = np.zeros(img.shape[:2], bool)
        for m, p in zip(sc.masks, sc.parents, strict=True):
            if p < 0:
                occupied |= m
        for m, p in zip(sc.masks, sc.parents, strict=True):
            if p >= 0 or m.sum() < 100:
                continue
            ring = cv2.dilate(m.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
            ring &= ~occupied  # background right around the object
            if ring.sum() < 30:
                continue
            contrasts.append(np.linalg.norm(img[m].mean(0) - img[ring].mean(0)))
    assert len(contrasts) > 20
    assert np.median(contrasts) > 30, np.median(contrasts)


def test_record_round_trip(scenes, tmp_path: Path) -> None:
    from anyseg.data.sa1b import write_image_record

    sc = max(scenes, key=lambda s: s.levels.count("subpart"))
    rec = sc.to_record(7, "x.png")
    write_image_record(tmp_path / "x.json", rec)
    back = read_image_record(tmp_path / "x.json")
    np.testing.assert_array_equal(back.masks(), sc.masks)
    assert [a.level for a in back.annotations] == list(sc.levels)
    assert [a.parent_id for a in back.annotations] == [None if p < 0 else p for p in sc.parents]
    assert [a.label for a in back.annotations] == list(sc.labels)


def test_config_validation() -> None:
    with pytest.raises(InvalidInputError, match="min_objects"):
        SynthConfig(min_objects=5, max_objects=2)
    with pytest.raises(InvalidInputError, match="part_prob"):
        SynthConfig(part_prob=1.5)
    with pytest.raises(InvalidInputError, match=">= 32x32"):
        SynthConfig(height=8)
    with pytest.raises(InvalidInputError, match="unknown SynthConfig key"):
        SynthConfig.from_dict({"hieght": 3})
    assert SynthConfig.from_dict({"height": 64}).height == 64


def test_write_dataset_independent_of_workers(tmp_path: Path) -> None:
    cfg = SynthConfig(height=64, width=96, min_objects=3, max_objects=8)
    one = write_dataset(tmp_path / "one", 5, seed=9, config=cfg, workers=1, progress=False)
    two = write_dataset(tmp_path / "two", 5, seed=9, config=cfg, workers=2, progress=False)
    assert one.masks_per_level == two.masks_per_level
    pairs_one, pairs_two = find_dataset(tmp_path / "one"), find_dataset(tmp_path / "two")
    assert [p.name for p, _ in pairs_one] == [f"synth_{i:06d}.png" for i in range(5)]
    for (img1, js1), (img2, js2) in zip(pairs_one, pairs_two, strict=True):
        assert img1.read_bytes() == img2.read_bytes()
        assert js1.read_bytes() == js2.read_bytes()
    # Any image can be regenerated alone from (seed, index).
    scene = generate_scene(image_seed(9, 3), cfg)
    np.testing.assert_array_equal(read_image(pairs_one[3][0]), scene.image)
    np.testing.assert_array_equal(read_image_record(pairs_one[3][1]).masks(), scene.masks)
    meta = json.loads((tmp_path / "one" / "dataset.json").read_text())
    assert meta["seed"] == 9 and meta["count"] == 5
    assert SynthConfig.from_dict(meta["config"]) == cfg


def test_write_dataset_refuses_non_empty(tmp_path: Path) -> None:
    cfg = SynthConfig(height=48, width=48, min_objects=2, max_objects=4)
    out = tmp_path / "ds"
    write_dataset(out, 3, config=cfg, workers=1, progress=False)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(InvalidInputError, match="not empty"):
        write_dataset(out, 2, config=cfg, workers=1, progress=False)
    write_dataset(out, 2, config=cfg, workers=1, progress=False, overwrite=True)
    assert len(find_dataset(out)) == 2  # the previous run's third image is gone
    assert (out / "notes.txt").read_text() == "mine"  # other files are left alone
    with pytest.raises(InvalidInputError, match="count"):
        write_dataset(tmp_path / "x", 0, config=cfg)


def test_cli(tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli"
    args = ["synth", str(out), "--count", "2", "--seed", "3", "--size-hw", "64", "80"]
    assert cli_main([*args, "--workers", "1", "--min-objects", "3", "--max-objects", "6"]) == 0
    assert "wrote 2 images (64x80" in capsys.readouterr().out
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["config"]["max_objects"] == 6 and meta["config"]["width"] == 80
    assert cli_main([*args, "--workers", "1"]) == 1
    assert "not empty" in capsys.readouterr().err
    # --config takes a previous dataset.json; flags override it.
    again = tmp_path / "again"
    cfg_args = ["--config", str(out / "dataset.json"), "--min-objects", "2", "--workers", "1"]
    assert cli_main(["synth", str(again), "--count", "1", *cfg_args]) == 0
    meta2 = json.loads((again / "dataset.json").read_text())
    assert meta2["config"] == {**meta["config"], "min_objects": 2}
    assert cli_main(["synth", str(tmp_path / "z"), "--size", "64", "--size-hw", "64", "64"]) == 1
    assert "not both" in capsys.readouterr().err


def test_bundled_example_scene() -> None:
    """examples/scene.{png,json} match, and the README's demo point is ambiguous in 3 levels."""
    root = Path(__file__).resolve().parents[2] / "examples"
    image = read_image(root / "scene.png")
    record = read_image_record(root / "scene.json")
    assert image.shape == (record.height, record.width, 3) == (512, 512, 3)
    x, y = 331, 196
    hits = [a for a in record.annotations if a.decode()[y, x]]
    assert [a.level for a in hits] == ["whole", "part", "subpart"]
    assert hits[1].parent_id == hits[0].id and hits[2].parent_id == hits[1].id
    assert hits[0].area > hits[1].area > hits[2].area > 1000
    assert (root / "scene.png").stat().st_size < 400 * 1024
