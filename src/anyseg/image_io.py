"""Reading images from disk and converting arrays to the (H, W, 3) uint8 RGB the model expects."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from anyseg.errors import InvalidInputError

ImageLike = Any  # np.ndarray | PIL.Image.Image | str | os.PathLike

MIN_SIDE = 2


def load_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB (grayscale, RGBA, palette, 16-bit converted)."""
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"image file not found: {p}")
    try:
        with Image.open(p) as img:
            img.load()
            return pil_to_rgb(img)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise InvalidInputError(f"{p} is not a readable image ({exc})") from None


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
    [0, 255]); PIL images; and paths to image files.
    """
    if isinstance(image, (str, os.PathLike)):
        return load_image(image)
    if isinstance(image, Image.Image):
        return pil_to_rgb(image)
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
