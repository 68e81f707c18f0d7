"""SA-1B tar shards: writing (atomic, reproducible), reading in place, and the training and
evaluation readers on shards giving what they give on the same folder."""

from __future__ import annotations

import pickle
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from anyseg.data.dataset import SamplingConfig, SegmentationDataset
from anyseg.data.sa1b import find_dataset, read_dataset_image, read_image_record
from anyseg.data.shards import find_shard_dataset, index_shard, write_shard
from anyseg.errors import InvalidInputError
from anyseg.evaluation.dataset import open_sa1b

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
from _scenes import make_sa1b_dataset

MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_sa1b_dataset(tmp_path_factory.mktemp("ds"), num_images=3, shapes=4, seed=5)


def pack(folder: Path, out: Path, groups: list[list[str]]) -> Path:
    """Shards of the folder's images: one shard per group of stems, SA-1B style."""
    out.mkdir(parents=True, exist_ok=True)
    for k, stems in enumerate(groups):
        members = []
        for stem in stems:
            members.append((f"{stem}.png", (folder / "images" / f"{stem}.png").read_bytes()))
            members.append((f"{stem}.json", (folder / "annotations" / f"{stem}.json").read_bytes()))
        write_shard(out / f"sa_{k:06d}.tar", members)
    return out


@pytest.fixture(scope="module")
def shards(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pack(folder, tmp_path_factory.mktemp("shards"), [["img_000", "img_001"], ["img_002"]])


def test_members_are_read_in_place_and_shards_are_reproducible(tmp_path: Path) -> None:
    members = [("b.json", b'{"x": 1}'), ("a.png", bytes(range(256)) * 7)]
    write_shard(tmp_path / "one.tar", members)
    write_shard(tmp_path / "two.tar", members)
    assert (tmp_path / "one.tar").read_bytes() == (tmp_path / "two.tar").read_bytes()
    index = index_shard(tmp_path / "one.tar")
    assert [(m.name, m.read_bytes()) for m in index] == members  # stored order, exact bytes
    with tarfile.open(tmp_path / "one.tar") as tar:  # a plain tar any tool reads
        assert tar.getnames() == ["b.json", "a.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.tar", "two.tar"]  # no temp files


def test_bad_shards_and_names_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="plain file names"):
        write_shard(tmp_path / "x.tar", [("dir/a.json", b"{}")])
    with pytest.raises(InvalidInputError, match="twice"):
        write_shard(tmp_path / "x.tar", [("a.json", b"{}"), ("a.json", b"{}")])
    assert not (tmp_path / "x.tar").exists()  # nothing half-written
    with tarfile.open(tmp_path / "c.tar", "w:gz") as tar:
        tar.addfile(tarfile.TarInfo("a.json"))
    with pytest.raises(InvalidInputError, match="not an uncompressed tar"):
        index_shard(tmp_path / "c.tar")
    write_shard(tmp_path / "t.tar", [("a.png", b"x")])
    member = index_shard(tmp_path / "t.tar")[0]
    (tmp_path / "t.tar").write_bytes((tmp_path / "t.tar").read_bytes()[: member.offset])
    with pytest.raises(OSError, match="truncated"):
        member.read_bytes()


def test_find_dataset_pairs_shard_members(folder: Path, shards: Path, tmp_path: Path) -> None:
    pairs = find_dataset(shards)
    assert [(i.name, j.name) for i, j in pairs] == [
        ("img_000.png", "img_000.json"),
        ("img_001.png", "img_001.json"),
        ("img_002.png", "img_002.json"),
    ]
    assert [i.shard.name for i, _ in pairs] == ["sa_000000.tar"] * 2 + ["sa_000001.tar"]
    assert len(find_dataset(shards / "sa_000001.tar")) == 1  # one shard on its own
    image, record = pairs[2]
    assert read_image_record(record) == read_image_record(folder / "annotations/img_002.json")
    assert np.array_equal(
        read_dataset_image(image), read_dataset_image(folder / "images/img_002.png")
    )
    # A stem in two shards would be drawn twice: refused.
    twice = pack(folder, tmp_path / "twice", [["img_000"], ["img_000"]])
    with pytest.raises(InvalidInputError, match="in both"):
        find_dataset(twice)
    with pytest.raises(InvalidInputError, match=r"sa_\*\.tar"):
        find_dataset(tmp_path / "twice" / "..")  # a folder with neither layout


def test_training_reader_on_shards_equals_the_folder(folder: Path, shards: Path) -> None:
    sampling = SamplingConfig(max_masks_per_image=3, hflip_prob=0.5)
    from_folder = SegmentationDataset(folder, 64, MEAN, STD, sampling=sampling)
    from_shards = SegmentationDataset(shards, 64, MEAN, STD, sampling=sampling)
    assert len(from_shards) == len(from_folder) == 3 and not from_shards.skipped
    restored = pickle.loads(pickle.dumps(from_shards))  # what a DataLoader worker receives
    for key in [(0, 0), (1, 5), (2, 7)]:
        a, b, c = from_folder[key], from_shards[key], restored[key]
        assert torch.equal(a.image, b.image) and torch.equal(a.masks, b.masks)
        assert torch.equal(b.image, c.image) and a.annotation_ids == b.annotation_ids


def test_training_reader_reports_json_without_image_in_a_shard(
    folder: Path, tmp_path: Path
) -> None:
    root = pack(folder, tmp_path / "s", [["img_000"]])
    write_shard(
        root / "sa_000001.tar",
        [("img_009.json", (folder / "annotations/img_001.json").read_bytes())],
    )
    ds = SegmentationDataset(root, 64, MEAN, STD)
    assert len(ds) == 1
    assert [(s.file.endswith("img_009.json"), s.reason) for s in ds.skipped] == [
        (True, "image file not found")
    ]
    assert [m.name for m in find_shard_dataset(root).orphans] == ["img_009.json"]


def test_evaluation_reader_on_shards_equals_the_folder(folder: Path, shards: Path) -> None:
    a, b = open_sa1b(folder), open_sa1b(shards)
    assert b.format == "sa1b" and b.num_images_total == 3
    assert [i.record for i in a.images] == [i.record for i in b.images]
    assert all(
        np.array_equal(x.load_image(), y.load_image())
        for x, y in zip(a.images, b.images, strict=True)
    )
    assert len(open_sa1b(shards, max_images=1).images) == 1
