"""AnnotationService without HTTP: the model lock under concurrent clicks, thread settings,
and pre-fill with the real automatic generator."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
import torch

from anyseg.ops.rle import decode_rle, encode_mask


def test_concurrent_clicks_on_two_images(service: Any) -> None:
    """Clicks on different images from several threads get the answers of sequential calls
    (the predictor's embedding is switched under the model lock)."""
    ids = [i.id for i in service.list_images()]
    jobs = [(ids[k % 2], [20.0 + 7 * k, 30.0 + 3 * k]) for k in range(6)]

    def click(job: tuple[int, list[float]]) -> list[str]:
        image_id, xy = job
        pred = service.predict(image_id, [xy], [1])
        return [c.segmentation["counts"] for c in pred.candidates]

    sequential = [click(j) for j in jobs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent = list(pool.map(click, jobs))
    assert concurrent == sequential
    assert sequential[0] != sequential[1]  # the two images really differ


def test_model_work_runs_on_the_compute_thread_where_a_decode_splits(
    service: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Encode, decode and pre-fill run on the service's one compute thread, whatever thread
    asks; there a one-point decode is split over the cores (lanes) as on the main thread."""
    import threading

    import anyseg.modeling.shared_decode as shared_decode
    from anyseg.ops.threads import owns_thread_count

    threads: list[tuple[str, str, bool]] = []
    lanes: list[int] = []
    for name in ("set_image", "predict"):
        original = getattr(service.predictor, name)

        def spy(*args: Any, _name: str = name, _original: Any = original, **kwargs: Any) -> Any:
            threads.append((_name, threading.current_thread().name, owns_thread_count()))
            return _original(*args, **kwargs)

        monkeypatch.setattr(service.predictor, name, spy)
    available = shared_decode.lanes_available  # the upscaling's bands (any decoder size)

    def counted(device: torch.device) -> int:
        lanes.append(available(device))
        return lanes[-1]

    monkeypatch.setattr(shared_decode, "lanes_available", counted)
    factory = service._mask_generator

    def recorded_generator(model: Any, cfg: Any) -> Any:
        generator = factory(model, cfg)
        original = generator.generate_records

        def generate(image: np.ndarray) -> Any:
            threads.append(("generate", threading.current_thread().name, owns_thread_count()))
            return original(image)

        generator.generate_records = generate
        return generator

    monkeypatch.setattr(service, "_mask_generator", recorded_generator)
    image_id = service.list_images()[0].id
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="request") as pool:
        pool.submit(service.predict, image_id, [[40, 45]], [1]).result()
        pool.submit(service.prefill, image_id).result()
    assert [t[0] for t in threads] == ["set_image", "predict", "generate"]
    assert {t[1] for t in threads} == {"anyseg-model"}
    assert all(owned for *_, owned in threads)
    assert lanes and max(lanes) == torch.get_num_threads()


def test_decode_threads_is_scoped(service: Any) -> None:
    image_id = service.list_images()[0].id
    before = torch.get_num_threads()
    reference = service.predict(image_id, [[40, 45]], [1])
    service.config = dataclasses.replace(service.config, decode_threads=1)
    single = service.predict(image_id, [[40, 45]], [1])
    assert torch.get_num_threads() == before
    for a, b in zip(reference.candidates, single.candidates, strict=True):
        assert np.array_equal(decode_rle(a.segmentation), decode_rle(b.segmentation))


def test_prefill_with_the_automatic_generator(config: Any, test_model: Any) -> None:
    from anyseg.automatic import AmgConfig
    from anyseg.server.config import PrefillConfig
    from anyseg.server.service import AnnotationService

    # Thresholds at zero so the random test model proposes something to review.
    prefill = PrefillConfig(
        amg=AmgConfig(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    )
    svc = AnnotationService(dataclasses.replace(config, prefill=prefill), model=test_model)
    try:
        image = svc.list_images()[0]
        proposals = svc.prefill(image.id)
        assert proposals, "the generator proposed nothing"
        for p in proposals:
            assert p.status == "proposal" and p.source == "prefill"
            assert p.segmentation["size"] == [image.height, image.width]
            assert p.area == int(decode_rle(p.segmentation).sum()) > 0
            assert p.predicted_iou is not None and p.stability_score is not None
            assert p.crop_box == [0.0, 0.0, float(image.width), float(image.height)]
        listed = svc.list_masks(image.id)
        assert listed.accepted == [] and [p.id for p in listed.proposals] == [
            p.id for p in proposals
        ]
    finally:
        svc.close()


def _replace(path: Any, image: np.ndarray) -> None:
    """Write another picture under the same name (a new modification time too)."""
    import os

    from PIL import Image

    Image.fromarray(image).save(path)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))


def test_a_replaced_image_keeps_its_old_masks_apart(
    service: Any, image_dir: Any, tmp_path: Any, capsys: Any
) -> None:
    """Masks record the image's SHA-256: after the file is replaced they are stale (listed
    apart, not editable, never exported against the new pixels) until the old file returns."""
    from anyseg.cli.main import main
    from anyseg.data.sa1b import find_dataset, read_image_record
    from anyseg.server.errors import ImageChangedError
    from anyseg.server.export import export_project

    from .conftest import scene

    path = image_dir / "scene_a.png"
    original = path.read_bytes()
    image = next(i for i in service.list_images() if i.file_name == "scene_a.png")
    pred = service.predict(image.id, [[40, 45]], [1])
    mask = service.accept_mask(image.id, pred.candidates[0].segmentation, label="old")
    assert mask.image_sha256 == image.sha256
    service.prefill(image.id)

    _replace(path, scene(60, 80))  # another size, as in the report
    # Without a rescan, reading the file notices the change (and rescans).
    with pytest.raises(ImageChangedError):
        service.image_path(image.id)
    now = service.get_image(image.id)
    assert (now.width, now.height, now.num_accepted, now.num_stale) == (80, 60, 0, 1)
    masks = service.list_masks(image.id)
    assert (
        masks.accepted == [] and masks.proposals == [] and [m.id for m in masks.stale] == [mask.id]
    )
    assert service.folder_report().changed == (("scene_a.png", 1),)
    with pytest.raises(ImageChangedError):
        service.update_mask(mask.id, {"label": "new"})
    with pytest.raises(ImageChangedError):  # drawn on the old pixels, sent after the change
        service.accept_mask(
            image.id, encode_mask(np.ones((60, 80), bool)), image_sha256=image.sha256
        )
    new = service.accept_mask(image.id, encode_mask(np.ones((60, 80), bool)), label="new")

    summary = export_project(service.store, image_dir, tmp_path / "out", "both")
    assert summary.skipped_changed == (("scene_a.png", 1),) and summary.num_masks == 1
    for _, json_path in find_dataset(tmp_path / "out"):  # anyseg's reader takes it
        record = read_image_record(json_path)
        assert [a.label for a in record.annotations] == ["new"]
        assert record.masks().shape[1:] == (60, 80)

    # The old file comes back: its masks are current again, the new one is stale.
    path.write_bytes(original)
    service.rescan()
    assert [m.id for m in service.list_masks(image.id).accepted] == [mask.id]
    assert [m.id for m in service.list_masks(image.id).stale] == [new.id]

    # Replaced while no server runs: the CLI export notices from the bytes and says so.
    _replace(path, scene(60, 80))
    out = tmp_path / "cli"
    assert main(["export-annotations", str(service.project_dir), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "scene_a.png changed since it was annotated: 2 masks" in printed
    assert "exported 0 masks of 0 images" in printed
    assert not list((out / "images").iterdir())

    # An embedding is never computed from new pixels under the old content's hash.
    b = next(i for i in service.list_images() if i.file_name == "scene_b.jpg")
    _replace(image_dir / "scene_b.jpg", scene(50, 70))
    with pytest.raises(ImageChangedError):
        service.ensure_embedding(b.id)
    assert service.embeddings.where(b.sha256) is None
    assert service.get_image(b.id).height == 50


def test_two_servers_on_one_project_lose_nothing(config: Any, test_model: Any) -> None:
    """Two services on one project file, four threads of mixed requests: every accept is stored
    once, ids are unique, and SQLite's integrity check passes."""
    import sqlite3

    from anyseg.server.service import AnnotationService

    a = AnnotationService(config, model=test_model)
    b = AnnotationService(config, model=test_model)
    try:
        image = a.list_images()[0]

        def work(k: int) -> list[int]:
            svc = (a, b)[k % 2]
            ids = []
            for i in range(25):
                mask = np.zeros((image.height, image.width), bool)
                mask[: 1 + (k * 25 + i) % 90, :10] = True
                ids.append(svc.accept_mask(image.id, encode_mask(mask), label=f"{k}-{i}").id)
                if i % 5 == 0:
                    svc.rescan()
                    svc.update_mask(ids[-1], {"label": f"{k}-{i}-edited"})
                if i % 7 == 0:
                    svc.delete_mask(ids.pop())
            return ids

        with ThreadPoolExecutor(max_workers=4) as pool:
            kept = [i for ids in pool.map(work, range(4)) for i in ids]
        stored = [m.id for m in a.store.list_masks(image.id)]
        assert sorted(stored) == sorted(kept) and len(set(kept)) == len(kept)
    finally:
        a.close()
        b.close()
    conn = sqlite3.connect(config.database_path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
