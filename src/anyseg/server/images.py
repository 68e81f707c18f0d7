"""The image folder: listing, safe path resolution, hashing, and what the browser is sent.

Images are only ever read from the configured folder, by a plain file name that the project's
database holds; a name from a client that could leave the folder (``../``, separators, hidden
files) is refused before it touches the file system. Pixels are always decoded by
:func:`anyseg.io.read_image`, the reader of every command (EXIF upright, 16-bit scaled).

Files that cannot be served are skipped and reported, never fatal: names that are not valid
UTF-8 or hold a backslash or control character, symbolic links that lead out of the folder
(unless ``follow_symlinks``), and files that are not readable images.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from anyseg.errors import InvalidInputError
from anyseg.io import display_path, image_size, list_images, read_image
from anyseg.server.errors import ImageChangedError, NotFoundError
from anyseg.server.records import ImageRow
from anyseg.server.storage import ProjectStore

# Formats a browser shows as they are, when the file is 8-bit RGB or gray and not EXIF-rotated.
_BROWSER_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
_EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class SkippedFile:
    """A file of the image folder that is not served, and why (``name`` is printable)."""

    name: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "reason": self.reason}


@dataclass(frozen=True)
class ScanResult:
    """What a scan of the folder found: images present, and files skipped with the reason."""

    present: int
    skipped: tuple[SkippedFile, ...]


def name_problem(name: str) -> str | None:
    """Why a file name cannot be served, or None when it can."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "the name is not valid UTF-8"
    if "\\" in name:
        return "the name holds a backslash"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "the name holds a control character"
    return None


def link_problem(image_dir: Path, path: Path, follow_symlinks: bool) -> str | None:
    """Why ``path`` (directly in ``image_dir``, resolved) must not be read, or None."""
    if follow_symlinks or not path.is_symlink():
        return None
    if not path.resolve().is_relative_to(image_dir):
        return "a symbolic link to a file outside the image folder (--follow-symlinks allows it)"
    return None


def safe_image_path(image_dir: Path, file_name: str) -> Path:
    """``image_dir / file_name`` after checking that the name cannot leave the folder."""
    if (
        not file_name
        or file_name in (".", "..")
        or file_name.startswith(".")
        or any(c in file_name for c in ("/", "\\", "\x00"))
        or ".." in Path(file_name).parts
    ):
        raise InvalidInputError(
            f"image name {file_name!r} is not a plain file name inside the image folder"
        )
    path = Path(os.path.normpath(image_dir / file_name))
    if path.parent != Path(os.path.normpath(image_dir)):
        raise InvalidInputError(f"image name {file_name!r} leaves the image folder")
    return path


def image_file(image_dir: Path, image: ImageRow, follow_symlinks: bool = False) -> Path:
    """The file of a registered image, checked: inside the folder (links too), still there, and
    unchanged (size and modification time) since the folder was scanned.

    Raises:
        NotFoundError: the file is gone or may no longer be read.
        ImageChangedError: the file changed since the scan (rescan, then reload).
    """
    path = safe_image_path(image_dir, image.file_name)
    if not path.is_file() or link_problem(image_dir, path, follow_symlinks):
        raise NotFoundError(f"image {image.id} ({image.file_name}) is no longer in the folder")
    stat = path.stat()
    if (stat.st_size, stat.st_mtime_ns) != (image.size_bytes, image.mtime_ns):
        raise ImageChangedError(
            f"{image.file_name} changed on disk since the image list was loaded: reload it"
        )
    return path


def list_image_files(
    image_dir: Path, follow_symlinks: bool = False
) -> tuple[list[str], list[SkippedFile]]:
    """Names of the images directly inside ``image_dir`` (sorted, no hidden files) that can be
    served, and the image files skipped with the reason."""
    if not image_dir.is_dir():
        raise InvalidInputError(f"image folder {image_dir} does not exist or is not a folder")
    names: list[str] = []
    skipped: list[SkippedFile] = []
    for path in list_images(image_dir):
        problem = name_problem(path.name) or link_problem(image_dir, path, follow_symlinks)
        if problem:
            skipped.append(SkippedFile(display_path(path.name), problem))
        else:
            names.append(path.name)
    return names, skipped


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # a broken EXIF block is treated as "no rotation", as read_image does
        return 1


def image_size_wh(path: Path) -> tuple[int, int]:
    """(width, height) in pixels as displayed, i.e. after the EXIF orientation."""
    height, width = image_size(path)
    return width, height


def stored_as_shown(path: Path) -> str | None:
    """The media type of a file whose stored pixels are exactly what :func:`read_image` gives
    (8-bit RGB or gray JPEG/PNG/WebP, no EXIF rotation), or None when it must be re-encoded."""
    try:
        with Image.open(path) as img:
            media = _BROWSER_FORMATS.get(img.format or "")
            if media and img.mode in ("RGB", "L") and _orientation(img) == 1:
                return media
    except (OSError, ValueError, Image.DecompressionBombError):
        pass  # read_image gives the clear error
    return None


def browser_image(path: Path) -> tuple[bytes, str]:
    """The image as bytes a browser shows exactly as the model sees it, and its media type.

    Files whose stored pixels are the model's (:func:`stored_as_shown`) are sent unchanged;
    anything else (EXIF-rotated photos, 16-bit PNGs, palettes, alpha, TIFF, BMP) is decoded by
    :func:`anyseg.io.read_image` and sent as PNG.
    """
    media = stored_as_shown(path)
    if media is not None:
        return path.read_bytes(), media
    buf = io.BytesIO()
    Image.fromarray(read_image(path)).save(buf, format="PNG")
    return buf.getvalue(), "image/png"


def scan_folder(store: ProjectStore, image_dir: Path, follow_symlinks: bool = False) -> ScanResult:
    """Register the folder's images in the store (new or changed files are hashed again).

    Images that vanished from the folder, or became unreadable, stay in the database (their
    masks are kept) but are no longer listed. Files that cannot be served are reported in the
    result, never raised.
    """
    names, skipped = list_image_files(image_dir, follow_symlinks)
    present = []
    for name in names:
        path = image_dir / name
        try:
            stat = path.stat()
            known = store.find_image(name)
            if not (
                known and (known.size_bytes, known.mtime_ns) == (stat.st_size, stat.st_mtime_ns)
            ):
                width, height = image_size_wh(path)
                sha = file_sha256(path)
                store.upsert_image(name, width, height, sha, stat.st_size, stat.st_mtime_ns)
        except InvalidInputError as exc:
            skipped.append(SkippedFile(name, str(exc).removeprefix(f"{path}: ")))
            continue
        except OSError as exc:  # vanished or unreadable between the listing and now
            skipped.append(SkippedFile(name, f"cannot be read ({exc.strerror or exc})"))
            continue
        present.append(name)
    store.set_present(present)
    return ScanResult(len(present), tuple(skipped))
