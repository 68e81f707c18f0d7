"""The engine end to end on a local Ray instance (2 CPUs, the tiny test model, 20 images):
records equal to single-process ``anyseg auto``, bad images reported, tar shards that the
training and evaluation readers read, a re-run that does no work, and a worker process killed
mid-run without losing or duplicating an image."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from types import ModuleType

import pytest

from anyseg.automatic import AmgConfig
from anyseg.cli.main import main
from anyseg.data.dataset import SegmentationDataset
from anyseg.data.sa1b import read_image_record
from anyseg.engine import EngineConfig, label_dataset
from anyseg.evaluation.dataset import open_sa1b

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _helpers import FAST, NUM_IMAGES, descendants

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]  # time out, never hang


def outputs(folder: Path) -> dict[str, bytes]:
    """The per-image files of an output folder."""
    return {
        p.name: p.read_bytes()
        for p in folder.iterdir()
        if p.is_file()
        and (p.name.endswith("_overlay.png") or p.suffix == ".json")
        and p.name != "summary.json"
    }


def test_ray_run_equals_single_process_and_reruns_do_no_work(
    ray_instance: ModuleType,
    images: Path,
    reference: Path,
    test_checkpoint: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    inputs = tmp_path / "in"
    shutil.copytree(images, inputs)
    (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    out = tmp_path / "out"
    args = ["auto", str(inputs), "-o", str(out), "--checkpoint", str(test_checkpoint), *FAST]
    ray_args = ["--engine", "ray", "--workers", "2", "--batch-size", "3", "--shards", "3"]
    assert main([*args, *ray_args]) == 1  # one image failed

    # Byte for byte what the single-process command writes (JSON and overlays).
    expected = outputs(reference)
    assert len(expected) == 2 * NUM_IMAGES
    assert outputs(out) == expected
    err = capsys.readouterr().err
    assert "skipped" in err and "broken.png" in err
    assert f"{NUM_IMAGES + 1}/{NUM_IMAGES + 1} images (100%)" in err
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert [Path(f["image"]).name for f in failures] == ["broken.png"]
    assert "not a readable image" in failures[0]["error"]
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["images"], summary["labelled"], summary["failed"]) == (NUM_IMAGES + 1, 20, 1)
    assert (summary["workers"], summary["cpus_per_worker"], summary["shards"]) == (2, 0.75, 3)
    assert summary["masks"] == sum(
        len(read_image_record(reference / n).annotations) for n in expected if n.endswith(".json")
    )

    # The shards hold every labelled image once, read back by evaluation and training.
    shards = out / "shards"
    assert sorted(p.name for p in shards.glob("*.tar")) == [f"sa_00000{k}.tar" for k in range(3)]
    dataset = open_sa1b(shards)
    records = {i.record.file_name: i.record for i in dataset.images}
    assert len(dataset.images) == len(records) == NUM_IMAGES
    for item in dataset.images:
        stem = Path(item.record.file_name).stem
        assert item.record == read_image_record(reference / f"{stem}.json")
        assert item.load_image().shape[:2] == item.record.size_hw
    train = SegmentationDataset(shards, 64, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    assert len(train) + sum(s.annotation_id is None for s in train.skipped) == NUM_IMAGES
    assert train[0].image.shape == (3, 64, 64)

    # A re-run once the bad image is gone: nothing to label, no Ray, shards up to date.
    (inputs / "broken.png").unlink()
    files = [*out.glob("*.*"), *shards.iterdir()]
    stamps = {p.name: p.stat().st_mtime_ns for p in files}

    def no_ray(address: object) -> None:
        raise AssertionError("a run with nothing to do started Ray")

    monkeypatch.setattr("anyseg.engine.label.connected", no_ray)
    again = label_dataset(
        [inputs],
        out,
        amg=AmgConfig(points_per_side=3, pred_iou_thresh=0, stability_score_thresh=0),
        engine=EngineConfig(shards=3),
        checkpoint=test_checkpoint,
        progress=False,
    )
    assert (again.labelled, again.already_done, again.failed) == (0, NUM_IMAGES, 0)
    assert (again.shards, again.shards_written) == (3, 0)
    changed = {
        p.name
        for p in [*out.glob("*.*"), *shards.iterdir()]
        if p.stat().st_mtime_ns != stamps.get(p.name)
    }
    assert changed == {"failures.jsonl", "summary.json"}  # the run's own report only
    assert (out / "failures.jsonl").read_text() == ""


def test_a_killed_worker_loses_and_duplicates_no_image(
    ray_instance: ModuleType, images: Path, test_checkpoint: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    stop = threading.Event()
    killed: list[tuple[int, int]] = []  # (pid, images done when it was killed)

    def kill_one_worker_mid_run() -> None:
        while not stop.is_set():
            done = len(list(out.glob("*.json"))) if out.is_dir() else 0
            workers = [p for p, c in descendants(os.getpid()) if c.startswith("ray::MapWorker")]
            if 1 <= done < NUM_IMAGES - 4 and workers:
                os.kill(workers[0], signal.SIGKILL)
                killed.append((workers[0], done))
                return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_one_worker_mid_run, daemon=True)
    killer.start()
    try:
        summary = label_dataset(
            [images],
            out,
            # 256 prompts per image: long enough to be killed while images remain.
            amg=AmgConfig(points_per_side=16, pred_iou_thresh=0, stability_score_thresh=0),
            engine=EngineConfig(workers=2, batch_size=1),
            checkpoint=test_checkpoint,
            progress=False,
        )
    finally:
        stop.set()
        killer.join(5)
    assert killed, "the run ended before a worker could be killed mid-run"
    assert (summary.labelled, summary.failed) == (NUM_IMAGES, 0)
    names = sorted(p.name for p in out.iterdir() if p.is_file())
    stems = sorted(p.stem for p in images.iterdir())
    assert [n for n in names if n.endswith(".json") and n != "summary.json"] == sorted(
        f"{s}.json" for s in stems
    )
    for stem in stems:  # every record complete and valid
        record = read_image_record(out / f"{stem}.json")
        assert record.file_name.startswith(stem) and record.annotations
    assert not [n for n in names if n.startswith(".")]  # no temporary file left
