"""The image folder: listing, safe path resolution, hashing and decoding.

Images are only ever read from the configured folder, by a plain file name that the project's
database holds; a name from a client that could leave the folder (``../``, separators, hidden
files) is refused before it touches the file system.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from anyseg.errors import InvalidInputError
from anyseg.io import image_size, list_images, read_image
from anyseg.server.storage import ProjectStore

# Suffixes a browser shows as they are (when no EXIF rotation applies).
_BROWSER_SUFFIXES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png",
                     ".webp": "image/webp", ".bmp": "image/bmp"}  # fmt: skip
_EXIF_ORIENTATION = 0x0112


def list_image_files(image_dir: Path) -> list[str]:
    """Plain file names of the images directly inside ``image_dir`` (sorted, no hidden files)."""
    if not image_dir.is_dir():
        raise InvalidInputError(f"image folder {image_dir} does not exist or is not a folder")
    return [p.name for p in list_images(image_dir)]


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
    except Exception:  # a broken EXIF block is treated as "no rotation"
        return 1


def image_size_wh(path: Path) -> tuple[int, int]:
    """(width, height) in pixels as displayed, i.e. after the EXIF orientation."""
    height, width = image_size(path)
    return width, height


def load_image_rgb(path: Path) -> np.ndarray:
    """Decode an image as the model sees it: :func:`anyseg.io.read_image` (upright, RGB uint8,
    16-bit scaled), the one reader of every command."""
    return read_image(path)


def browser_image(path: Path) -> tuple[bytes, str]:
    """The image as bytes a browser shows upright, and its media type.

    JPEG/PNG/WebP/BMP files without an EXIF rotation are sent unchanged; anything else (TIFF,
    rotated photos) is re-encoded as PNG so the browser's pixels match the model's.
    """
    media = _BROWSER_SUFFIXES.get(path.suffix.lower())
    try:
        with Image.open(path) as img:
            if media is not None and _orientation(img) == 1:
                return path.read_bytes(), media
    except (OSError, Image.DecompressionBombError) as exc:
        raise InvalidInputError(f"cannot read image {path}: {exc}") from exc
    buf = io.BytesIO()
    Image.fromarray(load_image_rgb(path)).save(buf, format="PNG")
    return buf.getvalue(), "image/png"


def scan_folder(store: ProjectStore, image_dir: Path) -> int:
    """Register the folder's images in the store (new or changed files are hashed again).

    Images that vanished from the folder stay in the database (their masks are kept) but are
    no longer listed. Returns the number of images present.
    """
    names = list_image_files(image_dir)
    for name in names:
        path = safe_image_path(image_dir, name)
        stat = path.stat()
        known = store.find_image(name)
        if known and known.size_bytes == stat.st_size and known.mtime_ns == stat.st_mtime_ns:
            continue
        try:
            width, height = image_size_wh(path)
        except InvalidInputError:
            continue  # not a readable image: leave it out of the project
        store.upsert_image(name, width, height, file_sha256(path), stat.st_size, stat.st_mtime_ns)
    store.set_present(names)
    return len(names)
