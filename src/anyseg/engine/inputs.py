"""What a labelling run reads: image files, folders, manifests and fsspec URIs, as one list.

An input is
- an image file, or a folder whose image files (not recursively, sorted) are inputs, exactly as
  ``anyseg auto`` reads them (:func:`anyseg.automatic.job.folder_images`);
- a manifest (``.txt``, ``.lst``, ``.list``, ``.manifest``): one image path or URI per line,
  relative paths relative to the manifest, blank lines and ``#`` comments ignored. Lines are not
  checked here (a million ``stat`` calls on an object store take long): an image that cannot be
  read fails when it is labelled, with its reason;
- any of these as an fsspec URI (``s3://bucket/images/``, ``gs://...``, ``https://...``) when
  the filesystem's package (s3fs, gcsfs, ...) is installed on every node. ``file://`` URIs and
  plain paths are local files.

Images are identified by their location (an absolute path or a URI) and written under their
file name's stem, so two inputs with one stem are refused (their outputs would collide).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlparse

from anyseg.automatic.job import check_unique_stems, folder_images
from anyseg.errors import InvalidInputError
from anyseg.io import IMAGE_SUFFIXES, display_path

MANIFEST_SUFFIXES: tuple[str, ...] = (".txt", ".lst", ".list", ".manifest")
#: Names the engine writes at the top of an output folder (an image may not have these stems).
RESERVED_STEMS: tuple[str, ...] = ("summary",)

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_uri(text: str) -> bool:
    """Whether ``text`` is a URI of a filesystem other than the local one."""
    return bool(_URI.match(text)) and not text.startswith("file://")


def local_path(text: str) -> Path:
    """The local path of a plain path or a ``file://`` URI."""
    if text.startswith("file://"):
        return Path(unquote(urlparse(text).path))
    return Path(text)


def filesystem(uri: str) -> tuple[Any, str]:
    """``(fsspec filesystem, path inside it)`` of a URI.

    Raises:
        InvalidInputError: fsspec, or the filesystem's own package (s3fs, gcsfs, ...), is not
            installed.
    """
    try:
        from fsspec.core import url_to_fs
    except ImportError:
        raise InvalidInputError(f"{uri}: URIs need fsspec: pip install 'anyseg[ray]'") from None
    try:
        return url_to_fs(uri)
    except (ImportError, ValueError) as exc:
        raise InvalidInputError(f"{uri}: cannot open this filesystem ({exc})") from None


@dataclass(frozen=True)
class ImageSource:
    """One image to label.

    Attributes:
        location: an absolute local path, or a URI.
    """

    location: str

    @property
    def remote(self) -> bool:
        return is_uri(self.location)

    @property
    def name(self) -> str:
        """The file name (the last part of the path or URI)."""
        if self.remote:
            return PurePosixPath(urlparse(self.location).path).name
        return Path(self.location).name

    @property
    def stem(self) -> str:
        return PurePosixPath(self.name).stem

    @property
    def parent(self) -> str:
        """The folder holding the image, as a location."""
        if self.remote:
            return self.location.rsplit("/", 1)[0]
        return str(Path(self.location).parent)

    @contextlib.contextmanager
    def local_copy(self, scratch: Path) -> Iterator[Path]:
        """A local file of the image under its own name: the file itself when local, else a
        download into ``scratch`` that is removed afterwards."""
        if not self.remote:
            yield Path(self.location)
            return
        target = scratch / self.name
        fs, path = filesystem(self.location)
        try:
            with fs.open(path, "rb") as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
            yield target
        finally:
            target.unlink(missing_ok=True)

    def read_bytes(self) -> bytes:
        """The image file's bytes."""
        if not self.remote:
            return Path(self.location).read_bytes()
        fs, path = filesystem(self.location)
        data: bytes = fs.cat_file(path)
        return data


def resolve_inputs(
    inputs: Sequence[str | os.PathLike[str]], output: str | os.PathLike[str] | None
) -> list[ImageSource]:
    """The images named by ``inputs``, in order, once (see the module docstring).

    Args:
        inputs: image files, folders, manifests, URIs of any of these.
        output: the output location; images inside it are never inputs.

    Raises:
        InvalidInputError: an input does not exist, nothing is found, two images share a stem,
            or an image's stem is one the engine writes itself (``summary``).
    """
    found: list[ImageSource] = []
    for entry in inputs:
        found += _expand(os.fspath(entry))
    out_parent = None if output is None else _normalized(os.fspath(output))
    unique = [
        s for s in dict.fromkeys(found) if out_parent is None or _normalized(s.parent) != out_parent
    ]
    if not unique:
        names = ", ".join(display_path(os.fspath(p)) for p in inputs)
        raise InvalidInputError(f"no images found in {names} ({', '.join(IMAGE_SUFFIXES)})")
    for s in unique:
        if s.stem in RESERVED_STEMS:
            raise InvalidInputError(
                f"{display_path(s.location)}: {s.stem}.json is the engine's own file in the "
                "output folder: rename the image"
            )
    check_unique_stems((s.stem, display_path(s.location)) for s in unique)
    return unique


def _normalized(location: str) -> str:
    return location.rstrip("/") if is_uri(location) else str(local_path(location).resolve())


def _expand(text: str) -> list[ImageSource]:
    if is_uri(text):
        return _expand_uri(text)
    path = local_path(text)
    if path.is_dir():
        return [ImageSource(str(p.resolve())) for p in folder_images(path)]
    if not path.is_file():
        raise InvalidInputError(f"{display_path(path)}: no such file or folder")
    if path.suffix.lower() in MANIFEST_SUFFIXES:
        return _manifest(path.read_text(encoding="utf-8"), str(path.resolve().parent), text)
    return [ImageSource(str(path.resolve()))]


def _expand_uri(uri: str) -> list[ImageSource]:
    fs, path = filesystem(uri)
    protocol = uri.split("://", 1)[0]
    if fs.isdir(path):
        files = sorted(
            entry["name"]
            for entry in fs.ls(path, detail=True)
            if entry.get("type") == "file"
            and PurePosixPath(entry["name"]).suffix.lower() in IMAGE_SUFFIXES
        )
        return [ImageSource(_unstrip(fs, protocol, p)) for p in files]
    if not fs.isfile(path):
        raise InvalidInputError(f"{uri}: no such file or folder")
    if PurePosixPath(path).suffix.lower() in MANIFEST_SUFFIXES:
        text = fs.cat_file(path).decode("utf-8")
        return _manifest(text, uri.rsplit("/", 1)[0], uri)
    return [ImageSource(uri)]


def _unstrip(fs: Any, protocol: str, path: str) -> str:
    """A URI again from a path inside ``fs`` (fsspec lists paths without the protocol)."""
    unstripped: str = fs.unstrip_protocol(path)
    return unstripped if unstripped.startswith(protocol + "://") else f"{protocol}://{path}"


def _manifest(text: str, base: str, name: str) -> list[ImageSource]:
    sources = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if is_uri(line):
            sources.append(ImageSource(line))
        elif is_uri(base):
            sources.append(ImageSource(posixpath.join(base, line)))
        else:
            path = local_path(line)
            if not path.is_absolute():
                path = Path(base) / path
            if path.suffix.lower() in MANIFEST_SUFFIXES:
                raise InvalidInputError(f"{name} line {number}: manifests do not nest ({line})")
            sources.append(ImageSource(str(path.resolve())))
    return sources
