"""The image folder: names that cannot leave it, EXIF orientation, rescans."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anyseg.errors import InvalidInputError
from anyseg.server.images import (
    browser_image,
    image_size_wh,
    list_image_files,
    load_image_rgb,
    safe_image_path,
    scan_folder,
)
from anyseg.server.storage import ProjectStore


@pytest.mark.parametrize(
    "name", ["../etc/passwd", "..", "a/b.png", "a\\b.png", ".hidden.png", "", "x\x00.png"]
)
def test_names_that_leave_the_folder_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidInputError):
        safe_image_path(tmp_path, name)


def test_plain_name_is_inside(tmp_path: Path) -> None:
    assert safe_image_path(tmp_path, "a..b.png") == tmp_path / "a..b.png"


def test_exif_rotation_is_applied(tmp_path: Path) -> None:
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :10] = 255  # white strip on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display rotated 90 degrees clockwise
    Image.fromarray(arr).save(tmp_path / "rot.jpg", exif=exif, quality=95)
    assert image_size_wh(tmp_path / "rot.jpg") == (20, 40)  # (W, H) as displayed
    upright = load_image_rgb(tmp_path / "rot.jpg")
    assert upright.shape == (40, 20, 3)
    assert upright[:10].mean() > 200 and upright[-10:].mean() < 50  # strip now on top
    data, media = browser_image(tmp_path / "rot.jpg")
    assert media == "image/png"  # re-encoded so the browser shows the model's pixels
    Image.fromarray(arr).save(tmp_path / "plain.png")
    data, media = browser_image(tmp_path / "plain.png")
    assert media == "image/png" and data == (tmp_path / "plain.png").read_bytes()


def test_scan_registers_changes_and_removals(image_dir: Path, tmp_path: Path) -> None:
    store = ProjectStore(tmp_path / "p.sqlite3")
    assert list_image_files(image_dir) == ["scene_a.png", "scene_b.jpg"]
    assert scan_folder(store, image_dir) == 2
    first = {i.file_name: i for i in store.list_images()}
    # Change one file's content: same id, new hash; remove the other: hidden.
    Image.fromarray(np.full((10, 12, 3), 7, np.uint8)).save(image_dir / "scene_a.png")
    os.utime(image_dir / "scene_a.png", ns=(1, 1))
    (image_dir / "scene_b.jpg").unlink()
    scan_folder(store, image_dir)
    now = store.list_images()
    assert [i.file_name for i in now] == ["scene_a.png"]
    assert now[0].id == first["scene_a.png"].id
    assert now[0].sha256 != first["scene_a.png"].sha256 and (now[0].width, now[0].height) == (
        12,
        10,
    )
    store.close()
