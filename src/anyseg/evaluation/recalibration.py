"""Recalibrating the IoU head: an affine correction fitted to the evaluation protocols' own
predictions on a calibration set, folded into the head's last layer.

A head trained on random clicks and noisy boxes rates the centre clicks and tight boxes users
(and the evaluation protocols) give systematically low; a fine-tune of the head on the training
distribution does not move that. Here the correction is fitted where it is measured: the
evaluation's predictions of the IoU (:attr:`MaskResult.iou_predictions`, the actual IoU being
that of the mask each prediction covers) on images that are *not* the held-out set. Two maps, as
the head has two kinds of outputs: the multimask outputs (the point protocol's 3 candidates and
the interactive protocol's first click) and the single output (point_single, box, later clicks).
Each is the least-absolute-deviation line (the error reported is the mean absolute one), with a
positive slope, so the ranking of masks, and therefore every threshold, is kept: the automatic
generator's recommended threshold moves through the same map (:func:`recalibrate_model`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch

from anyseg.config import AmgThresholds
from anyseg.errors import InvalidInputError
from anyseg.evaluation import metrics
from anyseg.evaluation.report import MaskResult

MULTIMASK = "multimask"
SINGLE = "single"


@dataclass(frozen=True)
class AffineMap:
    """``corrected = scale * predicted + shift``, fitted on ``count`` predictions."""

    scale: float = 1.0
    shift: float = 0.0
    count: int = 0

    def __call__(self, value: float) -> float:
        return self.scale * value + self.shift


@dataclass(frozen=True)
class IouRecalibration:
    """The two maps and the calibration error on the fitting data before and after."""

    multimask: AffineMap
    single: AffineMap
    mae_before: float
    mae_after: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def output_kind(
    results: Sequence[MaskResult], first_point_multimask: bool = True
) -> list[tuple[str, float, float]]:
    """Every (kind, predicted, actual) of ``results``: "multimask" for the point protocol's
    candidates and (with ``first_point_multimask``) the interactive protocol's first click,
    "single" for the rest. Text predictions are left out (not every model has the path)."""
    rows: list[tuple[str, float, float]] = []
    for r in results:
        first_interactive = True
        for protocol, pred, actual in r.iou_predictions:
            if protocol == "point":
                kind = MULTIMASK
            elif protocol == "interactive" and first_interactive:
                first_interactive = False
                kind = MULTIMASK if first_point_multimask else SINGLE
            elif protocol in ("point_single", "box", "interactive"):
                kind = SINGLE
            else:
                continue
            if math.isfinite(pred) and math.isfinite(actual):
                rows.append((kind, pred, actual))
    return rows


def lad_coefficients(x: np.ndarray, y: np.ndarray, iterations: int = 50) -> np.ndarray:
    """Coefficients ``c`` of least absolute deviation, ``y ~ x @ c`` for (N, K) ``x`` (include a
    column of ones for an intercept), by iteratively reweighted least squares."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64).reshape(-1)
    w = np.ones_like(y)
    coef = np.zeros(x.shape[1])
    for _ in range(iterations):
        sw = np.sqrt(w)
        coef = np.linalg.lstsq(x * sw[:, None], y * sw, rcond=None)[0]
        w = 1.0 / np.maximum(np.abs(y - x @ coef), 1e-4)
    return coef


def fit_lad_line(predicted: np.ndarray, actual: np.ndarray, iterations: int = 50) -> AffineMap:
    """The line ``actual ~ scale * predicted + shift`` of least absolute deviation
    (:func:`lad_coefficients`), its slope kept positive (at least 0.05) so that the order of
    predictions is kept. The identity for fewer than 2 distinct predictions."""
    p = np.asarray(predicted, np.float64).reshape(-1)
    a = np.asarray(actual, np.float64).reshape(-1)
    if p.size < 2 or np.ptp(p) == 0:
        return AffineMap(1.0, 0.0, int(p.size))
    coef = lad_coefficients(np.stack([p, np.ones_like(p)], axis=1), a, iterations)
    slope, shift = float(coef[0]), float(coef[1])
    if slope < 0.05:  # keep the order: the least slope, and the median residual as the shift
        slope = 0.05
        shift = float(np.median(a - slope * p))
    return AffineMap(slope, shift, int(p.size))


def fit_recalibration(
    results: Sequence[MaskResult], first_point_multimask: bool = True
) -> IouRecalibration:
    """Fit the two maps to the evaluation's predictions.

    Raises:
        InvalidInputError: the results hold no IoU predictions (run the point, box or
            interactive protocol).
    """
    rows = output_kind(results, first_point_multimask)
    if not rows:
        raise InvalidInputError(
            "no IoU predictions to fit: evaluate with the point, box or interactive protocol"
        )
    maps = {}
    for kind in (MULTIMASK, SINGLE):
        p = np.array([r[1] for r in rows if r[0] == kind])
        a = np.array([r[2] for r in rows if r[0] == kind])
        maps[kind] = fit_lad_line(p, a)
    pred = np.array([r[1] for r in rows])
    actual = np.array([r[2] for r in rows])
    corrected = np.array([maps[k](p) for k, p, _ in rows])
    return IouRecalibration(
        multimask=maps[MULTIMASK],
        single=maps[SINGLE],
        mae_before=metrics.calibration_error(pred, actual)[0],
        mae_after=metrics.calibration_error(corrected, actual)[0],
    )


def recalibrate_model(model: Any, fit: IouRecalibration) -> None:
    """Fold ``fit`` into ``model``'s IoU head (output 0 the single map, the others the
    multimask one) and move its recommended automatic-generation IoU threshold, if it has one,
    through the multimask map (the generator keeps the same masks)."""
    decoder = model.mask_decoder
    n = decoder.iou_prediction_head.layers[-1].out_features
    scale = torch.tensor([fit.single.scale] + [fit.multimask.scale] * (n - 1))
    shift = torch.tensor([fit.single.shift] + [fit.multimask.shift] * (n - 1))
    decoder.rescale_iou_head(scale, shift)
    thresholds: AmgThresholds | None = getattr(model, "amg_thresholds", None)
    if thresholds is not None:
        moved = fit.multimask(thresholds.pred_iou_thresh)
        model.amg_thresholds = replace(
            thresholds,
            pred_iou_thresh=round(min(max(moved, 0.0), 1.0), 4),
            source=f"{thresholds.source}; moved by the IoU-head recalibration".lstrip("; "),
        )
