"""Fixtures of the engine tests: one local Ray instance (2 CPUs) for the whole session, about
20 small images, and their single-process ``anyseg auto`` output as the reference."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

from anyseg.cli.main import main

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _helpers import FAST, NUM_IMAGES, ray_processes


@pytest.fixture(scope="session")
def ray_instance() -> Iterator[ModuleType]:
    """A local Ray instance shared by the engine tests; afterwards no raylet is left behind."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        yield ray
    finally:
        ray.shutdown()
        deadline = time.monotonic() + 20
        while ray_processes() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not ray_processes(), f"Ray processes left behind: {ray_processes()}"


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """NUM_IMAGES small photos (48x64 crops of skimage's astronaut), PNG and JPEG, SA-1B names
    and one plain name."""
    from skimage import data

    photo = data.astronaut()
    folder = tmp_path_factory.mktemp("images")
    for i in range(NUM_IMAGES):
        crop = np.ascontiguousarray(
            photo[40 + 17 * i : 136 + 17 * i : 2, 60 + 11 * i : 188 + 11 * i : 2]
        )
        name = "photo.jpg" if i == 0 else f"sa_{i}.{'png' if i % 3 else 'jpg'}"
        Image.fromarray(crop).save(folder / name)
    return folder


@pytest.fixture(scope="session")
def reference(
    images: Path, test_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The single-process ``anyseg auto`` output of ``images`` (FAST options)."""
    out = tmp_path_factory.mktemp("reference")
    assert (
        main(["auto", str(images), "-o", str(out), "--checkpoint", str(test_checkpoint), *FAST])
        == 0
    )
    return out
