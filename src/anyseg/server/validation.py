"""Validation of what clients send besides prompts: masks (COCO RLE), labels, authors, scores.

Prompts are checked by :mod:`anyseg.ops.prompts`, the validator the predictor uses too. Every
check raises :class:`anyseg.errors.InvalidInputError` with a message that names what was
expected and what came; the HTTP layer turns it into a 400 with a JSON body.
"""

from __future__ import annotations

from typing import Any

from anyseg.errors import InvalidInputError
from anyseg.ops.prompts import Prompt, finite_number, validate_points, validate_prompt
from anyseg.ops.rle import rle_counts_total

__all__ = ["Prompt", "validate_author", "validate_label", "validate_prompt", "validate_score"]
__all__ += ["validate_points"]
__all__ += ["MAX_AUTHOR_CHARS", "MAX_LABEL_CHARS", "rle_counts_total", "validate_segmentation"]

MAX_LABEL_CHARS = 200
MAX_AUTHOR_CHARS = 200


def validate_segmentation(seg: Any, size_hw: tuple[int, int]) -> dict[str, Any]:
    """Check a compressed COCO RLE ``{"size": [H, W], "counts": str}`` of an (H, W) image."""
    if not isinstance(seg, dict) or set(seg) != {"size", "counts"}:
        raise InvalidInputError('segmentation must be a COCO RLE {"size": [h, w], "counts": str}')
    size = seg["size"]
    if not isinstance(size, (list, tuple)) or [*size] != [size_hw[0], size_hw[1]]:
        raise InvalidInputError(
            f"segmentation size must be the image's [h, w] = {list(size_hw)}, got {size!r}"
        )
    counts = seg["counts"]
    if not isinstance(counts, str) or not counts.isascii():
        raise InvalidInputError("segmentation counts must be a pycocotools compressed string")
    total = rle_counts_total(counts)
    if total != size_hw[0] * size_hw[1]:
        raise InvalidInputError(
            f"segmentation covers {total} pixels, the image has {size_hw[0] * size_hw[1]}"
        )
    return {"size": [int(size_hw[0]), int(size_hw[1])], "counts": counts}


def _short_text(value: Any, what: str, max_chars: int) -> str | None:
    """None or a string of at most ``max_chars`` (whitespace runs become one space); blank
    means None."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be a string, got {type(value).__name__}")
    value = " ".join(value.split())
    if len(value) > max_chars:
        raise InvalidInputError(f"{what} must have at most {max_chars} characters")
    return value or None


def validate_label(label: Any) -> str | None:
    """A mask's label: None or a string of at most ``MAX_LABEL_CHARS``; blank means None."""
    return _short_text(label, "label", MAX_LABEL_CHARS)


def validate_author(author: Any) -> str | None:
    """A person's name: None or a string of at most ``MAX_AUTHOR_CHARS``; blank means None."""
    return _short_text(author, "author", MAX_AUTHOR_CHARS)


def validate_score(value: Any, what: str = "predicted_iou") -> float | None:
    """None or a finite number (a model's IoU estimate may leave [0, 1] slightly)."""
    return None if value is None else finite_number(value, what)
