"""MaskRecord conversions: the original's dicts, COCO RLE and SA-1B image records."""

from __future__ import annotations

import numpy as np
import torch
from pycocotools import mask as mask_utils

from anyseg.automatic.records import (
    Candidates,
    MaskRecord,
    records_from_candidates,
    to_image_record,
)
from anyseg.data.sa1b import read_image_record, write_image_record
from anyseg.ops.rle import masks_to_uncompressed_rle


def make_candidates() -> Candidates:
    masks = torch.zeros(2, 10, 12, dtype=torch.bool)
    masks[0, 2:5, 3:9] = True
    masks[1, 0, 0] = True
    return Candidates(
        rles=masks_to_uncompressed_rle(masks),
        boxes_xyxy=torch.tensor([[3, 2, 8, 4], [0, 0, 0, 0]]),
        iou_preds=torch.tensor([0.9, 0.8]),
        points_xy=torch.tensor([[4.5, 3.0], [0.25, 0.75]], dtype=torch.float64),
        stability=torch.tensor([0.97, 0.96]),
        crop_boxes_xyxy=torch.tensor([[0, 0, 12, 10], [0, 0, 6, 5]]),
    )


def test_records_from_candidates_and_dicts() -> None:
    records = records_from_candidates(make_candidates())
    first = records[0]
    assert first.area == 18 and first.bbox_xywh == (3, 2, 5, 2)
    assert first.crop_box_xywh == (0, 0, 12, 10) and records[1].crop_box_xywh == (0, 0, 6, 5)
    assert first.predicted_iou == np.float32(0.9) and first.point_xy == (4.5, 3.0)
    d = first.to_dict("coco_rle")
    assert set(d) == {
        "segmentation",
        "area",
        "bbox",
        "predicted_iou",
        "point_coords",
        "stability_score",
        "crop_box",
    }
    assert d["point_coords"] == [[4.5, 3.0]] and d["bbox"] == [3, 2, 5, 2]
    expected = mask_utils.encode(np.asfortranarray(first.mask().astype(np.uint8)))
    assert d["segmentation"]["counts"] == expected["counts"].decode()
    assert first.to_dict("binary_mask")["segmentation"].sum() == 18
    assert first.to_dict("uncompressed_rle")["segmentation"] is first.rle


def test_candidates_select_and_cat() -> None:
    c = make_candidates()
    picked = c.select(torch.tensor([1, 0]))
    assert picked.rles == [c.rles[1], c.rles[0]] and picked.iou_preds.tolist() == [
        c.iou_preds[1].item(),
        c.iou_preds[0].item(),
    ]
    assert len(c.select(torch.tensor([False, True]))) == 1
    both = Candidates.cat([c, Candidates.empty(), picked])
    assert len(both) == 4 and both.boxes_xyxy.shape == (4, 4)
    assert len(Candidates.cat([])) == 0


def test_sa1b_image_record_round_trip(tmp_path) -> None:
    records: list[MaskRecord] = records_from_candidates(make_candidates())
    image_record = to_image_record(records, image_id=7, file_name="a.png", size_hw=(10, 12))
    path = tmp_path / "a.json"
    write_image_record(path, image_record)
    back = read_image_record(path)
    assert (back.image_id, back.width, back.height) == (7, 12, 10)
    assert [a.id for a in back.annotations] == [0, 1]
    for ann, rec in zip(back.annotations, records, strict=True):
        assert np.array_equal(ann.decode(), rec.mask())
        assert ann.bbox == tuple(float(v) for v in rec.bbox_xywh)
        assert ann.point_coords == (rec.point_xy,)
        assert ann.stability_score == rec.stability_score
