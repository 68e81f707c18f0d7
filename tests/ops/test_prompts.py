"""The one prompt validator, and the predictor judging the same cases the same way (the server
runs them too: tests/server/test_api.py)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from anyseg.errors import InvalidInputError
from anyseg.ops.prompts import finite_number, validate_box, validate_points, validate_prompt
from anyseg.predictor import SamPredictor

from .._prompt_cases import INVALID, SIZE_HW, VALID
from ..conftest import make_test_model


@pytest.fixture(scope="module")
def predictor() -> SamPredictor:
    p = SamPredictor(make_test_model())
    p.set_image(np.zeros((*SIZE_HW, 3), np.uint8))
    return p


def _predict(predictor: SamPredictor, points: Any, labels: Any, box: Any) -> None:
    predictor.predict(point_coords=points, point_labels=labels, box=box, multimask_output=False)


@pytest.mark.parametrize(("points", "labels", "box"), VALID)
def test_valid_prompts_pass_everywhere(
    predictor: SamPredictor, points: Any, labels: Any, box: Any
) -> None:
    prompt = validate_prompt(points, labels, box, SIZE_HW)
    assert len(prompt.points_xy) == len(points or [])
    _predict(predictor, points, labels, box)


@pytest.mark.parametrize(("points", "labels", "box", "message", "_json"), INVALID)
def test_invalid_prompts_fail_everywhere_alike(
    predictor: SamPredictor, points: Any, labels: Any, box: Any, message: str, _json: bool
) -> None:
    with pytest.raises(InvalidInputError, match=message) as direct:
        validate_prompt(points, labels, box, SIZE_HW)
    with pytest.raises(InvalidInputError) as via_predictor:
        _predict(predictor, points, labels, box)
    assert str(via_predictor.value) == str(direct.value)


def test_numpy_arrays_follow_the_same_rules() -> None:
    coords, labels = validate_points(np.array([[1, 2]], np.int32), np.array([1]), SIZE_HW)
    assert coords.dtype == np.float64 and labels.dtype == np.int64
    with pytest.raises(InvalidInputError, match="point_labels must be numbers"):
        validate_points(np.array([[1, 2]]), np.array([True]), SIZE_HW)
    with pytest.raises(InvalidInputError, match="box must be numbers"):
        validate_box(np.array(["a", "b", "c", "d"]), SIZE_HW)
    assert validate_box(np.array([[3, 4, 3, 4]]), SIZE_HW).shape == (1, 4)  # degenerate: valid


def test_whole_prompts() -> None:
    p = validate_prompt([[0, 0], [10, 8]], [1, 0], [1, 1, 5, 5], (8, 10))
    assert p.points_xy == ((0.0, 0.0), (10.0, 8.0)) and p.labels == (1, 0)
    assert p.positive_points() == [[0.0, 0.0]]
    assert p.to_json() == {
        "points": [[0.0, 0.0], [10.0, 8.0]],
        "labels": [1, 0],
        "box": [1.0, 1.0, 5.0, 5.0],
    }
    coords, labels, box = p.arrays()
    assert coords is not None and coords.shape == (2, 2) and box is not None
    assert labels is not None and labels.tolist() == [1, 0]
    with pytest.raises(InvalidInputError, match="at least one point or a box"):
        validate_prompt([], [], None, (8, 10))
    with pytest.raises(InvalidInputError, match="at most 64"):
        validate_prompt([[1, 1]] * 65, [1] * 65, None, (8, 10), max_points=64)


def test_finite_number() -> None:
    assert finite_number(3, "x") == 3.0
    for bad, message in ((True, "a number"), ("1", "a number"), (float("nan"), "finite")):
        with pytest.raises(InvalidInputError, match=message):
            finite_number(bad, "x")
    with pytest.raises(InvalidInputError, match="finite"):
        finite_number(10**5000, "x")  # more digits than Python prints: no ValueError either
