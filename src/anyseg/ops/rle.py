"""COCO run-length encoding, byte-compatible with pycocotools.

A COCO RLE is ``{"size": [h, w], "counts": str}``: run lengths of a column-major (Fortran order)
binary mask, starting with a run of zeros, compressed into pycocotools' LEB128-like ASCII string.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from anyseg.errors import InvalidInputError

CocoRle = dict[str, Any]


def encode_mask(mask: np.ndarray) -> CocoRle:
    """Encode one binary mask (H, W) as a COCO RLE with ``counts`` as ``str``."""
    if mask.ndim != 2:
        raise InvalidInputError(f"encode_mask expects a 2-D (H, W) mask, got shape {mask.shape}")
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"]}


def decode_rle(rle: CocoRle) -> np.ndarray:
    """Decode a COCO RLE (compressed ``str``/``bytes`` counts or uncompressed list counts) to a
    bool mask (H, W)."""
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise InvalidInputError("an RLE must be a dict with 'size' and 'counts'")
    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, list):
        if sum(int(c) for c in counts) != h * w:
            raise InvalidInputError(
                f"uncompressed RLE counts sum to {sum(counts)}, expected h*w = {h * w}"
            )
        compressed = mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    elif isinstance(counts, (str, bytes)):
        compressed = {
            "size": [h, w],
            "counts": counts.encode("ascii") if isinstance(counts, str) else counts,
        }
    else:
        raise InvalidInputError(f"RLE counts must be str, bytes or list, got {type(counts)}")
    return mask_utils.decode(compressed).astype(bool)


def rle_area(rle: CocoRle) -> int:
    """Number of foreground pixels of a COCO RLE."""
    return int(mask_utils.area(_as_bytes(rle)))


def rle_to_bbox_xywh(rle: CocoRle) -> list[float]:
    """Tight box [x, y, w, h] of a COCO RLE (pycocotools convention; zeros when empty)."""
    return [float(v) for v in mask_utils.toBbox(_as_bytes(rle))]


def _as_bytes(rle: CocoRle) -> dict[str, Any]:
    counts = rle["counts"]
    if isinstance(counts, list):
        h, w = rle["size"]
        return mask_utils.frPyObjects(rle, h, w)
    return {"size": list(rle["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
