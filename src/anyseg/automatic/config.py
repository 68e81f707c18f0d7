"""Settings of the automatic mask generator: one frozen dataclass for the library, every command
that generates masks (``anyseg auto``, ``anyseg eval``'s ``amg`` protocol, ``anyseg serve``'s
pre-fill) and config files. The flags come from the field metadata (:mod:`anyseg.settings`).

The parameters and their defaults are those of the original ``SamAutomaticMaskGenerator`` (the
defaults were tuned for ViT-H). ``mode`` is anyseg's: ``"exact"`` reproduces the original's
records; ``"fast"`` trades a little fidelity for speed (see :mod:`anyseg.automatic.decode`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, get_args

import numpy as np

from anyseg.config import AmgThresholds, Mode
from anyseg.errors import InvalidInputError
from anyseg.settings import from_mapping, opt

OutputMode = Literal["binary_mask", "uncompressed_rle", "coco_rle"]


@dataclass(frozen=True)
class AmgConfig:
    """Automatic mask generation settings (paper §5 "fully automatic stage", appendix B)."""

    points_per_side: int | None = field(
        default=32,
        metadata=opt("grid points per image side (points_per_side**2 prompts per crop layer 0)"),
    )
    points_per_batch: int = field(
        default=64, metadata=opt("prompts decoded together (memory vs. speed; results equal)")
    )
    # None: the threshold the model recommends in its checkpoint (Sam.amg_thresholds), else
    # the paper's (PAPER_THRESHOLDS); SamAutomaticMaskGenerator resolves it (resolved_for).
    pred_iou_thresh: float | None = field(
        default=None,
        metadata=opt(
            "keep masks whose predicted IoU is > this (0 disables; default: the model's "
            "recommendation, else the paper's 0.88)"
        ),
    )
    stability_score_thresh: float | None = field(
        default=None,
        metadata=opt(
            "keep masks whose stability score is >= this (0 disables; default: the model's "
            "recommendation, else the paper's 0.95)"
        ),
    )
    stability_score_offset: float = field(
        default=1.0, metadata=opt("logit offset of the stability score's two thresholds")
    )
    box_nms_thresh: float = field(
        default=0.7, metadata=opt("box IoU above which a lower-scored mask of a crop is dropped")
    )
    crop_n_layers: int = field(
        default=0, metadata=opt("extra crop layers; layer i has (2**i)**2 crops")
    )
    crop_nms_thresh: float = field(
        default=0.7, metadata=opt("box IoU above which duplicates across crops are dropped")
    )
    crop_overlap_ratio: float = field(
        default=512 / 1500, metadata=opt("crop overlap, as a fraction of the image's short side")
    )
    crop_n_points_downscale_factor: int = field(
        default=1, metadata=opt("points per side in crop layer i = points_per_side / factor**i")
    )
    point_grids: tuple[np.ndarray, ...] | None = field(
        default=None,
        compare=False,
        metadata=opt(
            "explicit (N, 2) grids in [0, 1] (x, y), one per crop layer; exclusive with "
            "points_per_side",
            cli=False,
        ),
    )
    min_mask_region_area: int = field(
        default=0,
        metadata=opt("fill holes and drop islands smaller than this many pixels (0 disables)"),
    )
    output_mode: OutputMode = field(
        default="binary_mask",
        metadata=opt("segmentation format: binary_mask, uncompressed_rle or coco_rle", cli=False),
    )
    mode: Mode = field(
        default="exact",
        # Set by the commands' shared --mode flag (anyseg.cli.common), not a flag of its own.
        metadata=opt(
            "exact: the original's records; fast: bfloat16 and low-res pre-filters", cli=False
        ),
    )
    label_vocab: tuple[str, ...] = field(
        default=(),
        metadata=opt(
            "phrases to label masks with: each mask gets the best-matching one and its score "
            "from CLIP on the mask's crop (e.g. star,ellipse,striped bar; --clip for the CLIP)",
            metavar="PHRASE,PHRASE,...",
        ),
    )

    def __post_init__(self) -> None:
        vocab = tuple(str(p).strip() for p in self.label_vocab)
        object.__setattr__(self, "label_vocab", vocab)
        if any(not p for p in vocab) or len(set(vocab)) != len(vocab):
            raise InvalidInputError(
                f"label_vocab must be distinct non-empty phrases, got {list(self.label_vocab)}"
            )
        if (self.points_per_side is None) == (self.point_grids is None):
            raise InvalidInputError(
                "give exactly one of points_per_side and point_grids, got "
                f"points_per_side={self.points_per_side!r} and "
                f"point_grids={'None' if self.point_grids is None else 'a list'}"
            )
        if self.points_per_side is not None and self.points_per_side < 1:
            raise InvalidInputError(f"points_per_side must be >= 1, got {self.points_per_side}")
        for name in ("points_per_batch", "crop_n_points_downscale_factor"):
            if getattr(self, name) < 1:
                raise InvalidInputError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("crop_n_layers", "min_mask_region_area"):
            if getattr(self, name) < 0:
                raise InvalidInputError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("box_nms_thresh", "crop_nms_thresh", "crop_overlap_ratio"):
            value = getattr(self, name)
            if not math.isfinite(value) or not 0.0 <= value <= 1.0:
                raise InvalidInputError(f"{name} must be in [0, 1], got {value}")
        for name in ("pred_iou_thresh", "stability_score_thresh"):
            value = getattr(self, name)
            if value is None:
                continue
            # NaN would silently disable the filter (every comparison with it is False).
            if not math.isfinite(value) or not 0.0 <= value <= 1.0:
                raise InvalidInputError(f"{name} must be a number in [0, 1], got {value}")
        if not math.isfinite(self.stability_score_offset) or self.stability_score_offset < 0:
            raise InvalidInputError(
                f"stability_score_offset must be a finite number >= 0, got "
                f"{self.stability_score_offset}"
            )
        if self.output_mode not in get_args(OutputMode):
            raise InvalidInputError(
                f"output_mode must be one of {get_args(OutputMode)}, got {self.output_mode!r}"
            )
        if self.mode not in get_args(Mode):
            raise InvalidInputError(f"mode must be one of {get_args(Mode)}, got {self.mode!r}")
        if self.point_grids is not None:
            grids = tuple(np.asarray(g, dtype=np.float64) for g in self.point_grids)
            if len(grids) < self.crop_n_layers + 1:
                raise InvalidInputError(
                    f"point_grids needs one grid per crop layer ({self.crop_n_layers + 1}), "
                    f"got {len(grids)}"
                )
            for i, g in enumerate(grids):
                if g.ndim != 2 or g.shape[1] != 2 or not ((g >= 0) & (g <= 1)).all():
                    raise InvalidInputError(
                        f"point_grids[{i}] must be (N, 2) (x, y) in [0, 1], got shape {g.shape}"
                    )
            object.__setattr__(self, "point_grids", grids)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AmgConfig:
        """Build from a mapping (a config file); unknown keys are an error that names them."""
        return from_mapping(cls, data, source="AmgConfig")

    def resolved_for(self, recommended: AmgThresholds | None) -> AmgConfig:
        """This config with its unset thresholds filled in: from ``recommended`` (a model's
        :attr:`~anyseg.modeling.Sam.amg_thresholds`) when given, else the paper's."""
        source = recommended or PAPER_THRESHOLDS
        return replace(
            self,
            pred_iou_thresh=(
                source.pred_iou_thresh if self.pred_iou_thresh is None else self.pred_iou_thresh
            ),
            stability_score_thresh=(
                source.stability_score_thresh
                if self.stability_score_thresh is None
                else self.stability_score_thresh
            ),
        )

    @property
    def iou_threshold(self) -> float:
        """The predicted-IoU threshold of a resolved config (:meth:`resolved_for`)."""
        if self.pred_iou_thresh is None:
            raise ValueError("unresolved AmgConfig: call resolved_for(model.amg_thresholds)")
        return self.pred_iou_thresh

    @property
    def stability_threshold(self) -> float:
        """The stability threshold of a resolved config (:meth:`resolved_for`)."""
        if self.stability_score_thresh is None:
            raise ValueError("unresolved AmgConfig: call resolved_for(model.amg_thresholds)")
        return self.stability_score_thresh


#: The paper's filter thresholds (appendix B), for models that recommend none.
PAPER_THRESHOLDS = AmgThresholds(0.88, 0.95, "the paper's (Kirillov et al. 2023, appendix B)")
