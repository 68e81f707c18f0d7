"""Files in and out, in one place: atomic writes, image reading with one policy, image suffixes.

Every file anyseg writes goes through :func:`atomic_path` (or the helpers built on it): the data
goes to a temporary file in the target's folder, is flushed to disk (``fsync``), renamed over the
target, and the folder entry is flushed too. A reader therefore sees the old file or the new one,
never a partial one, even after a crash or a power loss; a resumable job that counts a file as
"done" cannot be fooled by an empty one.

Every image anyseg reads goes through :func:`read_image`: upright as viewers show it (EXIF
orientation applied), RGB uint8 (16-bit images scaled, not clipped; alpha dropped; palettes and
grayscale expanded), and refused with a clear error when it would decode to more than
:func:`max_image_pixels` pixels (a small file can hold a huge image).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
import warnings
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from anyseg.errors import InvalidInputError

ImageLike = Any  # np.ndarray | PIL.Image.Image | str | os.PathLike

#: Image file suffixes anyseg reads from folders (lower case).
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
#: Suffixes :func:`write_image` can write.
WRITABLE_IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg")
#: Smallest image side the model accepts.
MIN_SIDE = 2
#: Default cap on decoded pixels (about 50 megapixels: above any phone or DSLR photo, below the
#: sizes that exhaust memory when decoded: 10000x10000 RGB is 300 MB, and PIL's intermediate
#: buffers several times that). Raise it with ``ANYSEG_MAX_IMAGE_PIXELS`` or ``max_pixels=``.
DEFAULT_MAX_IMAGE_PIXELS = 50_000_000
MAX_PIXELS_ENV = "ANYSEG_MAX_IMAGE_PIXELS"
# PIL's decompression-bomb limit is process-global; it is lifted only while anyseg opens a file
# (its own cap, checked right after, replaces it), under a lock because servers read in threads.
_PIL_LIMIT_LOCK = threading.Lock()


def display_path(path: str | os.PathLike[str] | bytes) -> str:
    """A printable form of any file name, also one whose bytes are not valid UTF-8."""
    text = os.fsdecode(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return ascii(text)  # surrogate escapes: show the raw bytes, never raise while reporting
    return text


# --------------------------------------------------------------------------------------------
# atomic writes


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # not every platform opens folders; the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` durably.

    Write the file at the yielded path (any library may, e.g. ``torch.save``). When the block
    ends without an exception the file is fsynced, given the permissions a plain ``open`` would
    give, renamed over ``path``, and the folder is fsynced. On an exception the temporary file is
    removed and ``path`` is untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and durably (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically and durably."""
    atomic_write_bytes(path, text.encode("utf-8"))


def to_json(data: Any, *, indent: int | None = None, compact: bool = False) -> str:
    """JSON text of ``data``; NaN and infinities are an error (they are not JSON).

    ``compact`` drops the spaces after separators (SA-1B files are written this way).
    """
    separators = (",", ":") if compact else None
    try:
        return json.dumps(data, indent=indent, separators=separators, allow_nan=False)
    except ValueError as exc:
        raise InvalidInputError(f"cannot write a non-finite number as JSON ({exc})") from None


def atomic_write_json(path: str | os.PathLike[str], data: Any, *, indent: int | None = 1) -> None:
    """Write ``data`` as JSON (finite numbers only) atomically and durably."""
    atomic_write_text(path, to_json(data, indent=indent) + "\n")


# --------------------------------------------------------------------------------------------
# images


def max_image_pixels() -> int:
    """The decoded-pixel cap: ``ANYSEG_MAX_IMAGE_PIXELS`` if set (0 disables), else the default."""
    text = os.environ.get(MAX_PIXELS_ENV)
    if text is None or text.strip() == "":
        return DEFAULT_MAX_IMAGE_PIXELS
    try:
        value = int(text)
    except ValueError:
        raise InvalidInputError(
            f"{MAX_PIXELS_ENV} must be a whole number of pixels (0: no cap), got {text!r}"
        ) from None
    if value < 0:
        raise InvalidInputError(f"{MAX_PIXELS_ENV} must be >= 0, got {value}")
    return value


