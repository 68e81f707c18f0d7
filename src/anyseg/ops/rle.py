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


def rle_counts_total(counts: str | bytes) -> int:
    """Pixels covered by a pycocotools compressed counts string (the sum of its runs).

    The string stores each run in 5-bit groups (character - 48; bit 0x20: more groups follow;
    bit 0x10 of the last group: negative), runs after the second as the difference to the run
    two before. Decoded here with array operations (SA-1B files hold thousands of characters per
    mask).

    Raises:
        InvalidInputError: the string is not a valid compressed RLE (a character outside the
            alphabet, a truncated number, a negative run).
    """
    data = counts.encode("latin-1", "replace") if isinstance(counts, str) else bytes(counts)
    if not data:
        return 0
    c = np.frombuffer(data, dtype=np.uint8).astype(np.int64) - 48
    bad = np.flatnonzero((c < 0) | (c >= 64))
    if bad.size:
        raise InvalidInputError(f"RLE counts has an invalid character {chr(data[bad[0]])!r}")
    last = (c & 0x20) == 0  # the last group of a number
    if not last[-1]:
        raise InvalidInputError("RLE counts string is truncated")
    ends = np.flatnonzero(last)
    starts = np.concatenate(([0], ends[:-1] + 1))
    number = np.repeat(np.arange(ends.size), ends - starts + 1)  # number of each character
    k = np.arange(c.size) - starts[number]  # position inside its number
    if k.max() > 11:
        raise InvalidInputError("RLE counts has a number too long to be a run length")
    values = np.add.reduceat((c & 0x1F) << (5 * k), starts)
    negative = (c[ends] & 0x10) != 0
    values = values - (negative.astype(np.int64) << (5 * (k[ends] + 1)))
    runs = values.copy()
    # Runs 3, 4, ... (index >= 3) are differences to the run two before: a prefix sum along
    # each parity from index 1 (odd) and index 2 (even); runs 0 and 2 are stored as they are.
    runs[1::2] = np.cumsum(values[1::2])
    runs[2::2] = np.cumsum(values[2::2])
    if (runs < 0).any():
        raise InvalidInputError("RLE counts decode to a negative run length")
    return int(runs.sum())


def check_rle(rle: Any, size_hw: tuple[int, int] | None = None) -> tuple[int, int]:
    """Validate a COCO RLE (compressed or uncompressed counts); return its (h, w).

    The runs must cover exactly h*w pixels: fewer would make pycocotools return a mask whose
    tail is uninitialized memory (different garbage on every run), more is rejected by it
    only at decode time.

    Raises:
        InvalidInputError: not an RLE, a size other than ``size_hw``, or counts that do not sum
            to h*w.
    """
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise InvalidInputError("an RLE must be a dict with 'size' and 'counts'")
    try:
        h, w = (int(v) for v in rle["size"])
    except (TypeError, ValueError):
        raise InvalidInputError(f"RLE size must be [h, w], got {rle['size']!r}") from None
    if h < 0 or w < 0:
        raise InvalidInputError(f"RLE size must be non-negative, got {[h, w]}")
    if size_hw is not None and (h, w) != tuple(size_hw):
        raise InvalidInputError(
            f"RLE size {[h, w]} does not match the image size [h, w] = {list(size_hw)}"
        )
    counts = rle["counts"]
    if isinstance(counts, list):
        if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
            raise InvalidInputError("uncompressed RLE counts must be non-negative integers")
        total = sum(counts)
    elif isinstance(counts, (str, bytes)):
        total = rle_counts_total(counts)
    else:
        raise InvalidInputError(f"RLE counts must be str, bytes or list, got {type(counts)}")
    if total != h * w:
        raise InvalidInputError(
            f"RLE counts cover {total} pixels, but its size {h}x{w} has {h * w} "
            f"({'truncated' if total < h * w else 'too long'})"
        )
    return h, w


def decode_rle(rle: CocoRle) -> np.ndarray:
    """Decode a COCO RLE (compressed ``str``/``bytes`` counts or uncompressed list counts) to a
    bool mask (H, W); the RLE is validated first (:func:`check_rle`)."""
    h, w = check_rle(rle)
    counts = rle["counts"]
    if isinstance(counts, list):
        compressed = mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    else:
        compressed = {
            "size": [h, w],
            "counts": counts.encode("ascii") if isinstance(counts, str) else counts,
        }
    return mask_utils.decode(compressed).astype(bool)


def rle_area(rle: CocoRle) -> int:
    """Number of foreground pixels of a COCO RLE (validated first)."""
    check_rle(rle)
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
