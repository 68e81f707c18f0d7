"""The image folder: names that cannot leave it, odd names and links skipped and reported,
EXIF orientation, 16-bit images read by the one reader, rescans."""

from __future__ import annotations

import dataclasses
import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from anyseg.errors import InvalidInputError
from anyseg.io import read_image
from anyseg.server.images import (
    browser_image,
    image_size_wh,
    list_image_files,
    safe_image_path,
    scan_folder,
)
from anyseg.server.storage import ProjectStore

from .conftest import FakeGenerator, error_of, make_client, scene


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
    upright = read_image(tmp_path / "rot.jpg")
    assert upright.shape == (40, 20, 3)
    assert upright[:10].mean() > 200 and upright[-10:].mean() < 50  # strip now on top
    data, media = browser_image(tmp_path / "rot.jpg")
    assert media == "image/png"  # re-encoded so the browser shows the model's pixels
    Image.fromarray(arr).save(tmp_path / "plain.png")
    data, media = browser_image(tmp_path / "plain.png")
    assert media == "image/png" and data == (tmp_path / "plain.png").read_bytes()


def test_scan_registers_changes_and_removals(image_dir: Path, tmp_path: Path) -> None:
    store = ProjectStore(tmp_path / "p.sqlite3")
    assert list_image_files(image_dir) == (["scene_a.png", "scene_b.jpg"], [])
    assert scan_folder(store, image_dir).present == 2
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


def _service(config: Any, model: Any, **changes: Any) -> Any:
    from anyseg.server.service import AnnotationService

    return AnnotationService(
        dataclasses.replace(config, **changes), model=model, mask_generator=FakeGenerator
    )


def test_odd_names_are_skipped_and_reported(image_dir: Path, config: Any, test_model: Any) -> None:
    """A backslash, a control character or bytes that are not UTF-8 in a file name: the server
    starts, lists the other images, and says which files it left out and why."""
    png = (image_dir / "scene_a.png").read_bytes()
    (image_dir / "back\\slash.png").write_bytes(png)
    (image_dir / "new\nline.png").write_bytes(png)
    with open(os.fsencode(image_dir) + b"/caf\xe9.png", "wb") as f:  # Latin-1, not UTF-8
        f.write(png)
    (image_dir / "broken.png").write_bytes(b"not a png at all")
    svc = _service(config, test_model)
    try:
        with make_client(_app(svc)) as client:
            listing = client.get("/api/images")
            assert listing.status_code == 200, listing.text
            body = listing.json()
        assert [i["file_name"] for i in body["images"]] == ["scene_a.png", "scene_b.jpg"]
        reasons = {s["name"]: s["reason"] for s in body["skipped"]}
        assert set(reasons) == {
            "back\\slash.png",
            "new\nline.png",
            "'caf\\udce9.png'",
            "broken.png",
        }
        assert "backslash" in reasons["back\\slash.png"]
        assert "control character" in reasons["new\nline.png"]
        assert "not valid UTF-8" in reasons["'caf\\udce9.png'"]
        assert "not a readable image" in reasons["broken.png"]
    finally:
        svc.close()


def _app(svc: Any) -> Any:
    from anyseg.server.app import create_app

    return create_app(service=svc)


def test_links_out_of_the_folder_are_not_followed(
    image_dir: Path, tmp_path: Path, config: Any, test_model: Any
) -> None:
    outside = tmp_path / "secret"
    outside.mkdir()
    Image.fromarray(scene()).save(outside / "private.png")
    (image_dir / "leak.png").symlink_to(outside / "private.png")
    (image_dir / "alias.png").symlink_to(image_dir / "scene_a.png")  # inside: fine
    svc = _service(config, test_model)
    try:
        names = [i.file_name for i in svc.list_images()]
        assert names == ["alias.png", "scene_a.png", "scene_b.jpg"]
        (skipped,) = svc.last_scan.skipped
        assert skipped.name == "leak.png" and "outside the image folder" in skipped.reason
        # A served file swapped for a link after the scan is not read either.
        alias = next(i for i in svc.list_images() if i.file_name == "alias.png")
        (image_dir / "alias.png").unlink()
        (image_dir / "alias.png").symlink_to(outside / "private.png")
        with make_client(_app(svc)) as client:
            res = client.get(f"/api/images/{alias.id}/file")
            assert error_of(res)[:2] == (404, "not_found")
    finally:
        svc.close()
    followed = _service(config, test_model, follow_symlinks=True)
    try:
        assert "leak.png" in [i.file_name for i in followed.list_images()]
    finally:
        followed.close()


def _png16(path: Path) -> np.ndarray:
    """A 16-bit grayscale gradient PNG spanning 0..65535; returns the 16-bit values."""
    values = np.linspace(0, 65535, 96 * 128).reshape(96, 128).astype(np.uint16)
    Image.fromarray(values).save(path)
    with Image.open(path) as img:
        assert img.mode.startswith("I;16") or img.mode == "I"
    return values


def test_16_bit_images_are_read_by_the_one_reader(
    image_dir: Path, config: Any, test_model: Any, tmp_path: Path
) -> None:
    """Every server path sees what anyseg.io.read_image gives (scaled, not clipped): the file
    the browser gets, the embedding, pre-fill's input and the exported image."""
    from anyseg.predictor import SamPredictor
    from anyseg.server.export import export_project

    values = _png16(image_dir / "deep.png")
    expected = read_image(image_dir / "deep.png")
    assert expected.max() == 255 and len(np.unique(expected)) > 200  # scaled, not saturated
    assert np.array_equal(expected[..., 0], np.round(values / 257).astype(np.uint8))
    seen: list[np.ndarray] = []

    class Recording(FakeGenerator):
        def generate_records(self, image: np.ndarray) -> Any:
            seen.append(image.copy())
            return super().generate_records(image)

    from anyseg.server.service import AnnotationService

    svc = AnnotationService(config, model=test_model, mask_generator=Recording)
    try:
        image = next(i for i in svc.list_images() if i.file_name == "deep.png")
        with make_client(_app(svc)) as client:
            served = client.get(f"/api/images/{image.id}/file")
        assert served.headers["content-type"] == "image/png"
        with Image.open(io.BytesIO(served.content)) as img:
            assert img.mode == "RGB"  # 8 bits: the browser does no conversion of its own
            assert np.array_equal(np.asarray(img), expected)
        svc.ensure_embedding(image.id)
        emb, _ = svc.embeddings.get(image.sha256)
        reference = SamPredictor(test_model)
        reference.set_image(expected)
        assert emb is not None and torch.equal(emb.features, reference.features.cpu())
        svc.prefill(image.id)
        assert np.array_equal(seen[0], expected)
        svc.resolve_proposals(image.id, None, True)
        export_project(svc.store, svc.image_dir, tmp_path / "out", "sa1b")
        assert np.array_equal(read_image(tmp_path / "out" / "images" / "deep.png"), expected)
        with Image.open(tmp_path / "out" / "images" / "deep.png") as img:
            assert img.mode == "RGB"
    finally:
        svc.close()
