"""What a careless user or an attacker hands the commands: rotated photos, decompression bombs,
file names that are not UTF-8, the output folder as input, a device that is not there."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anyseg.cli.main import main
from anyseg.data.sa1b import read_image_record

LOOSE = ["--points-per-side", "2", "--pred-iou-thresh", "0", "--stability-score-thresh", "0"]


def rotated_jpeg(path: Path) -> np.ndarray:
    """A 40x24 (WxH as stored) JPEG with EXIF orientation 6; returns the upright pixels."""
    stored = np.zeros((24, 40, 3), np.uint8)
    stored[:, :20] = (250, 20, 20)
    stored[:, 20:] = (20, 20, 250)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(path, format="JPEG", exif=exif, quality=100)
    with Image.open(path) as img:
        from PIL import ImageOps

        return np.asarray(ImageOps.exif_transpose(img).convert("RGB"))


def test_every_entry_point_sees_a_rotated_jpeg_upright(
    tmp_path: Path, test_checkpoint: Path, test_model: object
) -> None:
    """segment, auto, the predictor, training and evaluation agree: 24 wide, 40 high."""
    from anyseg.data.dataset import SegmentationDataset
    from anyseg.evaluation import open_sa1b
    from anyseg.predictor import SamPredictor

    folder = tmp_path / "in"
    folder.mkdir()
    upright = rotated_jpeg(folder / "rot.jpg")
    assert upright.shape == (40, 24, 3)

    out = tmp_path / "seg"
    args = ["segment", str(folder / "rot.jpg"), "--point", "12,30", "-o", str(out)]
    assert main([*args, "--checkpoint", str(test_checkpoint), "--device", "cpu"]) == 0
    assert Image.open(out / "rot_mask.png").size == (24, 40)  # (W, H) upright
    assert json.loads((out / "rot.json").read_text())["image"]["width"] == 24

    auto_out = tmp_path / "auto"
    assert main(["auto", str(folder), "-o", str(auto_out), "--checkpoint", str(test_checkpoint),
                 *LOOSE]) == 0  # fmt: skip
    record = read_image_record(auto_out / "rot.json")
    assert (record.width, record.height) == (24, 40)

    predictor = SamPredictor(test_model)  # type: ignore[arg-type]
    predictor.set_image(str(folder / "rot.jpg"))
    assert predictor.original_size == (40, 24)

    # What `anyseg auto` labelled is training and evaluation data with the same pixels.
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "annotations").mkdir()
    (data / "images" / "rot.jpg").write_bytes((folder / "rot.jpg").read_bytes())
    (data / "annotations" / "rot.json").write_bytes((auto_out / "rot.json").read_bytes())
    ds = SegmentationDataset(data, 64, (0, 0, 0), (1, 1, 1))
    assert len(ds) == 1 and not ds.skipped
    ev = open_sa1b(data)
    np.testing.assert_array_equal(ev.images[0].load_image(), upright)


def test_auto_skips_a_bomb_and_a_non_utf8_name_and_labels_the_rest(
    tmp_path: Path, test_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(np.full((32, 48, 3), 120, np.uint8)).save(folder / "ok.png")
    Image.new("1", (14000, 14000)).save(folder / "bomb.png")  # 25 kB, 196 Mpx decoded
    odd = folder / os.fsdecode(b"caf\xe9.png")  # Latin-1 bytes: not valid UTF-8
    Image.fromarray(np.full((30, 30, 3), 60, np.uint8)).save(odd)
    out = tmp_path / "out"
    args = ["auto", str(folder), "-o", str(out), "--checkpoint", str(test_checkpoint), *LOOSE]
    assert main(args) == 1  # something failed: the exit status says so
    err = capsys.readouterr().err
    assert "skipped" in err and "bomb.png" in err and "pixels" in err
    assert (out / "ok.json").is_file()
    assert (out / os.fsdecode(b"caf\xe9.json")).is_file()  # odd names are labelled too
    assert not (out / "bomb.json").exists()
    err.encode("utf-8")  # everything printed is printable
    # A re-run redoes only what failed; raising the cap lets the big image through the reader.
    assert main(args) == 1
    assert "2 already done" in capsys.readouterr().err


def test_auto_never_labels_its_own_outputs(
    tmp_path: Path, test_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(np.full((32, 48, 3), 90, np.uint8)).save(folder / "a.png")
    args = ["auto", str(folder), "-o", str(folder), "--checkpoint", str(test_checkpoint), *LOOSE]
    assert main(args) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["a.json", "a.png", "a_overlay.png"]
    assert main(args) == 0  # the overlay is not an input the second time
    assert "all 1 images already done" in capsys.readouterr().err
    assert sorted(p.name for p in folder.iterdir()) == ["a.json", "a.png", "a_overlay.png"]


@pytest.mark.parametrize(
    "argv",
    [
        ["segment", "IMG", "--point", "3,3", "-o", "OUT"],
        ["auto", "IMG", "-o", "OUT"],
        ["eval", "DATA", "-o", "OUT"],
        ["serve", "DIR"],
    ],
)
def test_a_missing_cuda_device_is_one_clear_line(
    argv: list[str], tmp_path: Path, test_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    image = tmp_path / "img.png"
    Image.fromarray(np.full((32, 32, 3), 9, np.uint8)).save(image)
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "annotations").mkdir()
    Image.fromarray(np.full((32, 32, 3), 9, np.uint8)).save(data / "images" / "a.png")
    mask = np.zeros((1, 32, 32), bool)
    mask[0, 4:20, 4:20] = True
    from anyseg.data.sa1b import record_from_masks, write_image_record

    write_image_record(data / "annotations" / "a.json", record_from_masks(mask, 1, "a.png"))
    names = {"IMG": str(image), "OUT": str(tmp_path / "out"), "DATA": str(data), "DIR": str(data)}
    args = [names.get(a, a) for a in argv]
    code = main([*args, "--checkpoint", str(test_checkpoint), "--device", "cuda"])
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert "no usable CUDA GPU" in err and "Traceback" not in err
