"""Restart durability: an acknowledged mask survives SIGKILL of ``anyseg serve``; the embedding
cache on disk makes the reopened image instant."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest


@pytest.mark.slow
def test_accept_kill_restart(
    image_dir: Path, tmp_path: Path, test_checkpoint: Path, serve_process: Any
) -> None:
    project = tmp_path / "project"
    proc, url = serve_process.start(image_dir, project, test_checkpoint)
    try:
        with httpx.Client(base_url=url, timeout=60) as http:
            image = http.get("/api/images").json()["images"][0]
            assert http.post(f"/api/images/{image['id']}/embedding").json()["source"] == "computed"
            pred = http.post(
                f"/api/images/{image['id']}/predict", json={"points": [[40, 45]], "labels": [1]}
            ).json()
            cand = pred["candidates"][pred["best"]]
            res = http.post(
                f"/api/images/{image['id']}/masks",
                json={"segmentation": cand["segmentation"], "label": "kept"},
            )
            assert res.status_code == 201
            saved = res.json()
    finally:
        serve_process.stop(proc, hard=True)  # SIGKILL right after the OK: nothing gets to flush
    assert proc.returncode == -9

    proc, url = serve_process.start(image_dir, project, test_checkpoint)
    try:
        with httpx.Client(base_url=url, timeout=60) as http:
            masks = http.get(f"/api/images/{image['id']}/masks").json()["accepted"]
            assert [(m["id"], m["label"], m["author"]) for m in masks] == [
                (saved["id"], "kept", "durable")
            ]
            assert masks[0]["segmentation"] == cand["segmentation"]
            # The embedding was cached on disk under (image hash, checkpoint hash).
            assert http.get(f"/api/images/{image['id']}/embedding").json() == {"state": "disk"}
            assert http.post(f"/api/images/{image['id']}/embedding").json()["source"] == "disk"
    finally:
        serve_process.stop(proc)
    assert proc.returncode == 0


@pytest.mark.slow
def test_retries_after_a_kill_mid_burst_add_no_duplicates(
    image_dir: Path, tmp_path: Path, test_checkpoint: Path, serve_process: Any
) -> None:
    """Accepts in a burst, SIGKILL in the middle, restart, and the client retries every accept
    with its idempotency key: each mask is stored exactly once, acknowledged ones unchanged."""
    import threading
    import time

    import numpy as np

    from anyseg.ops.rle import encode_mask

    project = tmp_path / "project"
    proc, url = serve_process.start(image_dir, project, test_checkpoint)
    with httpx.Client(base_url=url, timeout=60) as http:
        image = http.get("/api/images").json()["images"][0]
    n = 60
    bodies = []
    for i in range(n):
        mask = np.zeros((image["height"], image["width"]), bool)
        mask[i % 90 : i % 90 + 5, : 10 + i] = True
        bodies.append({"segmentation": encode_mask(mask), "label": f"m{i}"})
    keys = [f"burst-{i:04d}-key" for i in range(n)]
    acked: dict[int, int] = {}

    def burst() -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            for i in range(n):
                try:
                    res = http.post(
                        f"/api/images/{image['id']}/masks",
                        json=bodies[i],
                        headers={"Idempotency-Key": keys[i]},
                    )
                except httpx.HTTPError:
                    return  # the server died under this request: no answer came
                acked[i] = res.json()["id"]

    thread = threading.Thread(target=burst)
    thread.start()
    while len(acked) < 10 and thread.is_alive():
        time.sleep(0.005)
    serve_process.stop(proc, hard=True)
    thread.join(timeout=60)
    assert 10 <= len(acked) < n

    proc, url = serve_process.start(image_dir, project, test_checkpoint)
    with httpx.Client(base_url=url, timeout=60) as http:
        for i in range(n):  # the client retries everything it is not sure of (here: all)
            res = http.post(
                f"/api/images/{image['id']}/masks",
                json=bodies[i],
                headers={"Idempotency-Key": keys[i]},
            )
            assert res.status_code == 201, res.text
            if i in acked:
                assert res.json()["id"] == acked[i]
        masks = http.get(f"/api/images/{image['id']}/masks").json()["accepted"]
    assert sorted(m["label"] for m in masks) == sorted(f"m{i}" for i in range(n))
    serve_process.stop(proc)
