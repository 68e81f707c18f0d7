"""Where a labelling run writes: a local folder, or an fsspec URI (an object-store prefix).

The layout is ``anyseg auto``'s, one level deep: ``<stem>.json`` (SA-1B record, written last:
it marks the image done) and ``<stem>_overlay.png`` per image, then the run's own
``failures.jsonl`` and ``summary.json``, and ``shards/sa_000000.tar ...`` when asked for.

Every write is all-or-nothing, so a reader (or a resumed run) never sees part of a file:
locally through :func:`anyseg.io.atomic_path` (temporary file, fsync, rename); on object stores
(S3, GCS, Azure) a PUT is itself atomic, so objects are written in one call; on other fsspec
filesystems to a temporary name, then moved. A process killed mid-write can leave a temporary
file behind (``.<name>.<random>.tmp``): :meth:`OutputStore.remove_temporaries` clears them when
no worker is writing (a run does, before and after its workers run).
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

from anyseg.engine.inputs import filesystem, is_uri, local_path
from anyseg.io import atomic_path, atomic_write_bytes, display_path

#: Filesystems whose single-call writes are atomic (no temporary object needed).
ATOMIC_PUT_PROTOCOLS = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "memory"})
_TEMPORARY = re.compile(r"^\..+\.tmp$")


class OutputStore:
    """A run's output location: files addressed by a relative name (``a.json``,
    ``shards/sa_000000.tar``).

    Args:
        location: a local folder (plain path or ``file://``) or a URI.
    """

    def __init__(self, location: str | os.PathLike[str]) -> None:
        text = os.fspath(location)
        self.location = text
        self.local: Path | None = None if is_uri(text) else local_path(text)
        self._fs: Any = None
        self._root = ""
        if self.local is None:
            self._fs, root = filesystem(text)
            self._root = root.rstrip("/")
            protocol = self._fs.protocol
            protocols = {protocol} if isinstance(protocol, str) else set(protocol)
            self._atomic_put = bool(protocols & ATOMIC_PUT_PROTOCOLS)

    def __str__(self) -> str:
        return display_path(self.location)

    def path(self, name: str) -> str:
        """The full location of ``name``."""
        return str(self.local / name) if self.local is not None else f"{self._root}/{name}"

    def create(self) -> None:
        """Make the folder if missing."""
        if self.local is not None:
            self.local.mkdir(parents=True, exist_ok=True)
        else:
            self._fs.makedirs(self._root, exist_ok=True)

    def exists(self, name: str) -> bool:
        if self.local is not None:
            return (self.local / name).is_file()
        return bool(self._fs.isfile(self.path(name)))

    def names(self, folder: str = "") -> list[str]:
        """File names directly in the output folder (or in its subfolder ``folder``), sorted."""
        return sorted(self.stamps(folder))

    def stamps(self, folder: str = "") -> dict[str, str]:
        """File name -> size and modification time, of the files directly in the folder (or in
        ``folder``), from one listing: a rewritten file gets a new stamp."""
        if self.local is not None:
            folder_path = self.local / folder
            if not folder_path.is_dir():
                return {}
            out = {}
            for entry in os.scandir(folder_path):
                if entry.is_file():
                    st = entry.stat()
                    out[entry.name] = f"{st.st_size}:{st.st_mtime_ns}"
            return out
        where = f"{self._root}/{folder}".rstrip("/")
        if not self._fs.isdir(where):
            return {}
        return {
            e["name"].rsplit("/", 1)[-1]: f"{e.get('size')}:{_object_time(e)}"
            for e in self._fs.ls(where, detail=True)
            if e.get("type") == "file"
        }

    def read_bytes(self, name: str) -> bytes:
        if self.local is not None:
            return (self.local / name).read_bytes()
        data: bytes = self._fs.cat_file(self.path(name))
        return data

    def write_bytes(self, name: str, data: bytes) -> None:
        """Write ``name`` all-or-nothing (see the module docstring)."""
        if self.local is not None:
            atomic_write_bytes(self.local / name, data)
        elif self._atomic_put:
            self._fs.pipe_file(self.path(name), data)
        else:
            tmp = self._temporary(name)
            self._fs.pipe_file(tmp, data)
            self._fs.mv(tmp, self.path(name))

    def put_file(self, local: Path, name: str) -> None:
        """Copy the local file ``local`` to ``name``, all-or-nothing."""
        if self.local is not None:
            with atomic_path(self.local / name) as staged:
                shutil.copyfile(local, staged)
        elif self._atomic_put:
            self._fs.put_file(str(local), self.path(name))
        else:
            tmp = self._temporary(name)
            self._fs.put_file(str(local), tmp)
            self._fs.mv(tmp, self.path(name))

    def remove(self, name: str) -> None:
        if self.local is not None:
            (self.local / name).unlink(missing_ok=True)
        elif self._fs.exists(self.path(name)):
            self._fs.rm_file(self.path(name))

    def remove_temporaries(self, folder: str = "") -> int:
        """Remove temporary files left by killed writers; how many there were. Only safe while
        nothing writes to this output."""
        stale = [n for n in self.names(folder) if _TEMPORARY.match(n)]
        for name in stale:
            self.remove(f"{folder}/{name}" if folder else name)
        return len(stale)

    def _temporary(self, name: str) -> str:
        folder, _, base = self.path(name).rpartition("/")
        return f"{folder}/.{base}.{uuid.uuid4().hex}.tmp"


def _object_time(entry: dict[str, Any]) -> str:
    """The modification time (or version tag) an fsspec listing gives, whatever its key."""
    for key in ("LastModified", "mtime", "updated", "last_modified", "created", "ETag", "etag"):
        if entry.get(key) is not None:
            return str(entry[key])
    return ""
