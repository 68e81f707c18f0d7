"""Fully automatic mask generation (the SAM data engine's third stage).

- :class:`SamAutomaticMaskGenerator`: ``generate(image)`` (the original's record dicts) and
  ``generate_records(image)`` (typed :class:`MaskRecord`).
- :class:`AmgConfig`: all settings, shared by the library, ``anyseg auto`` and config files.
- :func:`to_image_record`: records -> SA-1B :class:`anyseg.data.sa1b.ImageRecord`.
"""

from __future__ import annotations

from anyseg.automatic.config import AmgConfig
from anyseg.automatic.generator import FilterStats, SamAutomaticMaskGenerator
from anyseg.automatic.grids import (
    CropBox,
    build_all_layer_point_grids,
    build_point_grid,
    generate_crop_boxes,
)
from anyseg.automatic.records import MaskRecord, to_image_record

__all__ = [
    "AmgConfig",
    "CropBox",
    "FilterStats",
    "MaskRecord",
    "SamAutomaticMaskGenerator",
    "build_all_layer_point_grids",
    "build_point_grid",
    "generate_crop_boxes",
    "to_image_record",
]
