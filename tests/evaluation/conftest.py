"""A tiny SA-1B-format dataset of rectangles and fake predictors with known behaviour."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from anyseg.data.sa1b import record_from_masks, write_image_record
from anyseg.evaluation.prompts import tight_box
from anyseg.io import write_image

# (height, width, [(y0, y1, x0, x1), ...]) per image; rectangles do not overlap.
RECTS: tuple[tuple[int, int, tuple[tuple[int, int, int, int], ...]], ...] = (
    (48, 64, ((4, 20, 4, 24), (24, 44, 30, 60), (2, 5, 50, 55))),
    (40, 40, ((5, 25, 5, 25), (28, 38, 2, 37))),
)


@dataclass(frozen=True)
class TinyDataset:
    root: Path
    images: tuple[np.ndarray, ...]
    masks: tuple[tuple[np.ndarray, ...], ...]

    @property
    def rect_widths(self) -> list[int]:
        """Width of every rectangle, in evaluation order (images, then masks)."""
        return [x1 - x0 for _, _, rects in RECTS for (_, _, x0, x1) in rects]


def _rect(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def make_tiny_dataset(root: Path) -> TinyDataset:
    """Write ``root/images/img{k}.png`` and ``root/annotations/img{k}.json`` (ids 10*k + i)."""
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    rng = np.random.default_rng(0)
    images, all_masks = [], []
    for k, (h, w, rects) in enumerate(RECTS):
        masks = np.stack([_rect(h, w, *r) for r in rects])
        image = rng.integers(0, 60, size=(h, w, 3), dtype=np.uint8)
        for i, m in enumerate(masks):  # objects brighter than the background, one colour each
            image[m] = (120 + 40 * i, 200 - 30 * i, 90 + 50 * k)
        write_image(root / "images" / f"img{k}.png", image)
        record = record_from_masks(
            masks,
            image_id=k + 1,
            file_name=f"img{k}.png",
            ids=[10 * k + i for i in range(len(masks))],
            # Image 0 records levels (its small rectangle is a part); image 1 does not.
            levels=["whole", "whole", "part"] if k == 0 else None,
        )
        write_image_record(root / "annotations" / f"img{k}.json", record)
        images.append(image)
        all_masks.append(tuple(masks))
    return TinyDataset(root, tuple(images), tuple(all_masks))


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> TinyDataset:
    return make_tiny_dataset(tmp_path / "data")


@pytest.fixture
def make_dataset() -> Callable[[Path], TinyDataset]:
    """The dataset writer itself, for tests that need several copies."""
    return make_tiny_dataset


class FakePredictor:
    """Answers every prompt with the ground-truth mask it selects, optionally degraded.

    The target is the mask containing the first click, or the mask whose tight box is the box.
    ``degrade=True``: with one click or a box, the answer loses the right half of its columns
    (IoU (w - w // 2) / w for a w-wide rectangle); with two or more clicks it is exact. Multimask
    output is (degraded, exact, empty) with scores (0.9, 0.5, 0.1): the most confident mask is the
    degraded one, the best of three is exact.
    """

    def __init__(self, dataset: TinyDataset, degrade: bool = False) -> None:
        self._by_image = {
            img.tobytes(): masks for img, masks in zip(dataset.images, dataset.masks, strict=True)
        }
        self.degrade = degrade
        self.masks: tuple[np.ndarray, ...] = ()
        self.calls: list[dict[str, object]] = []
        self.set_image_calls = 0

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        self.masks = self._by_image[np.ascontiguousarray(image).tobytes()]
        self.set_image_calls += 1

    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self.calls.append(
            {
                "points": None if point_coords is None else np.array(point_coords),
                "labels": None if point_labels is None else np.array(point_labels),
                "box": box,
                "mask_input": mask_input,
                "multimask": multimask_output,
            }
        )
        if box is not None:
            target = next(m for m in self.masks if np.array_equal(tight_box(m), box))
            n_prompts = 1
        else:
            assert point_coords is not None and point_labels is not None
            x, y = (int(v) for v in point_coords[0])
            target = next(m for m in self.masks if m[y, x])
            n_prompts = len(point_coords)
        answer = target.copy()
        if self.degrade and n_prompts == 1:
            cols = np.flatnonzero(target.any(axis=0))
            w = cols.size
            answer[:, cols[w - w // 2 :]] = False
        # Low-res logits tagged with the call number so feedback can be checked.
        tag = float(len(self.calls))
        if multimask_output:
            masks = np.stack([answer, target, np.zeros_like(target)])
            scores = np.array([0.9, 0.5, 0.1], dtype=np.float32)
            logits = np.full((3, 256, 256), tag, dtype=np.float32)
        else:
            masks, scores = answer[None], np.array([0.9], dtype=np.float32)
            logits = np.full((1, 256, 256), tag, dtype=np.float32)
        return masks, scores, logits


@pytest.fixture
def fake_predictor() -> type[FakePredictor]:
    """The :class:`FakePredictor` class (conftest is not importable under importlib mode)."""
    return FakePredictor
