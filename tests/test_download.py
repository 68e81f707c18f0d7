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


def test_family_table() -> None:
    from anyseg.releases import RELEASED_CHECKPOINTS

    families = {k: v.family for k, v in RELEASED_CHECKPOINTS.items()}
    assert families["mobile_sam"] == "mobile_sam" and families["hq_vit_tiny"] == "light_hq_sam"
    assert {families[f"hq_vit_{s}"] for s in "blh"} == {"sam_hq"}
    for info in RELEASED_CHECKPOINTS.values():
        assert info.url.endswith(info.name) and info.preset
    assert len(RELEASED_CHECKPOINTS["mobile_sam"].git_blob_sha1 or "") == 40


def test_family_download_is_verified_without_a_published_sha256(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No SHA-256 is published for MobileSAM or SAM-HQ: the git blob id (where the repository
    gives one) and strict loading as the family's architecture decide."""
    import dataclasses
    import http.server as hs

    import torch

    from anyseg import releases
    from anyseg.checkpoint import save
    from anyseg.config import PRESETS
    from anyseg.modeling import build_sam

    served = tmp_path / "served"
    served.mkdir()
    save(build_sam(PRESETS["test_tinyvit"]), served / "mobile.pth")
    save(build_sam(PRESETS["test"]), served / "sam.pth")
    blob = releases.git_blob_sha1(served / "mobile.pth")

    class Handler(hs.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(served), **kw)

        def log_message(self, *args):
            pass

    httpd = hs.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    entry = dataclasses.replace(
        releases.RELEASED_CHECKPOINTS["mobile_sam"], preset="test_tinyvit", git_blob_sha1=blob
    )
    try:
        monkeypatch.setitem(releases.RELEASED_CHECKPOINTS, "mobile_sam", entry)
        path = download("mobile_sam", tmp_path / "ok", url=f"{url}/mobile.pth", progress=False)
        assert path.name == "mobile_sam.pt" and torch.load(path, weights_only=True)
        with pytest.raises(DownloadError, match="git blob id"):
            download("mobile_sam", tmp_path / "bad", url=f"{url}/sam.pth", progress=False)
        assert list((tmp_path / "bad").iterdir()) == []
        no_blob = dataclasses.replace(entry, git_blob_sha1=None)
        monkeypatch.setitem(releases.RELEASED_CHECKPOINTS, "mobile_sam", no_blob)
        with pytest.raises(DownloadError, match="architecture is not test_tinyvit"):
            download("mobile_sam", tmp_path / "bad", url=f"{url}/sam.pth", progress=False)
    finally:
        httpd.shutdown()
    assert "git blob id verified" in releases.verification(entry)
