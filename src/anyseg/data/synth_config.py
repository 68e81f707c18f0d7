"""Settings of the synthetic scene generator (:mod:`anyseg.data.synthetic`), in a module of their
own so that the generator and its painting helpers (:mod:`anyseg.data.synthetic_render`) both
import them without importing each other."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from anyseg.errors import InvalidInputError


@dataclass(frozen=True)
class SynthConfig:
    """Settings of the scene generator (shared by the library, ``anyseg synth`` and dataset.json).

    Lengths are fractions of the short image side unless they say pixels.
    """

    height: int = field(default=512, metadata={"help": "image height in pixels"})
    width: int = field(default=512, metadata={"help": "image width in pixels"})
    min_objects: int = field(default=6, metadata={"help": "fewest objects per scene"})
    max_objects: int = field(default=50, metadata={"help": "most objects per scene"})
    min_radius: float = field(
        default=0.03, metadata={"help": "smallest object radius, fraction of the short side"}
    )
    max_radius: float = field(
        default=0.35, metadata={"help": "largest object radius, fraction of the short side"}
    )
    part_prob: float = field(default=0.6, metadata={"help": "P(object big enough has parts)"})
    subpart_prob: float = field(default=0.7, metadata={"help": "P(part carries a subpart)"})
    assembly_prob: float = field(
        default=0.35, metadata={"help": "P(parts are touching components, not inner panels)"}
    )
    part_min_radius: float = field(
        default=0.06, metadata={"help": "smallest object radius (fraction) with parts"}
    )
    subpart_min_radius: float = field(
        default=0.08, metadata={"help": "smallest object radius (fraction) with subparts"}
    )
    touch_prob: float = field(default=0.3, metadata={"help": "P(object placed touching another)"})
    min_contrast: float = field(
        default=60.0, metadata={"help": "least RGB distance of a fill from what lies under it"}
    )
    soft_edge_prob: float = field(default=0.25, metadata={"help": "P(object has soft edges)"})
    shadow_prob: float = field(default=0.25, metadata={"help": "P(object casts a drop shadow)"})
    blur_prob: float = field(default=0.5, metadata={"help": "P(whole image is blurred)"})
    max_blur_sigma: float = field(default=1.2, metadata={"help": "largest image blur, pixels"})
    max_noise: float = field(default=6.0, metadata={"help": "largest pixel noise std (0..255)"})
    min_area_frac: float = field(
        default=2e-4, metadata={"help": "drop masks below this fraction of the image (and 4 px)"}
    )

    def __post_init__(self) -> None:
        if self.height < 32 or self.width < 32:
            raise InvalidInputError(f"image size must be >= 32x32, got {self.height}x{self.width}")
        if not 1 <= self.min_objects <= self.max_objects:
            raise InvalidInputError(
                f"need 1 <= min_objects <= max_objects, got {self.min_objects}, {self.max_objects}"
            )
        if not 0 < self.min_radius <= self.max_radius:
            raise InvalidInputError(
                f"need 0 < min_radius <= max_radius, got {self.min_radius}, {self.max_radius}"
            )
        for name in (
            "part_prob",
            "subpart_prob",
            "assembly_prob",
            "touch_prob",
            "soft_edge_prob",
            "shadow_prob",
            "blur_prob",
            "min_area_frac",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise InvalidInputError(f"{name} must be in [0, 1], got {value}")
        for name in (
            "min_contrast",
            "max_blur_sigma",
            "max_noise",
            "part_min_radius",
            "subpart_min_radius",
        ):
            if getattr(self, name) < 0:
                raise InvalidInputError(f"{name} must be >= 0, got {getattr(self, name)}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SynthConfig:
        """Build from a dict (e.g. ``dataset.json["config"]``); unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InvalidInputError(f"unknown SynthConfig key(s) {unknown}; known: {sorted(names)}")
        return cls(**data)
