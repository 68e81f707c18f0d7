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
    return {
        "size": list(rle["size"]),
        "counts": counts.encode("ascii") if isinstance(counts, str) else counts,
    }


# --- Uncompressed RLE: the automatic mask generator's in-memory format -------------------------
#
# An uncompressed RLE is ``{"size": [h, w], "counts": list[int]}``: the same column-major runs as a
# COCO RLE (first run counts zeros, possibly 0), as plain integers. pycocotools accepts it as is.

UncompressedRle = dict[str, Any]


def masks_to_uncompressed_rle(masks: Any) -> list[UncompressedRle]:
    """Run-length encode a batch of binary masks in one vectorized pass.

    Args:
        masks: (B, H, W) bool torch tensor (or numpy array); nonzero is foreground.

    Returns:
        B uncompressed RLEs, counts identical to those pycocotools computes for each mask.
    """
    import torch

    t = torch.as_tensor(masks)
    if t.ndim != 3:
        raise InvalidInputError(
            f"masks_to_uncompressed_rle expects (B, H, W) masks, got {tuple(t.shape)}"
        )
    b, h, w = t.shape
    if b == 0:
        return []
    n = h * w
    if n == 0:
        return [{"size": [h, w], "counts": [0]} for _ in range(b)]
    flat = t.bool().transpose(1, 2).reshape(b, n)  # (B, H, W) -> (B, W*H), column-major pixels
    change = torch.nonzero(flat[:, 1:] != flat[:, :-1]).cpu().numpy()  # (K, 2) sorted by mask
    first = flat[:, 0].cpu().numpy()
    per_mask = np.bincount(change[:, 0], minlength=b)
    positions = np.split(change[:, 1] + 1, np.cumsum(per_mask)[:-1])
    out = []
    for i in range(b):
        bounds = np.concatenate(([0], positions[i], [n]))
        runs = np.diff(bounds).tolist()
        out.append({"size": [h, w], "counts": [0, *runs] if first[i] else runs})
    return out


def uncompressed_rle_to_mask(rle: UncompressedRle) -> np.ndarray:
    """Decode an uncompressed RLE to an (H, W) bool mask."""
    h, w = (int(v) for v in rle["size"])
    counts = np.asarray(rle["counts"], dtype=np.int64)
    if counts.ndim != 1 or (counts < 0).any() or int(counts.sum()) != h * w:
        raise InvalidInputError(
            f"uncompressed RLE counts must be non-negative and sum to h*w = {h * w}, "
            f"got sum {int(counts.sum())}"
        )
    values = (np.arange(counts.size) % 2).astype(bool)
    return np.repeat(values, counts).reshape(w, h).T


def uncompressed_rle_area(rle: UncompressedRle) -> int:
    """Foreground pixels of an uncompressed RLE (sum of the odd runs)."""
    return int(sum(rle["counts"][1::2]))


def uncompressed_to_coco_rle(rle: UncompressedRle) -> CocoRle:
    """Compress an uncompressed RLE to ``{"size": [h, w], "counts": str}``.

    Byte-identical to ``pycocotools.mask.frPyObjects(rle, h, w)["counts"]``: each run (minus the
    run two before it, from the fourth run on) is written as little-endian 5-bit groups with a
    continuation bit, sign-extended, each group offset by 48 into printable ASCII.
    """
    h, w = (int(v) for v in rle["size"])
    return {"size": [h, w], "counts": _counts_to_string(np.asarray(rle["counts"], dtype=np.int64))}


def _counts_to_string(counts: np.ndarray) -> str:
    if counts.size == 0:
        return ""
    x = counts.copy()
    x[3:] -= counts[1:-2]  # pycocotools deltas start at the fourth run
    n = x.size
    groups = np.zeros((n, 13), dtype=np.uint8)  # 13 groups of 5 bits cover int64
    valid = np.zeros((n, 13), dtype=bool)
    active = np.ones(n, dtype=bool)
    for k in range(13):
        c = x & 0x1F
        x = x >> 5  # arithmetic shift, as C on signed long
        more = np.where(c & 0x10, x != -1, x != 0)
        groups[:, k] = (c | (more.astype(np.int64) << 5)) + 48
        valid[:, k] = active
        active &= more
        if not active.any():
            break
    return groups[valid].tobytes().decode("ascii")  # row-major: the groups of each run in order
