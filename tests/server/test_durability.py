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
