"""RLEs whose runs do not cover the image exactly are refused by every reader (issue: a
truncated RLE decoded uninitialized memory; a too-long one killed training mid-run)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from anyseg.data.coco import read_coco
from anyseg.data.dataset import SamplingConfig, SegmentationDataset
from anyseg.data.sa1b import (
    read_image_record,
    read_image_record_lenient,
    record_from_masks,
    write_image_record,
)
from anyseg.errors import InvalidInputError
from anyseg.evaluation import open_sa1b
from anyseg.io import write_image
from anyseg.ops.rle import check_rle, decode_rle, encode_mask, rle_area, rle_counts_total

H, W = 24, 32


def _mask(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


def _bad_counts() -> dict[str, str]:
    """Compressed counts covering fewer and more pixels than H*W."""
    good = encode_mask(_mask(2, 10, 3, 9))["counts"]
    short = mask_utils.encode(np.asfortranarray(np.zeros((H, W - 1), np.uint8)))["counts"]
    long_ = mask_utils.encode(np.asfortranarray(np.zeros((H, W + 3), np.uint8)))["counts"]
    return {"good": good, "truncated": short.decode(), "too long": long_.decode()}


def slow_total(counts: str) -> int:
    """pycocotools' rleFrString, transcribed: the sum of the runs."""
    runs: list[int] = []
    p = 0
    while p < len(counts):
        x = k = 0
        more = True
        while more:
            c = ord(counts[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        runs.append(x)
    return sum(runs)


def test_counts_total_matches_the_slow_transcription() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        h, w = (int(v) for v in rng.integers(1, 120, 2))
        mask = rng.random((h, w)) < rng.random()
        counts = encode_mask(mask)["counts"]
        assert rle_counts_total(counts) == slow_total(counts) == h * w
    with pytest.raises(InvalidInputError, match="truncated"):
        rle_counts_total("1a")  # 'a' has the continuation bit set, nothing follows
    with pytest.raises(InvalidInputError, match="invalid character"):
        rle_counts_total("12 3")


@pytest.mark.parametrize("kind", ["truncated", "too long"])
def test_decode_and_area_refuse_counts_that_do_not_cover_the_image(kind: str) -> None:
    rle = {"size": [H, W], "counts": _bad_counts()[kind]}
    for fn in (decode_rle, rle_area, check_rle):
        with pytest.raises(InvalidInputError, match=kind):
            fn(rle)
    with pytest.raises(InvalidInputError, match="cover 767 pixels"):
        decode_rle({"size": [H, W], "counts": [100, 667]})  # uncompressed, truncated


def _sa1b(root: Path, bad_kind: str) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    image = np.random.default_rng(1).integers(0, 255, (H, W, 3), dtype=np.uint8)
    write_image(root / "images" / "sa_1.png", image)
    masks = np.stack([_mask(2, 10, 3, 9), _mask(12, 20, 10, 30)])
    record = record_from_masks(masks, 1, "sa_1.png", ids=[7, 8])
    write_image_record(root / "annotations" / "sa_1.json", record)
    path = root / "annotations" / "sa_1.json"
    data = json.loads(path.read_text())
    data["annotations"][1]["segmentation"]["counts"] = _bad_counts()[bad_kind]
    path.write_text(json.dumps(data))
    return root


@pytest.mark.parametrize("kind", ["truncated", "too long"])
def test_every_reader_skips_the_bad_mask_naming_file_and_id(tmp_path: Path, kind: str) -> None:
    root = _sa1b(tmp_path / "ds", kind)
    path = root / "annotations" / "sa_1.json"
    with pytest.raises(InvalidInputError, match=rf"sa_1\.json.*annotation.*8.*{kind}"):
        read_image_record(path)
    record, skipped = read_image_record_lenient(path)
    assert [a.id for a in record.annotations] == [7] and [i for i, _ in skipped] == [8]

    # Training: the good mask stays, the bad one is reported with file and id.
    ds = SegmentationDataset(root, 64, (0, 0, 0), (1, 1, 1), sampling=SamplingConfig())
    assert len(ds) == 1 and ds[0].masks.shape[0] == 1
    assert [(Path(s.file).name, s.annotation_id) for s in ds.skipped] == [("sa_1.json", 8)]

    # Evaluation: the same mask left out, and said so in the dataset (the report's notes).
    ev = open_sa1b(root)
    assert [a.id for a in ev.images[0].record.annotations] == [7]
    assert len(ev.skipped) == 1 and "annotation 8" in ev.skipped[0] and kind in ev.skipped[0]


def test_coco_reader_refuses_a_truncated_rle(tmp_path: Path) -> None:
    data = {
        "images": [{"id": 1, "file_name": "a.png", "height": H, "width": W}],
        "annotations": [
            {
                "id": 5,
                "image_id": 1,
                "category_id": 1,
                "segmentation": {"size": [H, W], "counts": _bad_counts()["truncated"]},
            }
        ],
        "categories": [{"id": 1, "name": "thing"}],
    }
    path = tmp_path / "c.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InvalidInputError, match=r"annotation id 5: .*truncated"):
        read_coco(path)


def test_training_on_a_bad_record_does_not_die(tmp_path: Path) -> None:
    from anyseg.training.config import config_from_dict
    from anyseg.training.loop import train

    root = _sa1b(tmp_path / "ds", "too long")
    shutil.copy(root / "images" / "sa_1.png", root / "images" / "sa_2.png")
    shutil.copy(root / "annotations" / "sa_1.json", root / "annotations" / "sa_2.json")
    cfg = config_from_dict(
        {
            "model": {"preset": "test", "image_encoder": {"img_size": 64}},
            "data": {"train": str(root), "num_workers": 0},
            "prompts": {"num_iterative_points": 1, "mask_only_iterations": 0},
            "loss": {"resolution": "low_res"},
            "run": {
                "steps": 2,
                "out_dir": str(tmp_path / "run"),
                "device": "cpu",
                "tensorboard": False,
                "checkpoint_every": 0,
                "log_every": 1,
            },
        }
    )
    result = train(cfg, progress=False)
    assert result.step == 2 and (tmp_path / "run" / "model.safetensors").is_file()
