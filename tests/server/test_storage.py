"""The SQLite project store: WAL mode, CRUD, proposals, and data surviving a reopen."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from anyseg.ops.rle import encode_mask
from anyseg.server.storage import NewMask, NotFoundError, ProjectStore


def _mask(status: str = "accepted", label: str | None = None) -> NewMask:
    m = np.zeros((8, 10), bool)
    m[2:5, 3:7] = True
    return NewMask(
        segmentation=encode_mask(m),
        bbox=[3.0, 2.0, 4.0, 3.0],
        area=12,
        status=status,  # type: ignore[arg-type]
        source="manual" if status == "accepted" else "prefill",
        prompts={"points": [[4.0, 3.0]], "labels": [1], "box": None},
        label=label,
        author="ann",
    )


def test_wal_mode_and_full_sync(tmp_path: Path) -> None:
    store = ProjectStore(tmp_path / "p.sqlite3")
    mode = store._query("PRAGMA journal_mode")[0][0]
    sync = store._query("PRAGMA synchronous")[0][0]
    assert mode == "wal" and sync == 2  # 2 = FULL
    store.close()


def test_masks_round_trip_and_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "p.sqlite3"
    store = ProjectStore(path)
    image_id = store.upsert_image("a.png", 10, 8, "ab" * 32, 100, 1)
    assert store.upsert_image("a.png", 10, 8, "cd" * 32, 101, 2) == image_id  # same name, same id
    (row,) = store.add_masks(image_id, [_mask(label="cat")])
    assert row.label == "cat" and row.area == 12 and row.status == "accepted"
    assert row.segmentation == _mask().segmentation
    # A second, independent connection sees the committed row at once (no close needed).
    other = sqlite3.connect(path)
    assert other.execute("SELECT COUNT(*) FROM masks").fetchone()[0] == 1
    other.close()
    store.close()
    reopened = ProjectStore(path)
    (again,) = reopened.list_masks(image_id)
    assert again == row
    assert reopened.get_image(image_id).num_accepted == 1
    assert reopened.get_image(image_id).sha256 == "cd" * 32
    reopened.close()


def test_update_delete_and_unknown_ids(tmp_path: Path) -> None:
    store = ProjectStore(tmp_path / "p.sqlite3")
    image_id = store.upsert_image("a.png", 10, 8, "0" * 64, 1, 1)
    (row,) = store.add_masks(image_id, [_mask()])
    updated = store.update_mask(row.id, label="dog")
    assert updated.label == "dog" and updated.area == row.area
    assert updated.updated_at >= row.updated_at
    store.delete_mask(row.id)
    assert store.list_masks(image_id) == []
    with pytest.raises(NotFoundError):
        store.delete_mask(row.id)
    with pytest.raises(NotFoundError):
        store.update_mask(12345, label="x")
    with pytest.raises(NotFoundError):
        store.get_image(999)
    with pytest.raises(NotFoundError):
        store.add_masks(999, [_mask()])
    store.close()


def test_proposals_replace_accept_reject(tmp_path: Path) -> None:
    store = ProjectStore(tmp_path / "p.sqlite3")
    image_id = store.upsert_image("a.png", 10, 8, "0" * 64, 1, 1)
    store.add_masks(image_id, [_mask()])
    first = store.replace_proposals(image_id, [_mask("proposal")] * 3)
    second = store.replace_proposals(image_id, [_mask("proposal")] * 3)
    assert {m.id for m in first}.isdisjoint(m.id for m in second)  # old proposals dropped
    assert len(store.list_masks(image_id, "proposal")) == 3
    assert store.resolve_proposals(image_id, [second[0].id], accept=True, author="b") == [
        second[0].id
    ]
    assert store.resolve_proposals(image_id, [second[1].id], accept=False) == [second[1].id]
    with pytest.raises(NotFoundError):  # an accepted mask is not a proposal any more
        store.resolve_proposals(image_id, [second[0].id], accept=False)
    assert store.resolve_proposals(image_id, None, accept=True) == [second[2].id]
    accepted = store.list_masks(image_id, "accepted")
    assert len(accepted) == 3 and store.list_masks(image_id, "proposal") == []
    assert store.get_mask(second[0].id).author == "b"
    store.close()


def test_missing_images_hidden_but_kept(tmp_path: Path) -> None:
    store = ProjectStore(tmp_path / "p.sqlite3")
    a = store.upsert_image("a.png", 10, 8, "0" * 64, 1, 1)
    store.upsert_image("b.png", 10, 8, "1" * 64, 1, 1)
    store.set_present(["b.png"])
    assert [i.file_name for i in store.list_images()] == ["b.png"]
    assert [i.id for i in store.list_images(include_missing=True)] == [a, a + 1]
    store.close()


def test_a_version_1_project_is_migrated(tmp_path: Path) -> None:
    """Projects written before masks recorded their image's SHA-256 open as they were: masks
    whose size matches the image belong to its recorded content, others are stale."""
    from anyseg.server.storage import _SCHEMA_V1, SCHEMA_VERSION

    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript(_SCHEMA_V1)
    conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    conn.execute(
        "INSERT INTO images (file_name, width, height, sha256, size_bytes, mtime_ns, added_at) "
        "VALUES ('a.png', 10, 8, ?, 1, 1, 'then')",
        ("ab" * 32,),
    )
    seg = encode_mask(np.ones((8, 10), bool))
    wrong = encode_mask(np.ones((5, 5), bool))  # drawn on an older file of another size
    for s in (seg, wrong):
        conn.execute(
            "INSERT INTO masks (image_id, status, source, segmentation, bbox, area, author, "
            "created_at, updated_at) VALUES (1, 'accepted', 'manual', ?, '[0,0,1,1]', 1, 'ann', "
            "'then', 'then')",
            (json.dumps(s),),
        )
    conn.commit()
    conn.close()
    store = ProjectStore(path)
    assert store.get_meta("schema_version") == str(SCHEMA_VERSION)
    (kept,) = store.list_masks(1)
    (stale,) = store.list_masks(1, stale=True)
    assert kept.segmentation == seg and kept.image_sha256 == "ab" * 32 and kept.author == "ann"
    assert stale.segmentation == wrong and stale.edited_by is None
    assert store.get_image(1).num_stale == 1
    store.close()
    ProjectStore(path).close()  # opening again changes nothing


def test_ids_beyond_64_bits_are_not_found(tmp_path: Path) -> None:
    store = ProjectStore(tmp_path / "p.sqlite3")
    for call in (
        lambda: store.get_image(2**63),
        lambda: store.get_mask(-(2**63) - 1),
        lambda: store.delete_mask(2**70),
        lambda: store.update_mask(2**64, label="x"),
        lambda: store.list_masks(10**30),
    ):
        with pytest.raises(NotFoundError):
            call()
    store.close()


def test_non_finite_scores_are_refused(tmp_path: Path) -> None:
    store = ProjectStore(tmp_path / "p.sqlite3")
    image_id = store.upsert_image("a.png", 10, 8, "0" * 64, 1, 1)
    for value in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="finite"):
            store.add_masks(image_id, [dataclasses.replace(_mask(), predicted_iou=value)])
    assert store.list_masks(image_id) == []
    store.close()
