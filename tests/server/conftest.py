"""Fixtures of the annotation-server tests: a tiny image folder, the service and an HTTP client."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from anyseg.automatic import MaskRecord
from anyseg.modeling import Sam
from anyseg.server.config import PrefillConfig, ServerConfig


def scene(h: int = 96, w: int = 128, flip: bool = False) -> np.ndarray:
    """A dark background with a red rectangle and a green disc, (H, W, 3) uint8."""
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = (30, 40, 60)
    img[20:70, 15:60] = (220, 40, 40)
    yy, xx = np.mgrid[:h, :w]
    img[(yy - 48) ** 2 + (xx - 95) ** 2 < 18**2] = (40, 200, 60)
    return img[:, ::-1].copy() if flip else img


@pytest.fixture()
def image_dir(tmp_path: Path) -> Path:
    """Folder with two PNG/JPEG scenes and a non-image file."""
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(scene()).save(folder / "scene_a.png")
    Image.fromarray(scene(flip=True)).save(folder / "scene_b.jpg", quality=95)
    (folder / "notes.txt").write_text("not an image")
    return folder


class FakeGenerator:
    """Stands in for the automatic generator: two fixed rectangles with AMG-style records."""

    def __init__(self, model: Sam, cfg: PrefillConfig) -> None:
        self.cfg = cfg

    def generate_records(self, image: np.ndarray) -> list[MaskRecord]:
        h, w = image.shape[:2]
        out = []
        for x0, y0, x1, y1 in ((15, 20, 60, 70), (80, 30, 110, 66)):
            mask = np.zeros((h, w), bool)
            mask[y0:y1, x0:x1] = True
            out.append(MaskRecord.from_mask(mask, predicted_iou=0.95, stability_score=0.97))
        return out


@pytest.fixture()
def fake_generator() -> type[FakeGenerator]:
    return FakeGenerator


@pytest.fixture()
def config(image_dir: Path, tmp_path: Path) -> ServerConfig:
    return ServerConfig(image_dir=image_dir, project_dir=tmp_path / "project", author="tester")


@pytest.fixture()
def service(config: ServerConfig, test_model: Sam) -> Iterator[Any]:
    from anyseg.server.service import AnnotationService

    svc = AnnotationService(config, model=test_model, mask_generator=FakeGenerator)
    yield svc
    svc.close()


def make_client(app: Any, base_url: str = "http://127.0.0.1:8000", **kwargs: Any) -> Any:
    """A TestClient of ``app`` (an in-process HTTP client)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*httpx.*")
        from fastapi.testclient import TestClient

        return TestClient(app, base_url=base_url, **kwargs)


@pytest.fixture()
def client(service: Any) -> Iterator[Any]:
    from anyseg.server.app import create_app

    with make_client(create_app(service=service)) as c:
        yield c


def error_of(res: Any) -> tuple[int, str, str]:
    """(status, code, message) of an error answer, checking its JSON shape."""
    body = res.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return res.status_code, body["error"]["code"], body["error"]["message"]


# ---- ``anyseg serve`` as a user runs it (subprocess on a free loopback port) ---------------------

URL_RE = re.compile(r"open (http://127\.0\.0\.1:\d+/)(\?token=\S+)? ")


def start_server(
    image_dir: Path, project: Path, checkpoint: Path, *extra: str, timeout: float = 90.0
) -> tuple[subprocess.Popen[str], str]:
    """Run ``anyseg serve`` on a free loopback port; returns the process and the printed URL
    (with ``?token=...`` when the server requires one)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "anyseg.cli.main", "serve", str(image_dir),
         "--project", str(project), "--checkpoint", str(checkpoint),
         "--port", "0", "--author", "durable", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )  # fmt: skip
    assert proc.stdout is not None
    # Raw reads on the pipe (not readline): a buffered reader can hold the URL line while
    # select() sees nothing more to read.
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    seen = b""
    while time.monotonic() < deadline:
        if select.select([fd], [], [], 0.5)[0]:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            seen += chunk
            match = URL_RE.search(seen.decode(errors="replace"))
            if match:
                proc.output = seen.decode(errors="replace")  # type: ignore[attr-defined]
                return proc, match.group(1) + (match.group(2) or "")
        elif proc.poll() is not None:
            break
    stop_server(proc, hard=True)
    raise RuntimeError("anyseg serve did not print its URL:\n" + seen.decode(errors="replace"))


def stop_server(proc: subprocess.Popen[str], hard: bool = False) -> None:
    """SIGKILL (``hard``: nothing gets to flush) or SIGINT, then reap the process."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL if hard else signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)
    if proc.stdout is not None:
        proc.stdout.close()


class ServeProcesses:
    """Starts ``anyseg serve`` subprocesses and stops them; all are killed at teardown."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []

    def start(
        self, image_dir: Path, project: Path, checkpoint: Path, *extra: str
    ) -> tuple[subprocess.Popen[str], str]:
        proc, url = start_server(image_dir, project, checkpoint, *extra)
        self.procs.append(proc)
        return proc, url

    stop = staticmethod(stop_server)


@pytest.fixture()
def serve_process() -> Iterator[ServeProcesses]:
    procs = ServeProcesses()
    yield procs
    for proc in procs.procs:
        stop_server(proc, hard=True)
