"""``anyseg.releases.download`` against a local HTTP server on loopback."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from anyseg.errors import DownloadError
from anyseg.releases import OFFICIAL_CHECKPOINTS, download

PAYLOAD = b"sam weights " * 5000


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[str]:
    (tmp_path / "w.pth").write_bytes(PAYLOAD)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(tmp_path), **kw)

        def log_message(self, *args):  # keep test output quiet
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_official_table() -> None:
    assert set(OFFICIAL_CHECKPOINTS) == {"vit_b", "vit_l", "vit_h"}
    for info in OFFICIAL_CHECKPOINTS.values():
        assert info.url.endswith(info.name) and len(info.sha256) == 64


def test_download_verifies_hash(server: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    good = hashlib.sha256(PAYLOAD).hexdigest()
    path = download("vit_b", out, url=f"{server}/w.pth", sha256=good, progress=False)
    assert path.name == "sam_vit_b_01ec64.pth" and path.read_bytes() == PAYLOAD
    # a second call finds the verified file and does not fetch again
    assert download("vit_b", out, url=f"{server}/missing", sha256=good, progress=False) == path


def test_hash_mismatch_leaves_nothing(server: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(DownloadError, match="SHA-256 mismatch"):
        download("vit_l", out, url=f"{server}/w.pth", sha256="0" * 64, progress=False)
    assert list(out.iterdir()) == []


def test_offline_fails_fast(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(DownloadError, match="cannot download"):
        download("vit_h", tmp_path, url=f"http://127.0.0.1:{port}/x.pth", progress=False)
    assert time.monotonic() - start < 5
    assert list(tmp_path.iterdir()) == []


def test_http_error_and_unknown_name(server: str, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="404"):
        download("vit_b", tmp_path, url=f"{server}/nope.pth", progress=False)
    with pytest.raises(DownloadError, match="unknown checkpoint"):
        download("vit_x", tmp_path)
