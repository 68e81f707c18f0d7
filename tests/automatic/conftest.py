"""Fixtures of the automatic mask generation tests: a small photo and the test model."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def small_image() -> np.ndarray:
    """A non-square 96x128 crop of skimage's astronaut (RGB uint8)."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[100:292:2, 150:406:2])
