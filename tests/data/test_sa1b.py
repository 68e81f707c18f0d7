"""SA-1B records: round trips, both folder layouts, and every kind of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from anyseg.data.sa1b import (
    ImageRecord,
    MaskAnnotation,
    find_dataset,
    read_image_record,
    record_from_masks,
    write_image_record,
)
from anyseg.errors import InvalidInputError
from anyseg.io import read_image, write_image


def _masks(h: int = 20, w: int = 30) -> np.ndarray:
    masks = np.zeros((3, h, w), dtype=bool)
    masks[0, 2:10, 3:12] = True
    masks[1, 5:19, 20:29] = True
    masks[1, 0, 0] = True
    # masks[2] stays empty
    return masks


def _record() -> ImageRecord:
    return record_from_masks(
        _masks(),
        image_id=7,
        file_name="img.png",
        predicted_iou=[0.9, 0.8, 0.1],
        stability_score=[0.95, 0.5, 0.0],
        point_coords=[[[4.0, 5.0]], [[21.5, 10.0]], [[0.0, 0.0]]],
        crop_box=[[0, 0, 30, 20]] * 3,
        labels=["cat", None, "dog"],
        levels=["whole", "part", None],
        parent_ids=[None, 0, None],
    )


def test_record_from_masks_fields_match_pycocotools() -> None:
    rec = _record()
    masks = _masks()
    assert (rec.width, rec.height, rec.image_id) == (30, 20, 7)
    assert [a.id for a in rec.annotations] == [0, 1, 2]
    for ann, m in zip(rec.annotations, masks, strict=True):
        ref = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        assert ann.segmentation["counts"] == ref["counts"].decode("ascii")
        assert ann.area == int(m.sum()) == int(mask_utils.area(ref))
        assert list(ann.bbox) == [float(v) for v in mask_utils.toBbox(ref)]
    assert rec.annotations[1].bbox == (0.0, 0.0, 29.0, 19.0)
    assert rec.annotations[2].bbox == (0.0, 0.0, 0.0, 0.0)
    assert rec.annotations[1].parent_id == 0 and rec.annotations[0].parent_id is None
    np.testing.assert_array_equal(rec.masks(), masks)


def test_json_round_trip(tmp_path: Path) -> None:
    rec = _record()
    path = tmp_path / "img.json"
    write_image_record(path, rec)
    back = read_image_record(path)
    assert back == rec
    data = json.loads(path.read_text())
    assert set(data["image"]) == {"image_id", "file_name", "width", "height"}
    ann0 = data["annotations"][0]
    for key in ("id", "segmentation", "bbox", "area", "predicted_iou", "stability_score"):
        assert key in ann0
    assert ann0["point_coords"] == [[4.0, 5.0]]
    assert "label" not in data["annotations"][1]  # extras only written when set
    assert ImageRecord.from_json_dict(rec.to_json_dict()) == rec
    assert not [p for p in tmp_path.iterdir() if p.name != "img.json"]  # no temp files left


def test_minimal_record_and_uncompressed_rle() -> None:
    mask = _masks()[0]
    uncompressed = mask_utils.frPyObjects(
        {"size": [20, 30], "counts": _runs(mask)}, 20, 30
    )  # sanity: pycocotools accepts our runs
    assert mask_utils.decode(uncompressed).astype(bool).sum() == mask.sum()
    data = {
        "image": {"image_id": 1, "file_name": "a.jpg", "width": 30, "height": 20},
        "annotations": [
            {
                "id": 5,
                "segmentation": {"size": [20, 30], "counts": _runs(mask)},
                "bbox": [3, 2, 9, 8],
                "area": 72,
            }
        ],
    }
    rec = ImageRecord.from_json_dict(data)
    ann = rec.annotations[0]
    assert isinstance(ann.segmentation["counts"], str)
    np.testing.assert_array_equal(ann.decode(), mask)
    assert ann.predicted_iou is None and ann.point_coords is None and ann.crop_box is None


def _runs(mask: np.ndarray) -> list[int]:
    flat = mask.flatten(order="F").astype(np.int8)
    change = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    return np.diff(np.concatenate([[0], change])).tolist()[: len(change)]


def _good() -> dict:
    return _record().to_json_dict()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("annotations"), "missing top-level key 'annotations'"),
        (lambda d: d["image"].pop("width"), "missing key(s) ['width']"),
        (lambda d: d["annotations"][1].pop("bbox"), "annotation id 1: missing key(s) ['bbox']"),
        (lambda d: d["annotations"][0].pop("segmentation"), "annotation id 0: missing key(s)"),
        (
            lambda d: d["annotations"][2]["segmentation"].update(size=[10, 30]),
            "annotation id 2: RLE size [10, 30] does not match image size",
        ),
        (lambda d: d["annotations"][1].update(bbox=[1, 2, 3]), "annotation id 1: bbox must be"),
        (lambda d: d["annotations"][0].update(crop_box=[1]), "annotation id 0: crop_box must be"),
        (lambda d: d["annotations"][0].update(area="big"), "area must be a number"),
        (lambda d: d["annotations"][0].update(point_coords=[[1, 2, 3]]), "point_coords must be"),
        (lambda d: d["annotations"][0].update(level="tiny"), "level must be one of"),
        (lambda d: d["annotations"][0]["segmentation"].update(counts=3), "counts must be"),
        (lambda d: d["annotations"].append(7), "annotation #3: expected an object"),
    ],
)
def test_bad_records_name_file_and_annotation(tmp_path: Path, mutate, message: str) -> None:
    data = _good()
    mutate(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InvalidInputError) as info:
        read_image_record(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)


def test_not_json_and_not_object(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text("{not json")
    with pytest.raises(InvalidInputError, match=r"x\.json: not valid JSON"):
        read_image_record(path)
    path.write_text("[1, 2]")
    with pytest.raises(InvalidInputError, match="expected a JSON object"):
        read_image_record(path)


def test_record_from_masks_validates() -> None:
    with pytest.raises(InvalidInputError, match=r"\(N, H, W\)"):
        record_from_masks(np.zeros((4, 4), bool), 0, "a.png")
    with pytest.raises(InvalidInputError, match="predicted_iou has 1 entries, expected 3"):
        record_from_masks(_masks(), 0, "a.png", predicted_iou=[0.5])


def test_find_dataset_both_layouts(tmp_path: Path) -> None:
    image = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    ours = tmp_path / "ours"
    (ours / "images").mkdir(parents=True)
    (ours / "annotations").mkdir()
    for stem in ("b", "a"):
        write_image(ours / "images" / f"{stem}.png", image)
        write_image_record(ours / "annotations" / f"{stem}.json", _record())
    write_image(ours / "images" / "orphan.png", image)  # no JSON: skipped
    pairs = find_dataset(ours)
    assert [(p.name, j.name) for p, j in pairs] == [("a.png", "a.json"), ("b.png", "b.json")]
    np.testing.assert_array_equal(read_image(pairs[0][0]), image)  # png is lossless, RGB order kept

    flat = tmp_path / "sa1b"
    flat.mkdir()
    for stem in ("sa_2", "sa_1"):
        write_image(flat / f"{stem}.jpg", image)
        write_image_record(flat / f"{stem}.json", _record())
    (flat / "notes.json").write_text("{}")  # JSON without an image: skipped
    pairs = find_dataset(flat)
    assert [(p.name, j.name) for p, j in pairs] == [
        ("sa_1.jpg", "sa_1.json"),
        ("sa_2.jpg", "sa_2.json"),
    ]


def test_find_dataset_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="does not exist"):
        find_dataset(tmp_path / "nope")
    with pytest.raises(InvalidInputError, match="no dataset found"):
        find_dataset(tmp_path)


def test_write_image_validates(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="uint8"):
        write_image(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(InvalidInputError, match="suffix"):
        write_image(tmp_path / "a.bmp", np.zeros((4, 4, 3), np.uint8))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(InvalidInputError, match="not a readable image"):
        read_image(bad)


def test_mask_annotation_is_frozen() -> None:
    ann = MaskAnnotation(
        id=0, segmentation={"size": [1, 1], "counts": "01"}, bbox=(0, 0, 1, 1), area=1
    )
    with pytest.raises(AttributeError):
        ann.id = 3  # type: ignore[misc]


def test_atomic_write_gives_normal_permissions(tmp_path) -> None:
    import os

    from anyseg.io import atomic_write_bytes

    path = tmp_path / "x.json"
    atomic_write_bytes(path, b"{}")
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert path.read_bytes() == b"{}"