def _check_pixels(width: int, height: int, path: Any, max_pixels: int | None) -> None:
    cap = max_image_pixels() if max_pixels is None else max_pixels
    if cap and width * height > cap:
        raise InvalidInputError(
            f"{display_path(path)}: {width}x{height} image has {width * height:,} pixels, more "
            f"than the limit of {cap:,}; raise it with {MAX_PIXELS_ENV}=<pixels> "
            "(or --max-image-pixels) if you really mean to read it"
        )


@contextlib.contextmanager
def _open_image(
    path: str | os.PathLike[str], max_pixels: int | None, data: bytes | None = None
) -> Iterator[Image.Image]:
    """Open ``path`` (or the file's ``data`` when given, ``path`` then only names it) with PIL,
    its size checked against the cap before any pixel is decoded."""
    p = Path(path)
    if data is None and not p.is_file():
        raise InvalidInputError(f"image file not found: {display_path(p)}")
    try:
        with warnings.catch_warnings():
            # anyseg's own cap replaces PIL's decompression-bomb heuristics (a warning, then an
            # exception past twice its threshold) with one clear, configurable error.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with _PIL_LIMIT_LOCK:
                previous = Image.MAX_IMAGE_PIXELS
                Image.MAX_IMAGE_PIXELS = None
                try:
                    img = Image.open(p if data is None else BytesIO(data))
                finally:
                    Image.MAX_IMAGE_PIXELS = previous
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InvalidInputError(f"{display_path(p)} is not a readable image ({exc})") from None
    with img:
        _check_pixels(img.width, img.height, p, max_pixels)
        yield img


def read_image(path: str | os.PathLike[str], *, max_pixels: int | None = None) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB, upright as viewers show it.

    EXIF orientation is applied; grayscale, palette, RGBA (alpha dropped), CMYK and 16-bit
    images are converted (16-bit scaled to 8 bits, not clipped).

    Args:
        path: the image file.
        max_pixels: refuse images with more decoded pixels (None: :func:`max_image_pixels`;
            0: no cap).

    Raises:
        InvalidInputError: missing, unreadable, too large, or too small (a side < 2).
    """
    return _read_image(path, max_pixels, None)


def read_image_bytes(data: bytes, name: str, *, max_pixels: int | None = None) -> np.ndarray:
    """:func:`read_image` of a file's bytes (a member of a tar shard, an object-store blob);
    ``name`` names it in errors."""
    return _read_image(name, max_pixels, data)


def _read_image(
    path: str | os.PathLike[str], max_pixels: int | None, data: bytes | None
) -> np.ndarray:
    with _open_image(path, max_pixels, data) as img:
        try:
            img.load()
            upright = ImageOps.exif_transpose(img)
            return pil_to_rgb(upright)
        except InvalidInputError as exc:
            raise InvalidInputError(f"{display_path(path)}: {exc}") from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise InvalidInputError(
                f"{display_path(path)} is not a readable image ({exc})"
            ) from None


def image_size(path: str | os.PathLike[str], *, max_pixels: int | None = None) -> tuple[int, int]:
    """(height, width) of the upright image without decoding its pixels (EXIF applied).

    Raises:
        InvalidInputError: as :func:`read_image`.
    """
    with _open_image(path, max_pixels) as img:
        try:
            orientation = img.getexif().get(0x0112, 1)
        except Exception:  # a malformed EXIF block: PIL's own transpose ignores it too
            orientation = 1
        w, h = img.size
        return (w, h) if orientation in (5, 6, 7, 8) else (h, w)


def pil_to_rgb(img: Image.Image) -> np.ndarray:
    """PIL image of any common mode -> (H, W, 3) uint8 RGB."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return to_rgb_uint8(np.asarray(img))  # high bit depth: scaled by to_rgb_uint8
    if img.mode != "RGB":
        img = img.convert("RGB")  # palette, grayscale, RGBA (alpha dropped), CMYK, ...
    return to_rgb_uint8(np.asarray(img))


