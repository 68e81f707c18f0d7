"""Point grids and crop boxes against hand-computed values and a slow reference."""

from __future__ import annotations

import math

import numpy as np
import pytest

from anyseg.automatic.grids import (
    build_all_layer_point_grids,
    build_point_grid,
    generate_crop_boxes,
)
from anyseg.errors import InvalidInputError


def test_point_grid_is_cell_centres_row_by_row() -> None:
    grid = build_point_grid(4)
    assert grid.shape == (16, 2)
    centres = [0.125, 0.375, 0.625, 0.875]
    expected = [(x, y) for y in centres for x in centres]  # x fastest, as the original
    np.testing.assert_allclose(grid, expected, atol=1e-15)
    np.testing.assert_array_equal(build_point_grid(1), [[0.5, 0.5]])
    with pytest.raises(InvalidInputError):
        build_point_grid(0)


def test_layer_grids_are_downscaled() -> None:
    grids = build_all_layer_point_grids(32, 2, 2)
    assert [len(g) for g in grids] == [32**2, 16**2, 8**2]
    assert [len(g) for g in build_all_layer_point_grids(10, 1, 3)] == [100, 9]  # int(10 / 3)


def slow_crop_boxes(h: int, w: int, n_layers: int, ratio: float) -> list[tuple[int, ...]]:
    boxes = [(0, 0, w, h, 0)]
    for layer in range(1, n_layers + 1):
        n = 2**layer
        overlap = int(ratio * min(h, w) * 2 / n)
        cw = math.ceil((overlap * (n - 1) + w) / n)
        ch = math.ceil((overlap * (n - 1) + h) / n)
        for i in range(n):  # x outer
            for j in range(n):  # y inner
                x0, y0 = (cw - overlap) * i, (ch - overlap) * j
                boxes.append((x0, y0, min(x0 + cw, w), min(y0 + ch, h), layer))
    return boxes


def test_crop_boxes_of_tiny_images_match_the_original() -> None:
    # Degenerate (empty) crops, as the original computes them; the generator skips them.
    crops = generate_crop_boxes((7, 5), 2, 512 / 1500)
    assert [tuple(c) for c in crops] == slow_crop_boxes(7, 5, 2, 512 / 1500)
    assert any(c.x1 <= c.x0 for c in crops)


@pytest.mark.parametrize(("h", "w"), [(512, 512), (300, 451), (1500, 2250)])
def test_crop_boxes_against_reference(h: int, w: int) -> None:
    crops = generate_crop_boxes((h, w), 2, 512 / 1500)
    assert [tuple(c) for c in crops] == slow_crop_boxes(h, w, 2, 512 / 1500)
    assert len(crops) == 1 + 4 + 16
    for c in crops:
        assert 0 <= c.x0 < c.x1 <= w and 0 <= c.y0 < c.y1 <= h
    # Every layer covers the whole image.
    for layer in (1, 2):
        cover = np.zeros((h, w), dtype=bool)
        for c in crops:
            if c.layer == layer:
                cover[c.y0 : c.y1, c.x0 : c.x1] = True
        assert cover.all()


def test_crop_boxes_known_values() -> None:
    crops = generate_crop_boxes((512, 512), 1, 512 / 1500)
    # overlap = int(512/1500 * 512) = 174; side = ceil((174 + 512) / 2) = 343.
    assert [c.xyxy for c in crops] == [
        (0, 0, 512, 512),
        (0, 0, 343, 343),
        (0, 169, 343, 512),
        (169, 0, 512, 343),
        (169, 169, 512, 512),
    ]
    assert generate_crop_boxes((10, 20), 0, 0.3) == [(0, 0, 20, 10, 0)]
    with pytest.raises(InvalidInputError):
        generate_crop_boxes((0, 5), 1, 0.3)
