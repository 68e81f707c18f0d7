"""The annotation project's storage: one SQLite file (WAL mode) holding images and masks.

Every write is one transaction committed (``synchronous=FULL``) before the method returns, so the
server only acknowledges a mask that is on disk: killing the process loses nothing acknowledged.
Rows are described in :mod:`anyseg.server.records`. Each mask records the SHA-256 of the image
file it was drawn on; listing and export see the masks of the file's current content only,
unless asked for the stale ones. An accept may carry an idempotency key, stored in the same
transaction as its mask, so a client's retry returns that mask instead of adding a second one.

Older project files are migrated in place when opened (schema version in the ``meta`` table).
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from anyseg.errors import AnysegError, InvalidInputError
from anyseg.io import to_json
from anyseg.server.errors import IdempotencyConflictError, ImageChangedError, NotFoundError
from anyseg.server.records import ImageRow, MaskRow, MaskSource, MaskStatus, NewMask, utc_now

__all__ = ["ImageRow", "MaskRow", "MaskSource", "MaskStatus", "NewMask", "NotFoundError"]
__all__ += ["SCHEMA_VERSION", "ProjectStore", "utc_now"]

SCHEMA_VERSION = 2

# Version 1, as the first release wrote it; later versions are migrations on top (below).
_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    file_name TEXT NOT NULL UNIQUE,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    present INTEGER NOT NULL DEFAULT 1,
    added_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS masks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    status TEXT NOT NULL CHECK (status IN ('accepted', 'proposal')),
    source TEXT NOT NULL CHECK (source IN ('manual', 'prefill')),
    segmentation TEXT NOT NULL,
    bbox TEXT NOT NULL,
    area INTEGER NOT NULL,
    predicted_iou REAL,
    stability_score REAL,
    point_coords TEXT,
    crop_box TEXT,
    prompts TEXT,
    label TEXT,
    author TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS masks_by_image ON masks (image_id, status);
"""


def _v1_to_v2(conn: sqlite3.Connection) -> None:
    """Image SHA-256 per mask, the last editor, and idempotency keys of accepts."""
    conn.execute("ALTER TABLE masks ADD COLUMN image_sha256 TEXT NOT NULL DEFAULT ''")
    conn.execute("ALTER TABLE masks ADD COLUMN edited_by TEXT")
    conn.execute(
        "CREATE TABLE accept_keys (key TEXT PRIMARY KEY, "
        "mask_id INTEGER NOT NULL REFERENCES masks(id) ON DELETE CASCADE, "
        "request_sha256 TEXT NOT NULL, created_at TEXT NOT NULL)"
    )
    # A mask made before hashes were recorded belongs to the image's recorded content when its
    # size matches; one whose size does not (the file was replaced by another size) stays stale.
    rows = conn.execute(
        "SELECT m.id, m.segmentation, i.sha256, i.width, i.height "
        "FROM masks m JOIN images i ON i.id = m.image_id"
    ).fetchall()
    for mask_id, seg, sha, width, height in rows:
        if json.loads(seg).get("size") == [height, width]:
            conn.execute("UPDATE masks SET image_sha256 = ? WHERE id = ?", (sha, mask_id))


_MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _v1_to_v2}

# SQLite integers are signed 64-bit: a larger id cannot name a row.
_ID_MIN, _ID_MAX = -(2**63), 2**63 - 1
_UNSET: Any = object()


def _dump(value: Any) -> str | None:
    return None if value is None else to_json(value, compact=True)


