"""Configuration of an evaluation run (shared by the library, ``anyseg eval`` and config files).

The automatic generator's settings are an :class:`AmgConfig` inside (``config.amg``), never a
copy of its fields; the flags of ``anyseg eval`` come from the field metadata, with ``--amg-``
in front of the generator's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from anyseg.automatic.config import AmgConfig
from anyseg.errors import InvalidInputError
from anyseg.settings import from_mapping, opt, to_mapping

#: Protocols ``evaluate`` knows, in report order.
PROTOCOLS: tuple[str, ...] = ("point", "box", "interactive", "amg", "text")
#: Caption forms of the text protocol's queries (anyseg.data.captions.referring_queries).
TEXT_FORMS: tuple[str, ...] = ("full", "short", "relational")
DEFAULT_PROTOCOLS: tuple[str, ...] = ("point", "box", "interactive")

FirstPoint = Literal["center", "random"]

# Keys of reports written before the generator's settings were composed (``amg_*`` beside the
# others): they still load.
_LEGACY_AMG_KEYS = (
    "points_per_side",
    "points_per_batch",
    "pred_iou_thresh",
    "stability_score_thresh",
    "box_nms_thresh",
    "crop_n_layers",
)


@dataclass(frozen=True)
class EvalConfig:
    """What to evaluate and how.

    Attributes:
        protocols: subset of :data:`PROTOCOLS`. ``point``: one click at the mask centre, scored for
            the most confident of 3 masks, the best of 3 (oracle) and the single-mask output.
            ``box``: the tight box, single-mask output. ``interactive``: 1..``num_points`` clicks.
            ``amg``: recall of the ground-truth masks by automatic mask generation. ``text``:
            phrases that name exactly one mask (data with attributes; models with a text path;
            see :mod:`anyseg.evaluation.text`).
        max_images: evaluate the first N images of the sorted dataset; None for all.
        max_masks_per_image: at most N masks per image, a seeded random subset (kept in file
            order); None for all.
        min_mask_area: skip ground-truth masks with fewer pixels than this (>= 1: empty masks
            are always skipped).
        seed: seeds the mask subsets and the random first point; same seed, same report.
        num_points: clicks of the interactive protocol (the paper plots 1 to 9).
        first_point: ``"center"`` (the paper's default: farthest from the boundary) or
            ``"random"`` (a uniform pixel of the mask, the paper's harder variant).
        first_point_multimask: click 1 of the interactive protocol takes the most confident of
            the 3 masks (as the point protocol does); False uses the single-mask output. Clicks
            2+ always use the single-mask output, as in the paper's interactive setup.
        feed_mask_input: clicks 2+ also pass the previous low-resolution logits as ``mask_input``
            (as SAM's interactive training and demo do).
        recall_thresholds: IoU thresholds of the ``amg`` recall.
        amg: the automatic generator's settings for the ``amg`` protocol (the paper's: a
            32x32 grid, predicted IoU > 0.88, stability >= 0.95, NMS at 0.7).
        num_samples: masks drawn in ``samples.png`` (the first ones evaluated), and phrases in
            ``text_samples.png``.
        text_forms: caption forms of the text queries (of :data:`TEXT_FORMS`).
    """

    protocols: tuple[str, ...] = field(
        default=DEFAULT_PROTOCOLS,
        metadata=opt("comma-separated subset of point,box,interactive,amg,text", metavar="LIST"),
    )
    max_images: int | None = field(default=None, metadata=opt("first N images only"))
    max_masks_per_image: int | None = field(
        default=None, metadata=opt("seeded random subset of N masks per image")
    )
    min_mask_area: int = field(default=1, metadata=opt("skip smaller masks", metavar="PX"))
    seed: int = field(
        default=0, metadata=opt("seed of mask subsets and random first points", metavar="S")
    )
    num_points: int = field(
        default=9, metadata=opt("clicks of the interactive curve", flag="--points")
    )
    first_point: FirstPoint = field(
        default="center",
        metadata=opt("first click at the mask centre or at a random mask pixel"),
    )
    first_point_multimask: bool = field(
        default=True,
        metadata=opt(
            "interactive click 1 uses the single-mask output instead of the most confident of 3",
            flag="--single-first-click",
            const=False,
        ),
    )
    feed_mask_input: bool = field(
        default=True,
        metadata=opt(
            "interactive clicks 2+ do not pass the previous low-res logits as mask_input",
            flag="--no-mask-feedback",
            const=False,
        ),
    )
    recall_thresholds: tuple[float, ...] = field(
        default=(0.5, 0.75), metadata=opt("IoU thresholds of the amg recall", metavar="T,T")
    )
    amg: AmgConfig = field(default_factory=AmgConfig, metadata={"prefix": "amg-"})
    num_samples: int = field(
        default=6, metadata=opt("masks drawn in samples.png", flag="--samples")
    )
    text_forms: tuple[str, ...] = field(
        default=("full", "short"),
        metadata=opt("caption forms of the text queries: full,short,relational", metavar="LIST"),
    )

    def __post_init__(self) -> None:
        protocols = tuple(self.protocols)
        object.__setattr__(self, "protocols", protocols)
        object.__setattr__(
            self, "recall_thresholds", tuple(float(t) for t in self.recall_thresholds)
        )
        unknown = [p for p in protocols if p not in PROTOCOLS]
        if unknown or not protocols:
            raise InvalidInputError(
                f"protocols must be a non-empty subset of {list(PROTOCOLS)}, got {list(protocols)}"
            )
        object.__setattr__(self, "text_forms", tuple(self.text_forms))
        bad_forms = [f for f in self.text_forms if f not in TEXT_FORMS]
        if bad_forms or not self.text_forms:
            raise InvalidInputError(
                f"text_forms must be a non-empty subset of {list(TEXT_FORMS)}, got "
                f"{list(self.text_forms)}"
            )
        if len(set(protocols)) != len(protocols):
            raise InvalidInputError(f"protocols are listed twice: {list(protocols)}")
        for name in ("max_images", "max_masks_per_image"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise InvalidInputError(f"{name} must be a positive integer or None, got {value!r}")
        _check_int(self.min_mask_area, "min_mask_area", 1)
        _check_int(self.seed, "seed", 0)
        _check_int(self.num_points, "num_points", 1)
        _check_int(self.num_samples, "num_samples", 0)
        if self.first_point not in ("center", "random"):
            raise InvalidInputError(
                f"first_point must be 'center' or 'random', got {self.first_point!r}"
            )
        if not isinstance(self.amg, AmgConfig):
            raise InvalidInputError(f"amg must be an AmgConfig, got {type(self.amg).__name__}")
        if not self.recall_thresholds or any(not 0.0 <= t <= 1.0 for t in self.recall_thresholds):
            raise InvalidInputError(
                f"recall_thresholds must be IoUs in [0, 1], got {list(self.recall_thresholds)}"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists, the generator's settings a nested table)."""
        data = to_mapping(self)
        data["amg"].pop("point_grids", None)  # arrays are not part of a report's config
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvalConfig:
        """Build from a dict (a report's ``config``, a YAML file); unknown keys are an error.

        Reports written by earlier versions, with the generator's settings as ``amg_*`` keys
        beside the others, load too.
        """
        values = dict(data)
        amg = dict(values.pop("amg", None) or {})
        for key in _LEGACY_AMG_KEYS:
            if f"amg_{key}" in values:
                amg[key] = values.pop(f"amg_{key}")
        if amg:
            values["amg"] = amg
        return from_mapping(cls, values, source="evaluation config")


def _check_int(value: Any, name: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidInputError(f"{name} must be an integer >= {minimum}, got {value!r}")
