"""Export of a project: SA-1B folder readable by find_dataset, COCO JSON, and the CLI."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from anyseg.cli.main import main
from anyseg.data.coco import read_coco
from anyseg.data.sa1b import find_dataset, read_image_record
from anyseg.io import read_image
from anyseg.ops.rle import encode_mask
from anyseg.server.export import export_project, open_project


def _rect(h: int, w: int, x0: int, y0: int, x1: int, y1: int) -> dict[str, Any]:
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return encode_mask(m)


def test_export_reads_back(service: Any, image_dir: Path, tmp_path: Path) -> None:
    # Same stem twice, a BMP (not a dataset format) and an EXIF-rotated JPEG.
    Image.fromarray(np.full((96, 128, 3), 90, np.uint8)).save(image_dir / "scene_a.bmp")
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.full((30, 50, 3), 200, np.uint8)).save(image_dir / "rot.jpg", exif=exif)
    service.rescan()
    ids = {i.file_name: i.id for i in service.list_images()}
    a = service.accept_mask(ids["scene_a.png"], _rect(96, 128, 15, 20, 60, 70), label="red")
    b = service.accept_mask(ids["scene_a.png"], _rect(96, 128, 80, 30, 110, 66))
    service.accept_mask(ids["scene_a.bmp"], _rect(96, 128, 0, 0, 5, 5), label="corner")
    service.accept_mask(ids["rot.jpg"], _rect(50, 30, 0, 0, 30, 10), label="top")  # upright H=50
    summary = export_project(service.store, image_dir, tmp_path / "out", "both")
    assert (summary.num_images, summary.num_masks) == (3, 4)  # scene_b has no mask: left out

    pairs = find_dataset(tmp_path / "out")
    names = sorted(p[0].name for p in pairs)
    assert names == sorted(["rot.jpg", "scene_a.png", f"scene_a-{ids['scene_a.bmp']}.png"])
    by_name = {p[0].name: p for p in pairs}
    rec = read_image_record(by_name["scene_a.png"][1])
    assert [x.id for x in rec.annotations] == [a.id, b.id]
    assert rec.annotations[0].label == "red" and rec.annotations[1].label is None
    assert rec.annotations[0].bbox == (15.0, 20.0, 45.0, 50.0)
    assert rec.annotations[0].crop_box == (0.0, 0.0, 128.0, 96.0)
    assert np.array_equal(rec.masks()[0], np.asarray(_mask_of(a.segmentation)))
    rot_img = read_image(by_name["rot.jpg"][0])
    assert rot_img.shape == (50, 30, 3)  # written upright, as annotated
    assert read_image_record(by_name["rot.jpg"][1]).size_hw == (50, 30)

    coco = {r.file_name: r for r in read_coco(tmp_path / "out" / "coco_instances.json")}
    assert sorted(coco) == names
    assert sorted(a.label for a in coco["scene_a.png"].annotations) == ["object", "red"]


def _mask_of(seg: dict[str, Any]) -> np.ndarray:
    from anyseg.ops.rle import decode_rle

    return decode_rle(seg)


def test_cli_export(
    service: Any, image_dir: Path, config: Any, tmp_path: Path, capsys: Any
) -> None:
    image_id = service.list_images()[0].id
    service.accept_mask(image_id, _rect(96, 128, 15, 20, 60, 70))
    service.store.replace_proposals(image_id, [])  # proposals are never exported
    out = tmp_path / "out"
    project = str(config.resolved_project_dir)
    assert main(["export-annotations", project, "-o", str(out), "--format", "sa1b"]) == 0
    assert "exported 1 masks of 1 images" in capsys.readouterr().out
    assert len(find_dataset(out)) == 1 and not (out / "coco_instances.json").exists()
    # An earlier export is not overwritten silently.
    assert main(["export-annotations", project, "-o", str(out)]) == 1
    assert "--overwrite" in capsys.readouterr().err
    args = ["export-annotations", project, "-o", str(out), "--overwrite", "--include-empty"]
    assert main(args) == 0
    assert len(find_dataset(out)) == 2 and (out / "coco_instances.json").is_file()
    # Not a project / images moved.
    assert main(["export-annotations", str(tmp_path / "nowhere"), "-o", str(out)]) == 1
    assert "no annotation project" in capsys.readouterr().err
    moved = tmp_path / "moved"
    image_dir.rename(moved)
    with pytest.raises(ValueError, match="--images"):
        open_project(config.resolved_project_dir)
    store, folder = open_project(config.resolved_project_dir, moved)
    assert folder == moved and len(store.list_images()) == 2
    store.close()


def test_default_project_inside_image_folder(image_dir: Path, test_model: Any) -> None:
    from anyseg.server import ServerConfig
    from anyseg.server.service import AnnotationService

    svc = AnnotationService(ServerConfig(image_dir=image_dir), model=test_model)
    svc.close()
    assert (image_dir / ".anyseg-project" / "annotations.sqlite3").is_file()
    store, folder = open_project(image_dir)  # the image folder works as PROJECT too
    assert folder == image_dir.resolve()
    store.close()


def _annotate_both_images(service: Any) -> None:
    for image in service.list_images():
        pred = service.predict(image.id, [[40, 45]], [1])
        service.accept_mask(image.id, pred.candidates[pred.best].segmentation, label="thing")


def test_training_reads_the_export(service: Any, tmp_path: Path) -> None:
    """Both exported forms load as training data (the SA-1B folder and the COCO file)."""
    from anyseg.data.dataset import SegmentationDataset

    _annotate_both_images(service)
    out = tmp_path / "out"
    export_project(service.store, service.image_dir, out, "both")
    cfg = service.model.config
    for source in (out, out / "coco_instances.json"):
        data = SegmentationDataset(source, 256, cfg.pixel_mean, cfg.pixel_std)
        assert len(data) == 2, source
        sample = data[0]
        assert tuple(sample.image.shape) == (3, 256, 256) and sample.masks.shape[0] == 1


@pytest.mark.slow
def test_train_command_on_the_export(service: Any, tmp_path: Path) -> None:
    """What a user does after annotating: export, then `anyseg train --data OUT`."""
    _annotate_both_images(service)
    out = tmp_path / "out"
    export_project(service.store, service.image_dir, out, "sa1b")
    config = Path(__file__).resolve().parents[2] / "configs" / "test.toml"
    run_dir = tmp_path / "run"
    args = ["train", "--config", str(config), "--data", str(out), "--out", str(run_dir)]
    assert main([*args, "--steps", "1", "--quiet"]) == 0
    assert (run_dir / "model.safetensors").is_file()


def test_exports_copy_images_never_link_them(
    service: Any, image_dir: Path, tmp_path: Path, config: Any, test_model: Any
) -> None:
    """Editing the export never edits the originals: no hard links, no symbolic links (also
    for an image that is a link inside the folder); links out of the folder are not exported
    unless asked."""
    import dataclasses
    import zipfile

    from anyseg.server.service import AnnotationService

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    Image.fromarray(np.full((96, 128, 3), 50, np.uint8)).save(outside / "far.png")
    (image_dir / "near.png").symlink_to(image_dir / "scene_a.png")
    svc = AnnotationService(dataclasses.replace(config, follow_symlinks=True), model=test_model)
    (image_dir / "far.png").symlink_to(outside / "far.png")
    svc.rescan()
    try:
        for image in svc.list_images():
            svc.accept_mask(image.id, _rect(image.height, image.width, 0, 0, 5, 5))
        summary = export_project(
            svc.store, image_dir, tmp_path / "out", "sa1b", follow_symlinks=True
        )
        assert summary.num_images == 4
        strict = export_project(service.store, image_dir, tmp_path / "strict", "sa1b")
        assert strict.skipped_missing == ("far.png",)  # a link out of the folder: not read
        zipped = zipfile.ZipFile(__import__("io").BytesIO(svc.export_zip("sa1b")))
        assert sorted(n for n in zipped.namelist() if n.startswith("images/")) == [
            "images/far.png", "images/near.png", "images/scene_a.png", "images/scene_b.jpg"
        ]  # fmt: skip
    finally:
        svc.close()
    for out in (tmp_path / "out" / "images").iterdir():
        assert not out.is_symlink() and out.stat().st_nlink == 1, out
        original = image_dir / out.name
        assert out.read_bytes() == original.read_bytes()
        assert not os.path.samefile(out, original)
    (tmp_path / "out" / "images" / "scene_a.png").write_bytes(b"edited")
    assert read_image(image_dir / "scene_a.png").shape == (96, 128, 3)


def test_leftover_export_folders_are_removed_at_start(
    config: Any, test_model: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    """A server killed during a zip export leaves its temporary folder; the next start removes
    it, but never another live server's, another user's or a fresh one of an older version."""
    import subprocess
    import sys
    import tempfile
    import time

    from anyseg.server.export import TEMP_PREFIX
    from anyseg.server.service import AnnotationService

    tmp_root = tmp_path / "tmp"
    tmp_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_root))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    dead_pid = int(dead.stdout)
    paths = {
        "dead": tmp_root / f"{TEMP_PREFIX}{dead_pid}-abc",
        "alive": tmp_root / f"{TEMP_PREFIX}{os.getpid()}-abc",
        "old": tmp_root / f"{TEMP_PREFIX}k3j2h1x9",
        "fresh": tmp_root / f"{TEMP_PREFIX}q8w7e6r5",
    }
    for path in paths.values():
        (path / "export" / "images").mkdir(parents=True)
        (path / "export" / "images" / "a.png").write_bytes(b"x")
    hour_ago = time.time() - 3600
    os.utime(paths["old"], (hour_ago, hour_ago))
    AnnotationService(config, model=test_model).close()
    assert {k for k, p in paths.items() if p.exists()} == {"alive", "fresh"}
    # The page's own exports leave nothing behind.
    svc = AnnotationService(config, model=test_model)
    try:
        svc.accept_mask(svc.list_images()[0].id, _rect(96, 128, 0, 0, 5, 5))
        assert svc.export_zip("both")
    finally:
        svc.close()
    assert {p.name for p in tmp_root.iterdir()} == {paths["alive"].name, paths["fresh"].name}