def _load(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _score(value: float | None, what: str) -> float | None:
    if value is not None and not math.isfinite(value):
        raise InvalidInputError(f"{what} must be a finite number, got {value}")
    return value


def _check_id(value: int, what: str) -> int:
    if not _ID_MIN <= value <= _ID_MAX:
        raise NotFoundError(f"no {what} with that id in this project (ids are 64-bit integers)")
    return value


class ProjectStore:
    """Thread-safe access to the project's SQLite file.

    One connection guarded by a lock: the annotation server has a handful of concurrent requests
    at most and every statement is short, so a lock is simpler than a connection pool. Several
    processes may open the same file (SQLite serializes their writes).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        try:
            self._conn = sqlite3.connect(
                str(self.path), isolation_level=None, check_same_thread=False, timeout=30.0
            )
            self._conn.row_factory = sqlite3.Row
            self._conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk before we answer OK (survives kills and power loss).
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.executescript(_SCHEMA_V1)
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise AnysegError(
                f"cannot open annotation project database {self.path}: {exc}"
            ) from exc

    def _migrate(self) -> None:
        with self._transaction() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = 1 if row is None else int(row["value"])
            if version > SCHEMA_VERSION:
                raise AnysegError(
                    f"{self.path} has schema version {version}, this anyseg reads up to "
                    f"{SCHEMA_VERSION}: use a newer anyseg"
                )
            while version < SCHEMA_VERSION:
                _MIGRATIONS[version](conn)
                version += 1
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (str(version),),
            )

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return list(self._conn.execute(sql, params).fetchall())

    # ---- meta -------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0]["value"]) if rows else None

    def set_meta(self, key: str, value: str) -> None:
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    # ---- images -----------------------------------------------------------------------------

    def upsert_image(
        self, file_name: str, width: int, height: int, sha256: str, size_bytes: int, mtime_ns: int
    ) -> int:
        """Add an image or refresh its facts (same ``file_name`` keeps its id); returns the id.

        When the content changed, the masks of the old content become stale (kept) and its
        proposals are dropped (nobody reviewed them).
        """
        with self._transaction() as conn:
            row = conn.execute("SELECT id FROM images WHERE file_name = ?", (file_name,)).fetchone()
            if row is None:
                cur = conn.execute(
                    "INSERT INTO images (file_name, width, height, sha256, size_bytes, mtime_ns, "
                    "present, added_at) VALUES (?, ?, ?, ?, ?, ?, 1, ?)",
                    (file_name, width, height, sha256, size_bytes, mtime_ns, utc_now()),
                )
                return int(cur.lastrowid or 0)
            image_id = int(row["id"])
            conn.execute(
                "UPDATE images SET width = ?, height = ?, sha256 = ?, size_bytes = ?, "
                "mtime_ns = ?, present = 1 WHERE id = ?",
                (width, height, sha256, size_bytes, mtime_ns, image_id),
            )
            conn.execute(
                "DELETE FROM masks WHERE image_id = ? AND status = 'proposal' "
                "AND image_sha256 != ?",
                (image_id, sha256),
            )
            return image_id

    def set_present(self, present_names: Iterable[str]) -> None:
        """Mark exactly the images named ``present_names`` as present in the image folder."""
        names = set(present_names)
        with self._transaction() as conn:
            for row in conn.execute("SELECT id, file_name FROM images").fetchall():
                conn.execute(
                    "UPDATE images SET present = ? WHERE id = ?",
                    (1 if row["file_name"] in names else 0, int(row["id"])),
                )

    def _image_rows(self, where: str, params: Sequence[Any]) -> list[ImageRow]:
        def count(status: str, same: bool) -> str:
            return (
                f"(SELECT COUNT(*) FROM masks m WHERE m.image_id = i.id AND m.status = '{status}' "
                f"AND m.image_sha256 {'=' if same else '!='} i.sha256)"
            )

        rows = self._query(
            f"SELECT i.*, {count('accepted', True)} AS num_accepted, "
            f"{count('proposal', True)} AS num_proposals, {count('accepted', False)} AS num_stale "
            f"FROM images i WHERE {where} ORDER BY i.file_name",
            params,
        )
        return [
            ImageRow(
                id=int(r["id"]),
                file_name=str(r["file_name"]),
                width=int(r["width"]),
                height=int(r["height"]),
                sha256=str(r["sha256"]),
                size_bytes=int(r["size_bytes"]),
                mtime_ns=int(r["mtime_ns"]),
                num_accepted=int(r["num_accepted"]),
                num_proposals=int(r["num_proposals"]),
                num_stale=int(r["num_stale"]),
            )
            for r in rows
        ]

    def list_images(self, include_missing: bool = False) -> list[ImageRow]:
        """Images sorted by file name (only those present in the folder unless asked)."""
        return self._image_rows("1" if include_missing else "i.present = 1", ())

    def get_image(self, image_id: int) -> ImageRow:
        rows = self._image_rows("i.id = ?", (_check_id(image_id, "image"),))
        if not rows:
            raise NotFoundError(f"no image with id {image_id} in this project")
        return rows[0]

    def find_image(self, file_name: str) -> ImageRow | None:
        rows = self._image_rows("i.file_name = ?", (file_name,))
        return rows[0] if rows else None

    # ---- masks ------------------------------------------------------------------------------

    @staticmethod
    def _mask_row(r: sqlite3.Row) -> MaskRow:
        return MaskRow(
            id=int(r["id"]),
            image_id=int(r["image_id"]),
            status=r["status"],
            source=r["source"],
            segmentation=_load(r["segmentation"]),
            bbox=_load(r["bbox"]),
            area=int(r["area"]),
            predicted_iou=r["predicted_iou"],
            stability_score=r["stability_score"],
            point_coords=_load(r["point_coords"]),
            crop_box=_load(r["crop_box"]),
            prompts=_load(r["prompts"]),
            label=r["label"],
            author=r["author"],
            created_at=str(r["created_at"]),
            updated_at=str(r["updated_at"]),
            image_sha256=str(r["image_sha256"]),
            edited_by=r["edited_by"],
        )

    def add_masks(
        self,
        image_id: int,
        masks: Sequence[NewMask],
        *,
        expect_sha256: str | None = None,
        idempotency: tuple[str, str] | None = None,
    ) -> list[MaskRow]:
        """Insert masks of one image in one transaction; returns them with their ids.

        Args:
            image_id: the image.
            masks: the masks; each records the image's current SHA-256.
            expect_sha256: refuse (:class:`ImageChangedError`) unless the image's content is
                this one (what the client drew on).
            idempotency: (key, fingerprint of the request): when the key was stored before, the
                masks of that request are returned and nothing is added; the same key with
                another fingerprint is an :class:`IdempotencyConflictError`.
        """
        for m in masks:
            _score(m.predicted_iou, "predicted_iou")
            _score(m.stability_score, "stability_score")
        _check_id(image_id, "image")
        now = utc_now()
        ids: list[int] = []
        with self._transaction() as conn:
            image = conn.execute("SELECT sha256 FROM images WHERE id = ?", (image_id,)).fetchone()
            if image is None:
                raise NotFoundError(f"no image with id {image_id} in this project")
            sha = str(image["sha256"])
            if expect_sha256 is not None and expect_sha256 != sha:
                raise ImageChangedError(
                    f"image {image_id} changed on disk since the page loaded it: reopen it"
                )
            if idempotency is not None:
                key, fingerprint = idempotency
                seen = conn.execute(
                    "SELECT mask_id, request_sha256 FROM accept_keys WHERE key = ?", (key,)
                ).fetchone()
                if seen is not None:
                    if seen["request_sha256"] != fingerprint:
                        raise IdempotencyConflictError(
                            f"Idempotency-Key {key!r} was already used for another request"
                        )
                    ids = [int(seen["mask_id"])]
                    masks = ()
            for m in masks:
                cur = conn.execute(
                    "INSERT INTO masks (image_id, status, source, segmentation, bbox, area, "
                    "predicted_iou, stability_score, point_coords, crop_box, prompts, label, "
                    "author, created_at, updated_at, image_sha256) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        image_id,
                        m.status,
                        m.source,
                        _dump(m.segmentation),
                        _dump(m.bbox),
                        int(m.area),
                        m.predicted_iou,
                        m.stability_score,
                        _dump(m.point_coords),
                        _dump(m.crop_box),
                        _dump(m.prompts),
                        m.label,
                        m.author,
                        now,
                        now,
                        sha,
                    ),
                )
                ids.append(int(cur.lastrowid or 0))
            if idempotency is not None and masks:
                conn.execute(
                    "INSERT INTO accept_keys (key, mask_id, request_sha256, created_at) "
                    "VALUES (?, ?, ?, ?)",
                    (idempotency[0], ids[0], idempotency[1], now),
                )
        return [self.get_mask(i) for i in ids]

    def get_mask(self, mask_id: int) -> MaskRow:
        rows = self._query("SELECT * FROM masks WHERE id = ?", (_check_id(mask_id, "mask"),))
        if not rows:
            raise NotFoundError(f"no mask with id {mask_id} in this project")
        return self._mask_row(rows[0])

    def list_masks(
        self, image_id: int, status: MaskStatus | None = None, *, stale: bool | None = False
    ) -> list[MaskRow]:
        """Masks of one image in insertion order.

        Args:
            image_id: the image.
            status: only masks of this status (default: all).
            stale: False (default) for masks of the file's current content, True for those of
                earlier versions, None for both.
        """
        where = ["m.image_id = ?"]
        params: list[Any] = [_check_id(image_id, "image")]
        if status is not None:
            where.append("m.status = ?")
            params.append(status)
        if stale is not None:
            where.append(f"m.image_sha256 {'!=' if stale else '='} i.sha256")
        rows = self._query(
            "SELECT m.* FROM masks m JOIN images i ON i.id = m.image_id "
            f"WHERE {' AND '.join(where)} ORDER BY m.id",
            params,
        )
        return [self._mask_row(r) for r in rows]

    def update_mask(
        self,
        mask_id: int,
        *,
        segmentation: dict[str, Any] = _UNSET,
        bbox: list[float] = _UNSET,
        area: int = _UNSET,
        predicted_iou: float | None = _UNSET,
        prompts: dict[str, Any] | None = _UNSET,
        label: str | None = _UNSET,
        author: str | None = _UNSET,
        edited_by: str | None = _UNSET,
        status: MaskStatus = _UNSET,
    ) -> MaskRow:
        """Change the given fields of one mask (others are kept) and stamp ``updated_at``."""
        if predicted_iou is not _UNSET:
            _score(predicted_iou, "predicted_iou")
        fields: dict[str, Any] = {}
        for name, value, encode in (
            ("segmentation", segmentation, True),
            ("bbox", bbox, True),
            ("area", area, False),
            ("predicted_iou", predicted_iou, False),
            ("prompts", prompts, True),
            ("label", label, False),
            ("author", author, False),
            ("edited_by", edited_by, False),
            ("status", status, False),
        ):
            if value is not _UNSET:
                fields[name] = _dump(value) if encode else value
        fields["updated_at"] = utc_now()
        assignments = ", ".join(f"{name} = ?" for name in fields)
        with self._transaction() as conn:
            cur = conn.execute(
                f"UPDATE masks SET {assignments} WHERE id = ?",
                (*fields.values(), _check_id(mask_id, "mask")),
            )
            if cur.rowcount == 0:
                raise NotFoundError(f"no mask with id {mask_id} in this project")
        return self.get_mask(mask_id)

    def delete_mask(self, mask_id: int) -> None:
        with self._transaction() as conn:
            cur = conn.execute("DELETE FROM masks WHERE id = ?", (_check_id(mask_id, "mask"),))
            if cur.rowcount == 0:
                raise NotFoundError(f"no mask with id {mask_id} in this project")

    def replace_proposals(self, image_id: int, masks: Sequence[NewMask]) -> list[MaskRow]:
        """Drop the image's current proposals and store ``masks`` as its new proposals."""
        self.get_image(image_id)
        with self._transaction() as conn:
            conn.execute(
                "DELETE FROM masks WHERE image_id = ? AND status = 'proposal'", (image_id,)
            )
        return self.add_masks(image_id, [m for m in masks if m.status == "proposal"])

    def resolve_proposals(
        self,
        image_id: int,
        mask_ids: Sequence[int] | None,
        accept: bool,
        author: str | None = None,
    ) -> list[int]:
        """Accept or reject (delete) proposals of one image: all of them when ``mask_ids`` is
        None. Every id given must be a proposal of that image. Returns the ids handled."""
        self.get_image(image_id)
        current = {m.id for m in self.list_masks(image_id, "proposal")}
        if mask_ids is None:
            chosen = sorted(current)
        else:
            unknown = [i for i in mask_ids if i not in current]
            if unknown:
                shown = unknown if all(_ID_MIN <= i <= _ID_MAX for i in unknown) else "given"
                raise NotFoundError(f"masks {shown} are not proposals of image {image_id}")
            chosen = sorted(set(mask_ids))
        now = utc_now()
        with self._transaction() as conn:
            for mask_id in chosen:
                if accept:
                    conn.execute(
                        "UPDATE masks SET status = 'accepted', author = ?, updated_at = ? "
                        "WHERE id = ?",
                        (author, now, mask_id),
                    )
                else:
                    conn.execute("DELETE FROM masks WHERE id = ?", (mask_id,))
        return chosen
