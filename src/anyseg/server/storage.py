"""The annotation project's storage: one SQLite file (WAL mode) holding images and masks.

Every write is one transaction committed (``synchronous=FULL``) before the method returns, so the
server only acknowledges a mask that is on disk: killing the process loses nothing acknowledged.

Masks are stored as COCO RLE (``{"size": [h, w], "counts": str}``) with their box ``[x, y, w, h]``
and area in original-image pixels, the prompts that produced them (``{"points": [[x, y]],
"labels": [1|0], "box": [x0, y0, x1, y1] | None}``), an optional label, the author and UTC
timestamps. A mask is either ``accepted`` (part of the dataset) or a ``proposal`` from pre-fill
that a person has not accepted yet.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from anyseg.errors import AnysegError

MaskStatus = Literal["accepted", "proposal"]
MaskSource = Literal["manual", "prefill"]

SCHEMA_VERSION = 1

_SCHEMA = """
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


class NotFoundError(AnysegError):
    """An image or mask id that the project does not hold."""


@dataclass(frozen=True)
class ImageRow:
    """One image of the project; ``width``/``height`` in pixels after EXIF orientation."""

    id: int
    file_name: str
    width: int
    height: int
    sha256: str
    size_bytes: int
    mtime_ns: int
    num_accepted: int = 0
    num_proposals: int = 0


@dataclass(frozen=True)
class MaskRow:
    """One stored mask. ``segmentation`` is COCO RLE, ``bbox`` is ``[x, y, w, h]`` in pixels."""

    id: int
    image_id: int
    status: MaskStatus
    source: MaskSource
    segmentation: dict[str, Any]
    bbox: list[float]
    area: int
    predicted_iou: float | None
    stability_score: float | None
    point_coords: list[list[float]] | None
    crop_box: list[float] | None
    prompts: dict[str, Any] | None
    label: str | None
    author: str | None
    created_at: str
    updated_at: str

    def to_json(self) -> dict[str, Any]:
        """The mask as the HTTP API sends it."""
        return {
            "id": self.id,
            "image_id": self.image_id,
            "status": self.status,
            "source": self.source,
            "segmentation": self.segmentation,
            "bbox": self.bbox,
            "area": self.area,
            "predicted_iou": self.predicted_iou,
            "stability_score": self.stability_score,
            "point_coords": self.point_coords,
            "crop_box": self.crop_box,
            "prompts": self.prompts,
            "label": self.label,
            "author": self.author,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True)
class NewMask:
    """A mask to insert (ids and timestamps are assigned by the store)."""

    segmentation: dict[str, Any]
    bbox: list[float]
    area: int
    status: MaskStatus = "accepted"
    source: MaskSource = "manual"
    predicted_iou: float | None = None
    stability_score: float | None = None
    point_coords: list[list[float]] | None = None
    crop_box: list[float] | None = None
    prompts: dict[str, Any] | None = None
    label: str | None = None
    author: str | None = None


_UNSET: Any = object()


