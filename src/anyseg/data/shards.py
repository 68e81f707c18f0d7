"""SA-1B-style tar shards: ``sa_000000.tar`` holding each image beside its per-image JSON.

SA-1B itself is distributed this way: 1,000 uncompressed tar files of about 11,000 images each,
every image (``sa_1.jpg``) next to its record (``sa_1.json``, the format of
:mod:`anyseg.data.sa1b`), flat. anyseg reads such shards in place, without extracting them: a
shard's headers are indexed once (:func:`index_shard`), and a member is read by seeking to its
data (:meth:`ShardMember.read_bytes`), so data-loader workers in several processes read one
shard at random positions, each with its own file handle.

:func:`write_shard` writes a shard atomically (temporary file, then rename) and reproducibly:
the same members in the same order give the same bytes (every header's time, owner and mode
are fixed), so a shard rebuilt after a retry is the shard that was there.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path, PurePosixPath

import numpy as np

from anyseg.errors import InvalidInputError
from anyseg.io import IMAGE_SUFFIXES, atomic_path, read_image_bytes

SHARD_SUFFIX = ".tar"
#: The file name of shard ``index`` (SA-1B's own: ``sa_000000.tar``).
SHARD_NAME = "sa_{index:06d}.tar"


@dataclass(frozen=True, order=True)
class ShardMember:
    """One file inside a tar shard, readable without extracting it.

    Attributes:
        shard: the tar file.
        name: the member's name in the tar.
        offset: byte offset of the member's data in the tar.
        size: the member's size in bytes.
    """

    shard: Path
    name: str
    offset: int = field(compare=False)
    size: int = field(compare=False)

    @property
    def stem(self) -> str:
        return PurePosixPath(self.name).stem

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.name).suffix

    def read_bytes(self) -> bytes:
        """The member's content.

        Raises:
            OSError: the shard cannot be read or ends before the member does.
        """
        with open(self.shard, "rb") as f:
            f.seek(self.offset)
            data = f.read(self.size)
        if len(data) != self.size:
            raise OSError(f"{self}: shard ends {self.size - len(data)} bytes early (truncated)")
        return data

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def read_image(self, *, max_pixels: int | None = None) -> np.ndarray:
        """The member as an image (:func:`anyseg.io.read_image_bytes`: RGB uint8 (H, W, 3))."""
        return read_image_bytes(self.read_bytes(), str(self), max_pixels=max_pixels)

    def __str__(self) -> str:
        return f"{self.shard}:{self.name}"


def index_shard(path: str | os.PathLike[str]) -> list[ShardMember]:
    """The regular files of an uncompressed tar, in the order they are stored.

    Raises:
        InvalidInputError: the file is not an uncompressed tar (compressed shards cannot be read
            in place: decompress them first, e.g. ``gunzip``).
        OSError: the file cannot be read.
    """
    shard = Path(path)
    try:
        with tarfile.open(shard, "r:") as tar:
            return [
                ShardMember(shard, info.name, info.offset_data, info.size)
                for info in tar.getmembers()
                if info.isfile()
            ]
    except tarfile.ReadError as exc:
        raise InvalidInputError(
            f"{shard}: not an uncompressed tar shard ({exc}); decompress it first"
        ) from None


def shard_files(root: str | os.PathLike[str]) -> list[Path]:
    """The shards of ``root``: the file itself when it is a ``.tar``, else the ``*.tar`` files
    directly in the folder, sorted (empty when there are none)."""
    path = Path(root)
    if path.is_file():
        return [path] if path.suffix.lower() == SHARD_SUFFIX else []
    if not path.is_dir():
        return []
    return sorted(
        p
        for p in path.iterdir()
        if p.suffix.lower() == SHARD_SUFFIX and p.is_file() and not p.name.startswith(".")
    )


@dataclass(frozen=True)
class ShardDataset:
    """The records of a set of shards.

    Attributes:
        pairs: (image, JSON) members that share a stem, in shard order, then member order.
        orphans: JSON members without an image of the same stem in their shard.
    """

    pairs: list[tuple[ShardMember, ShardMember]]
    orphans: list[ShardMember]


def find_shard_dataset(root: str | os.PathLike[str]) -> ShardDataset:
    """Pair every image in the shards of ``root`` (:func:`shard_files`) with its JSON.

    Raises:
        InvalidInputError: a shard is not an uncompressed tar, or one stem is in two shards (an
            image would be counted twice).
    """
    pairs: list[tuple[ShardMember, ShardMember]] = []
    orphans: list[ShardMember] = []
    seen: dict[str, Path] = {}
    for shard in shard_files(root):
        images: dict[str, ShardMember] = {}
        records: dict[str, ShardMember] = {}
        for member in index_shard(shard):
            if member.suffix.lower() in IMAGE_SUFFIXES:
                images.setdefault(member.stem, member)
            elif member.suffix.lower() == ".json":
                records.setdefault(member.stem, member)
        for stem, record in records.items():
            if stem in seen:
                raise InvalidInputError(
                    f"{stem}.json is in both {seen[stem]} and {shard}: each image must be in "
                    "one shard"
                )
            seen[stem] = shard
            if stem in images:
                pairs.append((images[stem], record))
            else:
                orphans.append(record)
    return ShardDataset(pairs, orphans)


def write_shard(path: str | os.PathLike[str], members: Iterable[tuple[str, bytes]]) -> None:
    """Write a tar of ``(name, content)`` members atomically, byte-reproducibly.

    Raises:
        InvalidInputError: a name with a folder part, or the same name twice.
    """
    seen: set[str] = set()
    with atomic_path(path) as tmp, tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            if "/" in name or name in ("", ".", ".."):
                raise InvalidInputError(f"shard member names are plain file names, got {name!r}")
            if name in seen:
                raise InvalidInputError(f"{name!r} twice in one shard")
            seen.add(name)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            info.mode = 0o644
            tar.addfile(info, BytesIO(data))
