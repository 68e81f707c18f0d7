"""COCO instances JSON: every segmentation form against pycocotools, round trips, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from anyseg.data.coco import coco_to_records, read_coco, records_to_coco, write_coco
from anyseg.data.sa1b import record_from_masks
from anyseg.errors import InvalidInputError

H, W = 24, 32


def _coco_dict() -> dict:
    m = np.zeros((H, W), dtype=np.uint8)
    m[3:9, 4:20] = 1
    compressed = mask_utils.encode(np.asfortranarray(m))
    m2 = np.zeros((H, W), dtype=np.uint8)
    m2[10:22, 1:5] = 1
    flat = np.concatenate([[0], m2.flatten(order="F"), [1 - m2.flatten(order="F")[-1]]])
    change = np.flatnonzero(np.diff(flat))
    runs = np.diff(np.concatenate([[0], change])).tolist()
    return {
        "images": [
            {"id": 3, "file_name": "b.jpg", "width": W, "height": H},
            {"id": 1, "file_name": "a.jpg", "width": W, "height": H},
        ],
        "annotations": [
            {
                "id": 10,
                "image_id": 1,
                "category_id": 2,
                # two rings: a triangle and a square
                "segmentation": [[2, 2, 12, 2, 2, 12], [20, 10, 28, 10, 28, 18, 20, 18]],
                "area": 99.5,
                "bbox": [2, 2, 26, 16],
                "iscrowd": 0,
            },
            {
                "id": 11,
                "image_id": 1,
                "category_id": 1,
                "segmentation": {"size": [H, W], "counts": compressed["counts"].decode()},
                "area": 96,
                "bbox": [4, 3, 16, 6],
                "iscrowd": 0,
            },
            {
                "id": 12,
                "image_id": 3,
                "category_id": 1,
                "segmentation": {"size": [H, W], "counts": runs},
                "area": 48,
                "bbox": [1, 10, 4, 12],
                "iscrowd": 1,
            },
        ],
        "categories": [{"id": 1, "name": "box"}, {"id": 2, "name": "shape"}],
    }


def test_read_matches_pycocotools(tmp_path: Path) -> None:
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(_coco_dict()))
    records = read_coco(path)
    assert [r.image_id for r in records] == [1, 3]
    assert [r.file_name for r in records] == ["a.jpg", "b.jpg"]
    coco = COCO(str(path))
    n = 0
    for rec in records:
        for ann in rec.annotations:
            expected = coco.annToMask(coco.anns[ann.id]).astype(bool)
            np.testing.assert_array_equal(ann.decode(), expected)
            assert ann.area == expected.sum()
            assert isinstance(ann.segmentation["counts"], str)
            assert ann.label == coco.cats[coco.anns[ann.id]["category_id"]]["name"]
            n += 1
    assert n == 3
    assert records[0].annotations[0].decode().sum() > 60  # both polygon rings are in


def test_write_read_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    masks = rng.random((4, H, W)) > 0.7
    rec_a = record_from_masks(masks[:2], 5, "x.png", labels=["dog", None])
    rec_b = record_from_masks(masks[2:], 9, "y.png", ids=[0, 1], labels=["cat", "dog"])
    path = tmp_path / "out.json"
    write_coco(path, [rec_a, rec_b])
    data = json.loads(path.read_text())
    assert data["categories"] == [
        {"id": 1, "name": "cat"},
        {"id": 2, "name": "dog"},
        {"id": 3, "name": "object"},
    ]
    assert [a["id"] for a in data["annotations"]] == [1, 2, 3, 4]  # unique across the file
    back = read_coco(path)
    assert [r.image_id for r in back] == [5, 9]
    for orig, got in zip([rec_a, rec_b], back, strict=True):
        np.testing.assert_array_equal(got.masks(), orig.masks())
        assert [a.bbox for a in got.annotations] == [a.bbox for a in orig.annotations]
    assert [a.label for a in back[0].annotations] == ["dog", "object"]
    COCO(str(path))  # pycocotools itself accepts the file
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_duplicate_image_ids_rejected() -> None:
    rec = record_from_masks(np.zeros((1, 4, 4), bool), 1, "a.png")
    with pytest.raises(InvalidInputError, match="image_id 1 appears twice"):
        records_to_coco([rec, rec])


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("images"), "top-level key 'images'"),
        (lambda d: d["images"][0].pop("height"), "image 3 is missing key(s) ['height']"),
        (lambda d: d["annotations"][0].pop("segmentation"), "annotation id 10: missing key(s)"),
        (lambda d: d["annotations"][1].update(image_id=99), "annotation id 11: image_id 99"),
        (lambda d: d["annotations"][1].update(category_id=7), "annotation id 11: category_id 7"),
        (
            lambda d: d["annotations"][1]["segmentation"].update(size=[5, 5]),
            "annotation id 11: RLE size [5, 5] does not match",
        ),
        (
            lambda d: d["annotations"][2]["segmentation"]["counts"].append(3),
            "annotation id 12: RLE counts cover 771 pixels, but its size 24x32 has 768 (too long)",
        ),
        (
            lambda d: d["annotations"][0].update(segmentation=[[1, 2, 3]]),
            "annotation id 10: polygon",
        ),
        (lambda d: d["annotations"][0].update(segmentation=5), "must be polygons or an RLE"),
        (lambda d: d["annotations"][0].update(bbox=[1, 2]), "annotation id 10: bbox must be"),
        (lambda d: d["categories"].append({"id": 5}), "every category needs"),
    ],
)
def test_bad_coco(tmp_path: Path, mutate, message: str) -> None:
    data = _coco_dict()
    mutate(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InvalidInputError) as info:
        read_coco(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)


def test_not_json(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text("nope")
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        read_coco(path)
    with pytest.raises(InvalidInputError, match="expected a JSON object"):
        coco_to_records([1])
