"""The one I/O module: atomic and durable writes, one image-reading policy, the pixel cap."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anyseg import io
from anyseg.errors import InvalidInputError


def _rotated_jpeg(path: Path, orientation: int = 6) -> np.ndarray:
    """Write a 40x24 (WxH) JPEG whose EXIF says ``orientation``; return the stored pixels."""
    stored = np.zeros((24, 40, 3), np.uint8)
    stored[:, :20] = (250, 10, 10)  # left half red, right half blue as stored
    stored[:, 20:] = (10, 10, 250)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored).save(path, format="JPEG", exif=exif, quality=100)
    return stored


def test_read_image_applies_exif_orientation(tmp_path: Path) -> None:
    path = tmp_path / "rot.jpg"
    _rotated_jpeg(path, orientation=6)  # 6: the viewer rotates 90 degrees clockwise
    image = io.read_image(path)
    assert image.shape == (40, 24, 3)  # upright: the stored width becomes the height
    assert io.image_size(path) == (40, 24)
    # Rotating clockwise puts the stored left (red) half on top.
    assert image[:15, :, 0].mean() > 200 and image[-15:, :, 2].mean() > 200
    # A PIL image handed over directly follows the same policy.
    with Image.open(path) as img:
        np.testing.assert_array_equal(io.to_rgb_uint8(img), image)


def test_read_image_scales_16_bit(tmp_path: Path) -> None:
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((4, 5), 65535, np.uint16)).save(path)
    image = io.read_image(path)
    assert image.dtype == np.uint8 and image.shape == (4, 5, 3)
    assert (image == 255).all()
    Image.fromarray(np.full((4, 5), 32896, np.uint16)).save(path)  # 32896 / 257 = 128
    assert (io.read_image(path) == 128).all()


def test_pixel_cap_refuses_before_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.png"
    Image.new("RGB", (300, 200)).save(path)
    with pytest.raises(InvalidInputError, match=r"60,000 pixels.*ANYSEG_MAX_IMAGE_PIXELS"):
        io.read_image(path, max_pixels=50_000)
    with pytest.raises(InvalidInputError, match="more than the limit"):
        io.image_size(path, max_pixels=50_000)
    monkeypatch.setenv(io.MAX_PIXELS_ENV, "50000")
    with pytest.raises(InvalidInputError, match="limit of 50,000"):
        io.read_image(path)
    monkeypatch.setenv(io.MAX_PIXELS_ENV, "0")  # 0: no cap
    assert io.read_image(path).shape == (200, 300, 3)
    monkeypatch.setenv(io.MAX_PIXELS_ENV, "lots")
    with pytest.raises(InvalidInputError, match="whole number"):
        io.read_image(path)


def test_decompression_bomb_is_a_clear_error(tmp_path: Path) -> None:
    # Beyond PIL's own bomb limit (2 x 89.5 Mpx), which would raise DecompressionBombError.
    path = tmp_path / "bomb.png"
    Image.new("1", (14000, 14000)).save(path)  # ~25 kB on disk, 196 Mpx decoded
    assert path.stat().st_size < 200_000
    with pytest.raises(InvalidInputError, match="196,000,000 pixels"):
        io.read_image(path)


def test_unreadable_and_oddly_named_files(tmp_path: Path) -> None:
    name = os.fsdecode(b"bad-\xff.png")  # not valid UTF-8
    path = tmp_path / name
    path.write_bytes(b"not an image")
    with pytest.raises(InvalidInputError, match="not a readable image") as info:
        io.read_image(path)
    str(info.value).encode("utf-8")  # the message itself is printable
    assert "\\udcff" in io.display_path(path)
    with pytest.raises(InvalidInputError, match="not found"):
        io.read_image(tmp_path / "missing.png")


def test_atomic_writes_fsync_and_keep_permissions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(io.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    target = tmp_path / "sub" / "a.json"
    io.atomic_write_json(target, {"x": 1})
    assert json.loads(target.read_text()) == {"x": 1}
    assert len(synced) >= 2  # the file and its folder
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in target.parent.iterdir()] == ["a.json"]  # no temporary left


def test_atomic_path_leaves_the_old_file_on_error(tmp_path: Path) -> None:
    target = tmp_path / "keep.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), io.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash while writing")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_json_refuses_non_finite_numbers(tmp_path: Path) -> None:
    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(InvalidInputError, match="non-finite"):
            io.atomic_write_json(tmp_path / "x.json", {"predicted_iou": bad})
    assert not (tmp_path / "x.json").exists()
    assert io.to_json({"a": [1, 2]}, compact=True) == '{"a":[1,2]}'


def test_write_and_list_images(tmp_path: Path) -> None:
    image = np.random.default_rng(0).integers(0, 255, (6, 7, 3), dtype=np.uint8)
    io.write_image(tmp_path / "b.png", image)
    io.write_image(tmp_path / "a.jpg", image)
    (tmp_path / ".hidden.png").write_bytes((tmp_path / "b.png").read_bytes())
    (tmp_path / "notes.txt").write_text("x")
    np.testing.assert_array_equal(io.read_image(tmp_path / "b.png"), image)  # lossless, RGB
    assert [p.name for p in io.list_images(tmp_path)] == ["a.jpg", "b.png"]
    with pytest.raises(InvalidInputError, match="suffix"):
        io.write_image(tmp_path / "c.gif", image)


def test_read_image_bytes_follows_the_file_policy(tmp_path: Path) -> None:
    from anyseg.io import read_image, read_image_bytes

    image = np.random.default_rng(0).integers(0, 255, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "a.png")
    data = (tmp_path / "a.png").read_bytes()
    assert np.array_equal(read_image_bytes(data, "shard.tar:a.png"), read_image(tmp_path / "a.png"))
    with pytest.raises(InvalidInputError, match=r"shard\.tar:b\.png is not a readable image"):
        read_image_bytes(b"nope", "shard.tar:b.png")
    with pytest.raises(InvalidInputError, match="more than the limit"):
        read_image_bytes(data, "a.png", max_pixels=10)