def to_rgb_uint8(image: ImageLike) -> np.ndarray:
    """Validate and convert an image to a C-contiguous (H, W, 3) uint8 RGB array.

    Accepts (H, W) grayscale, (H, W, 1), (H, W, 3) and (H, W, 4) (alpha dropped) arrays of
    uint8, uint16/int32 (16-bit range scaled to 8 bits), bool, or float (values in [0, 1] or
    [0, 255]); PIL images (EXIF orientation applied); and paths to image files
    (:func:`read_image`).
    """
    if isinstance(image, (str, os.PathLike)):
        return read_image(image)
    if isinstance(image, Image.Image):
        return pil_to_rgb(ImageOps.exif_transpose(image))
    if not isinstance(image, np.ndarray):
        raise InvalidInputError(
            f"expected an image (numpy array, PIL image or file path), got {type(image).__name__}"
        )
    arr = image
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise InvalidInputError(
            f"expected an image of shape (H, W), (H, W, 3) or (H, W, 4), got {image.shape}"
        )
    arr = arr[:, :, :3]
    h, w = arr.shape[:2]
    if h < MIN_SIDE or w < MIN_SIDE:
        raise InvalidInputError(f"image is too small ({h}x{w}); each side must be >= {MIN_SIDE}")
    if arr.dtype == np.uint8:
        pass
    elif arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    elif np.issubdtype(arr.dtype, np.integer):
        if arr.min() < 0:
            raise InvalidInputError("integer image has negative values")
        peak = int(arr.max())
        # 16-bit images (PNG/TIFF) are scaled to 8 bits; 8-bit data in a wider type is kept.
        arr = (arr / 257.0).round() if peak > 255 else arr
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise InvalidInputError("float image contains NaN or infinite values")
        scale = 255.0 if arr.max() <= 1.0 else 1.0
        arr = np.clip(arr * scale, 0, 255).round().astype(np.uint8)
    else:
        raise InvalidInputError(f"unsupported image dtype {arr.dtype}")
    return np.ascontiguousarray(arr)


def encode_image(image: np.ndarray, suffix: str, *, fast_png: bool = False) -> bytes:
    """Encode an RGB uint8 (H, W, 3) image as PNG or JPEG (quality 95) bytes.

    ``fast_png`` uses Huffman-only PNG compression: about 1.5x faster, and smaller for noisy
    images (photos, synthetic scenes), larger for flat ones (drawings, masks).
    """
    import cv2

    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise InvalidInputError(
            f"write_image expects uint8 (H, W, 3), got {image.dtype} {image.shape}"
        )
    suffix = suffix.lower()
    if suffix not in WRITABLE_IMAGE_SUFFIXES:
        raise InvalidInputError(
            f"image suffix must be one of {WRITABLE_IMAGE_SUFFIXES}, got {suffix!r}"
        )
    if suffix == ".png":
        strategy = cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY if fast_png else 0
        params = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, strategy]
    else:
        params = [cv2.IMWRITE_JPEG_QUALITY, 95]
    ok, buf = cv2.imencode(suffix, np.ascontiguousarray(image[:, :, ::-1]), params)
    if not ok:
        raise InvalidInputError(f"could not encode a {image.shape} image as {suffix}")
    return bytes(buf.tobytes())


def write_image(path: str | os.PathLike[str], image: np.ndarray, *, fast_png: bool = False) -> None:
    """Write an RGB uint8 (H, W, 3) image atomically; the format follows the suffix (png/jpg)."""
    atomic_write_bytes(path, encode_image(image, Path(path).suffix, fast_png=fast_png))


def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """Image files directly in ``folder`` (not recursive), sorted; hidden files are skipped."""
    return sorted(
        p
        for p in Path(folder).iterdir()
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
    )
