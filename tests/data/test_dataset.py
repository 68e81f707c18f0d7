"""Training samples: frames, padding, flip, determinism, bad records, COCO, collation."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from anyseg.data.coco import records_to_coco
from anyseg.data.dataset import SamplingConfig, SegmentationDataset, collate
from anyseg.data.sa1b import read_image_record, record_from_masks, write_image_record
from anyseg.errors import InvalidInputError
from anyseg.io import write_image
from anyseg.ops.transforms import resize_longest_side

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
from _scenes import make_sa1b_dataset

MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)


@pytest.fixture(scope="module")
def sa1b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_sa1b_dataset(tmp_path_factory.mktemp("ds"), num_images=2, shapes=4, seed=3)


def _dataset(
    root: Path, max_masks: int = 64, hflip_prob: float = 0.0, **kw: object
) -> SegmentationDataset:
    sampling = SamplingConfig(max_masks_per_image=max_masks, hflip_prob=hflip_prob)
    return SegmentationDataset(root, 64, MEAN, STD, sampling=sampling, **kw)  # type: ignore[arg-type]


def test_sample_is_normalized_padded_and_masks_follow_the_image(sa1b: Path) -> None:
    ds = _dataset(sa1b, max_masks=10)
    s = ds[0]
    assert s.image.shape == (3, 64, 64) and s.image.dtype == torch.float32
    assert s.input_hw == (48, 64) and s.original_hw == (96, 128)  # long side 128 -> 64
    image = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(ds.image_path(0)))
    expected = (resize_longest_side(image, 64).astype(np.float32) - MEAN) / STD
    assert np.allclose(s.image[:, :48].permute(1, 2, 0).numpy(), expected, atol=1e-5)
    assert (s.image[:, 48:] == 0).all()  # padding is zero after normalization
    record = read_image_record(sa1b / "annotations" / "img_000.json")
    assert s.masks.shape[0] == len(record.annotations) and not s.masks[:, 48:].any()
    for mask, ann_id in zip(s.masks, s.annotation_ids, strict=True):
        full = next(a for a in record.annotations if a.id == ann_id).decode()
        small = full.reshape(48, 2, 64, 2).mean(axis=(1, 3)) >= 0.5  # 2x2 area average
        agree = (mask[:48].numpy() == small).mean()
        assert agree > 0.97


def test_flip_moves_image_and_masks_together(sa1b: Path) -> None:
    ds = _dataset(sa1b, max_masks=10, hflip_prob=0.5)
    plain = _dataset(sa1b, max_masks=10)[0]
    flipped = [ds[(0, k)] for k in range(12)]
    assert {s.flipped for s in flipped} == {True, False}
    s = next(s for s in flipped if s.flipped)
    h, w = s.input_hw
    assert torch.equal(s.image[:, :h, :w], plain.image[:, :h, :w].flip(-1))
    by_id = dict(zip(plain.annotation_ids, plain.masks, strict=True))
    for mask, ann_id in zip(s.masks, s.annotation_ids, strict=True):
        assert torch.equal(mask[:h, :w], by_id[ann_id][:h, :w].flip(-1))


def test_draws_are_deterministic_and_sample_at_most_n_masks(sa1b: Path) -> None:
    ds = _dataset(sa1b, max_masks=2, hflip_prob=0.5, seed=7)
    a, b = ds[(1, 5)], ds[(1, 5)]
    assert a.annotation_ids == b.annotation_ids and a.prompt_seed == b.prompt_seed
    assert torch.equal(a.image, b.image) and torch.equal(a.masks, b.masks)
    choices = {ds[(1, k)].annotation_ids for k in range(20)}
    assert all(len(c) == 2 for c in choices) and len(choices) > 2
    assert len({ds[(1, k)].prompt_seed for k in range(20)}) == 20
    other_seed = _dataset(sa1b, max_masks=2, hflip_prob=0.5, seed=8)
    assert any(other_seed[(1, k)].prompt_seed != ds[(1, k)].prompt_seed for k in range(3))


def test_bad_records_are_reported_and_skipped(tmp_path: Path, sa1b: Path) -> None:
    root = tmp_path / "bad"
    shutil.copytree(sa1b, root)
    # img_000: one annotation with a wrong RLE size, one empty, one covering the whole image.
    path = root / "annotations" / "img_000.json"
    data = json.loads(path.read_text())
    good_ids = [a["id"] for a in data["annotations"]]
    small = record_from_masks(np.ones((1, 10, 10), bool), 0, "x.png").annotations[0]
    data["annotations"].append({**small.to_json_dict(), "id": 900})
    empty = record_from_masks(np.zeros((1, 96, 128), bool), 0, "x.png").annotations[0]
    data["annotations"].append({**empty.to_json_dict(), "id": 901})
    full = record_from_masks(np.ones((1, 96, 128), bool), 0, "x.png").annotations[0]
    data["annotations"].append({**full.to_json_dict(), "id": 902})
    path.write_text(json.dumps(data))
    # img_001: its image file is missing.
    (root / "images" / "img_001.png").unlink()
    # an annotation file that is not JSON
    (root / "images" / "img_002.png").write_bytes((root / "images" / "img_000.png").read_bytes())
    (root / "annotations" / "img_002.json").write_text("{not json")
    ds = _dataset(root, max_masks=50)
    assert len(ds) == 1
    reasons = {(Path(s.file).name, s.annotation_id): s.reason for s in ds.skipped}
    assert "does not match image size" in reasons[("img_000.json", 900)]
    assert reasons[("img_000.json", 901)] == "empty mask"
    assert "covers 100%" in reasons[("img_000.json", 902)]
    assert "not found" in reasons[("img_001.json", None)]
    assert "img_002.json" in {Path(s.file).name for s in ds.skipped}
    assert all(str(s).startswith("skipped ") for s in ds.skipped)
    assert sorted(ds[0].annotation_ids) == sorted(good_ids)


def test_no_usable_image_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "annotations").mkdir()
    write_image(tmp_path / "images" / "a.png", np.zeros((8, 8, 3), np.uint8))
    write_image_record(
        tmp_path / "annotations" / "a.json",
        record_from_masks(np.zeros((1, 8, 8), bool), 0, "a.png"),
    )
    with pytest.raises(InvalidInputError, match="no usable image"):
        _dataset(tmp_path)


def test_coco_polygons_and_rle(tmp_path: Path, sa1b: Path) -> None:
    records = [read_image_record(sa1b / "annotations" / f"img_00{i}.json") for i in range(2)]
    coco = records_to_coco(records)
    # Add a polygon annotation (a triangle) and an image whose file is missing.
    coco["annotations"].append(
        {
            "id": 5000,
            "image_id": records[0].image_id,
            "category_id": 1,
            "iscrowd": 0,
            "segmentation": [[10, 10, 60, 10, 10, 60]],
            "bbox": [10, 10, 50, 50],
            "area": 1250,
        }
    )
    coco["images"].append({"id": 77, "file_name": "gone.png", "width": 128, "height": 96})
    coco["annotations"].append({**coco["annotations"][0], "id": 5001, "image_id": 77})
    (tmp_path / "images").mkdir()
    for i in range(2):
        shutil.copy(sa1b / "images" / f"img_00{i}.png", tmp_path / "images")
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(coco))
    ds = _dataset(path, max_masks=50)
    assert len(ds) == 2
    assert any("gone.png" in s.reason for s in ds.skipped)
    s = next(ds[i] for i in range(2) if ds[i].image_id == records[0].image_id)
    assert len(s.annotation_ids) == len(records[0].annotations) + 1
    tri = s.masks[s.annotation_ids.index(5000)]
    assert tri[5:7, 5:7].all() and not tri[20:30, 20:30].any()  # triangle corner at (5, 5)


def test_collate_concatenates_masks(sa1b: Path) -> None:
    ds = _dataset(sa1b, max_masks=3)
    a, b = ds[0], ds[1]
    batch = collate([a, b])
    m = a.masks.shape[0] + b.masks.shape[0]
    assert batch.images.shape == (2, 3, 64, 64) and batch.masks.shape == (m, 64, 64)
    assert batch.mask_image_index.tolist() == [0] * a.masks.shape[0] + [1] * b.masks.shape[0]
    assert batch.input_hw.tolist() == [[48, 64], [48, 64]]
    assert batch.prompt_seeds.tolist() == [a.prompt_seed, b.prompt_seed]
