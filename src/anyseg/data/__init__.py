"""Data: SA-1B and COCO records, the synthetic scene generator, and training samples.

- :mod:`anyseg.data.sa1b`: per-image SA-1B JSON records (read, validate, write) and dataset folders.
- :mod:`anyseg.data.coco`: COCO instances JSON to and from :class:`ImageRecord`.
- :mod:`anyseg.data.synthetic`: procedural scenes with whole/part/subpart masks (``anyseg synth``).
"""

from anyseg.data.coco import read_coco, write_coco
from anyseg.data.sa1b import (
    ImageRecord,
    MaskAnnotation,
    find_dataset,
    read_image_record,
    record_from_masks,
    write_image_record,
)
from anyseg.io import read_image, write_image

__all__ = [
    "ImageRecord",
    "MaskAnnotation",
    "find_dataset",
    "read_coco",
    "read_image",
    "read_image_record",
    "record_from_masks",
    "write_coco",
    "write_image",
    "write_image_record",
]