def utc_now() -> str:
    """Current UTC time as ISO 8601 with millisecond precision."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _dump(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


def _load(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class ProjectStore:
    """Thread-safe access to the project's SQLite file.

    One connection guarded by a lock: the annotation server has a handful of concurrent requests
    at most and every statement is short, so a lock is simpler than a connection pool.
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
            self._conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise AnysegError(
                f"cannot open annotation project database {self.path}: {exc}"
            ) from exc
        version = self.get_meta("schema_version")
        if version is None:
            self.set_meta("schema_version", str(SCHEMA_VERSION))
        elif int(version) != SCHEMA_VERSION:
            raise AnysegError(
                f"{self.path} has schema version {version}, this anyseg reads {SCHEMA_VERSION}"
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
        """Add an image or refresh its facts (same ``file_name`` keeps its id); returns the id."""
        with self._transaction() as conn:
            row = conn.execute("SELECT id FROM images WHERE file_name = ?", (file_name,)).fetchone()
            if row is None:
                cur = conn.execute(
                    "INSERT INTO images (file_name, width, height, sha256, size_bytes, mtime_ns, "
                    "present, added_at) VALUES (?, ?, ?, ?, ?, ?, 1, ?)",
                    (file_name, width, height, sha256, size_bytes, mtime_ns, utc_now()),
                )
                return int(cur.lastrowid or 0)
            conn.execute(
                "UPDATE images SET width = ?, height = ?, sha256 = ?, size_bytes = ?, "
                "mtime_ns = ?, present = 1 WHERE id = ?",
                (width, height, sha256, size_bytes, mtime_ns, int(row["id"])),
            )
            return int(row["id"])

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
        rows = self._query(
            "SELECT i.*, "
            "(SELECT COUNT(*) FROM masks m WHERE m.image_id = i.id AND m.status = 'accepted') "
            "AS num_accepted, "
            "(SELECT COUNT(*) FROM masks m WHERE m.image_id = i.id AND m.status = 'proposal') "
            f"AS num_proposals FROM images i WHERE {where} ORDER BY i.file_name",
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
            )
            for r in rows
        ]

    def list_images(self, include_missing: bool = False) -> list[ImageRow]:
        """Images sorted by file name (only those present in the folder unless asked)."""
        return self._image_rows("1" if include_missing else "i.present = 1", ())

    def get_image(self, image_id: int) -> ImageRow:
        rows = self._image_rows("i.id = ?", (image_id,))
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
        )

    def add_masks(self, image_id: int, masks: Sequence[NewMask]) -> list[MaskRow]:
        """Insert masks of one image in one transaction; returns them with their ids."""
        self.get_image(image_id)
        now = utc_now()
        ids: list[int] = []
        with self._transaction() as conn:
            for m in masks:
                cur = conn.execute(
                    "INSERT INTO masks (image_id, status, source, segmentation, bbox, area, "
                    "predicted_iou, stability_score, point_coords, crop_box, prompts, label, "
                    "author, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                    ),
                )
                ids.append(int(cur.lastrowid or 0))
        return [self.get_mask(i) for i in ids]

    def get_mask(self, mask_id: int) -> MaskRow:
        rows = self._query("SELECT * FROM masks WHERE id = ?", (mask_id,))
        if not rows:
            raise NotFoundError(f"no mask with id {mask_id} in this project")
        return self._mask_row(rows[0])

    def list_masks(self, image_id: int, status: MaskStatus | None = None) -> list[MaskRow]:
        """Masks of one image in insertion order (all statuses unless ``status`` is given)."""
        if status is None:
            rows = self._query("SELECT * FROM masks WHERE image_id = ? ORDER BY id", (image_id,))
        else:
            rows = self._query(
                "SELECT * FROM masks WHERE image_id = ? AND status = ? ORDER BY id",
                (image_id, status),
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
        status: MaskStatus = _UNSET,
    ) -> MaskRow:
        """Change the given fields of one mask (others are kept) and stamp ``updated_at``."""
        fields: dict[str, Any] = {}
        for name, value, encode in (
            ("segmentation", segmentation, True),
            ("bbox", bbox, True),
            ("area", area, False),
            ("predicted_iou", predicted_iou, False),
            ("prompts", prompts, True),
            ("label", label, False),
            ("author", author, False),
            ("status", status, False),
        ):
            if value is not _UNSET:
                fields[name] = _dump(value) if encode else value
        fields["updated_at"] = utc_now()
        assignments = ", ".join(f"{name} = ?" for name in fields)
        with self._transaction() as conn:
            cur = conn.execute(
                f"UPDATE masks SET {assignments} WHERE id = ?", (*fields.values(), mask_id)
            )
            if cur.rowcount == 0:
                raise NotFoundError(f"no mask with id {mask_id} in this project")
        return self.get_mask(mask_id)

    def delete_mask(self, mask_id: int) -> None:
        with self._transaction() as conn:
            cur = conn.execute("DELETE FROM masks WHERE id = ?", (mask_id,))
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
                raise NotFoundError(f"masks {unknown} are not proposals of image {image_id}")
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
