"""A worker in this process (no Ray): the records of ``anyseg auto``, remote inputs and outputs,
retried batches, failures as results."""

from __future__ import annotations

import uuid
from pathlib import Path

import fsspec
import numpy as np

from anyseg.automatic import AmgConfig
from anyseg.automatic.job import LabelJobConfig
from anyseg.checkpoint import load
from anyseg.engine.inputs import ImageSource
from anyseg.engine.worker import RESULT_COLUMNS, LabelTask, LabelWorker

AMG = AmgConfig(points_per_side=3, pred_iou_thresh=0, stability_score_thresh=0)


def test_worker_writes_the_single_process_files_to_a_local_folder(
    images: Path, reference: Path, test_checkpoint: Path, tmp_path: Path
) -> None:
    worker = LabelWorker(LabelTask(str(tmp_path), AMG, LabelJobConfig()), load(test_checkpoint))
    chosen = sorted(images.iterdir())[:3]
    out = worker({"location": np.array([str(p) for p in chosen], dtype=object)})
    assert set(out) == set(RESULT_COLUMNS) and list(out["error"]) == ["", "", ""]
    for p in chosen:
        for name in (f"{p.stem}.json", f"{p.stem}_overlay.png"):
            assert (tmp_path / name).read_bytes() == (reference / name).read_bytes()
    # A retried batch: done images are not labelled again, and keep their files.
    stamp = (tmp_path / f"{chosen[0].stem}.json").stat().st_mtime_ns
    again = worker({"location": np.array([str(chosen[0])], dtype=object)})
    assert (tmp_path / f"{chosen[0].stem}.json").stat().st_mtime_ns == stamp
    assert again["masks"][0] == out["masks"][0] and again["error"][0] == ""
    worker.close()
    assert not worker.scratch.exists()


def test_remote_images_and_output_give_the_same_bytes(
    images: Path, reference: Path, test_checkpoint: Path
) -> None:
    fs = fsspec.filesystem("memory")
    root = f"/engine-worker-{uuid.uuid4().hex}"
    chosen = sorted(images.iterdir())[:2]
    for p in chosen:
        fs.pipe_file(f"{root}/in/{p.name}", p.read_bytes())
    task = LabelTask(f"memory://{root}/out", AMG, LabelJobConfig(overlay=False))
    worker = LabelWorker(task, load(test_checkpoint))
    locations = [f"memory://{root}/in/{p.name}" for p in chosen] + [f"memory://{root}/in/gone.png"]
    out = worker({"location": np.array(locations, dtype=object)})
    assert list(out["error"][:2]) == ["", ""] and "gone.png" in out["error"][2]
    assert sorted(fs.ls(f"{root}/out", detail=False)) == sorted(
        f"{root}/out/{p.stem}.json" for p in chosen
    )  # no overlay asked for, nothing for the missing image
    for p in chosen:
        assert (
            fs.cat_file(f"{root}/out/{p.stem}.json") == (reference / f"{p.stem}.json").read_bytes()
        )
    assert list(worker.scratch.iterdir()) == []  # downloads and staged files removed


def test_a_bad_image_is_a_result_not_an_exception(test_checkpoint: Path, tmp_path: Path) -> None:
    (tmp_path / "bad.png").write_bytes(b"not a png")
    worker = LabelWorker(
        LabelTask(str(tmp_path / "out"), AMG, LabelJobConfig()), load(test_checkpoint)
    )
    result = worker.label(ImageSource(str(tmp_path / "bad.png")))
    assert result.masks == 0 and "not a readable image" in result.error
    assert not (tmp_path / "out" / "bad.json").exists()
