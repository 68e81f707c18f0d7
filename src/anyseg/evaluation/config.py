"""Configuration of an evaluation run (shared by the library, ``anyseg eval`` and config files)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from anyseg.errors import InvalidInputError

#: Protocols ``evaluate`` knows, in report order.
PROTOCOLS: tuple[str, ...] = ("point", "box", "interactive", "amg")
DEFAULT_PROTOCOLS: tuple[str, ...] = ("point", "box", "interactive")

FirstPoint = Literal["center", "random"]


@dataclass(frozen=True)
class EvalConfig:
    """What to evaluate and how.

    Attributes:
        protocols: subset of :data:`PROTOCOLS`. ``point``: one click at the mask centre, scored for
            the most confident of 3 masks, the best of 3 (oracle) and the single-mask output.
            ``box``: the tight box, single-mask output. ``interactive``: 1..``num_points`` clicks.
            ``amg``: recall of the ground-truth masks by automatic mask generation.
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
        amg_points_per_side: point grid of automatic generation (the paper's 32).
        amg_points_per_batch: points decoded per batch (memory only; results do not depend on it).
        amg_pred_iou_thresh: automatic generation's predicted-IoU filter.
        amg_stability_score_thresh: automatic generation's stability filter.
        amg_box_nms_thresh: automatic generation's box NMS IoU threshold.
        amg_crop_n_layers: automatic generation's crop layers (0: whole image only).
        num_samples: masks drawn in ``samples.png`` (the first ones evaluated).
    """

    protocols: tuple[str, ...] = DEFAULT_PROTOCOLS
    max_images: int | None = None
    max_masks_per_image: int | None = None
    min_mask_area: int = 1
    seed: int = 0
    num_points: int = 9
    first_point: FirstPoint = "center"
    first_point_multimask: bool = True
    feed_mask_input: bool = True
    recall_thresholds: tuple[float, ...] = (0.5, 0.75)
    amg_points_per_side: int = 32
    amg_points_per_batch: int = 64
    amg_pred_iou_thresh: float = 0.88
    amg_stability_score_thresh: float = 0.95
    amg_box_nms_thresh: float = 0.7
    amg_crop_n_layers: int = 0
    num_samples: int = 6

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
        _check_int(self.amg_points_per_side, "amg_points_per_side", 1)
        _check_int(self.amg_points_per_batch, "amg_points_per_batch", 1)
        _check_int(self.amg_crop_n_layers, "amg_crop_n_layers", 0)
        if self.first_point not in ("center", "random"):
            raise InvalidInputError(
                f"first_point must be 'center' or 'random', got {self.first_point!r}"
            )
        for name in ("amg_pred_iou_thresh", "amg_stability_score_thresh", "amg_box_nms_thresh"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise InvalidInputError(f"{name} must be a number in [0, 1], got {value!r}")
        if not self.recall_thresholds or any(not 0.0 <= t <= 1.0 for t in self.recall_thresholds):
            raise InvalidInputError(
                f"recall_thresholds must be IoUs in [0, 1], got {list(self.recall_thresholds)}"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvalConfig:
        """Build from a dict (a report's ``config``, a YAML file); unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidInputError(
                f"unknown evaluation option(s) {unknown}; known: {sorted(known)}"
            )
        values = dict(data)
        for key in ("protocols", "recall_thresholds"):
            if key in values and values[key] is not None:
                values[key] = tuple(values[key])
        return cls(**values)


def _check_int(value: Any, name: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidInputError(f"{name} must be an integer >= {minimum}, got {value!r}")
