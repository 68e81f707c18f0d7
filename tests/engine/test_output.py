"""Output stores: local folders and fsspec URIs, all-or-nothing writes, listings, clean-up."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from anyseg.engine.output import OutputStore


@pytest.fixture(params=["local", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> OutputStore:
    if request.param == "local":
        return OutputStore(tmp_path / "out")
    return OutputStore(f"memory://engine-output-{uuid.uuid4().hex}/out")


def test_write_list_read_remove(store: OutputStore, tmp_path: Path) -> None:
    store.create()
    assert store.names() == [] and not store.exists("a.json")
    store.write_bytes("a.json", b"{}")
    (tmp_path / "local.png").write_bytes(b"png")
    store.put_file(tmp_path / "local.png", "a_overlay.png")
    store.write_bytes("shards/sa_000000.tar", b"tar")
    assert store.names() == ["a.json", "a_overlay.png"]  # files directly in the folder
    assert store.names("shards") == ["sa_000000.tar"] and store.names("nothing") == []
    assert store.read_bytes("a_overlay.png") == b"png" and store.exists("a.json")
    before = store.stamps()["a.json"]
    store.write_bytes("a.json", b'{"annotations": []}')
    assert store.stamps()["a.json"] != before  # a rewrite is seen
    store.remove("a.json")
    store.remove("a.json")  # twice is fine
    assert store.names() == ["a_overlay.png"]


def test_local_writes_are_atomic_and_temporaries_are_cleared(tmp_path: Path) -> None:
    store = OutputStore(f"file://{tmp_path}/out")  # file:// is the local folder
    assert store.local == tmp_path / "out"
    store.create()
    (tmp_path / "out" / ".a.json.x1y2.tmp").write_bytes(b"half")  # a killed writer's
    store.write_bytes("a.json", b"{}")
    assert store.remove_temporaries() == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.json"]
