"""Aggregation of per-mask scores: mIoU per score, the interactive curve, and group breakdowns."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from anyseg.evaluation import metrics
from anyseg.evaluation.report import (
    SCORE_NAMES,
    Calibration,
    CalibrationSummary,
    GroupSummary,
    MaskResult,
    ScoreSummary,
)

#: COCO's object-size buckets by mask area in pixels: small < 32², medium < 96², large otherwise.
SIZE_BUCKETS: tuple[tuple[str, float], ...] = (
    ("small", 32.0**2),
    ("medium", 96.0**2),
    ("large", float("inf")),
)


def score_columns(results: Sequence[MaskResult]) -> dict[str, list[float]]:
    """Per-mask IoUs of every score present: SCORE_NAMES plus ``interactive`` (last click)."""
    columns: dict[str, list[float]] = {name: [] for name in (*SCORE_NAMES, "interactive")}
    for r in results:
        for name in SCORE_NAMES:
            value = getattr(r, name)
            if value is not None:
                columns[name].append(value)
        if r.interactive:
            columns["interactive"].append(r.interactive[-1])
    return {name: values for name, values in columns.items() if values}


def summarize_scores(results: Sequence[MaskResult]) -> dict[str, ScoreSummary]:
    """mIoU, count and 10-bin IoU histogram of each score present in ``results``."""
    return {
        name: ScoreSummary(
            metrics.mean_or_nan(values), len(values), tuple(metrics.histogram(values))
        )
        for name, values in score_columns(results).items()
    }


def interactive_curve(results: Sequence[MaskResult]) -> tuple[float, ...] | None:
    """mIoU after 1, 2, ..., N clicks over the masks with an interactive score; None if none."""
    rows = [r.interactive for r in results if r.interactive]
    if not rows:
        return None
    arr = np.asarray(rows, dtype=np.float64)  # (masks, clicks)
    return tuple(float(v) for v in arr.mean(axis=0))


def size_bucket(area: float) -> str:
    """COCO size bucket of a mask area in pixels (see :data:`SIZE_BUCKETS`)."""
    return next(name for name, limit in SIZE_BUCKETS if area < limit)


def breakdown(results: Sequence[MaskResult]) -> dict[str, dict[str, GroupSummary]]:
    """mIoU per score within groups: ``"size"`` (COCO buckets, always) and ``"level"``
    (whole/part/subpart, when the dataset records levels). Empty groups are left out."""
    out = {"size": _grouped(results, lambda r: size_bucket(r.area), [n for n, _ in SIZE_BUCKETS])}
    if any(r.level is not None for r in results):
        out["level"] = _grouped(
            results, lambda r: r.level or "unknown", ["whole", "part", "subpart", "unknown"]
        )
    return out


def _grouped(
    results: Sequence[MaskResult], key: Callable[[MaskResult], str], order: Sequence[str]
) -> dict[str, GroupSummary]:
    groups: dict[str, list[MaskResult]] = {name: [] for name in order}
    for r in results:
        groups.setdefault(key(r), []).append(r)
    return {
        name: GroupSummary(
            len(members),
            {k: metrics.mean_or_nan(v) for k, v in score_columns(members).items()},
        )
        for name, members in groups.items()
        if members
    }


def summarize_calibration(
    results: Sequence[MaskResult], extra: Sequence[tuple[str, float, float]] = ()
) -> Calibration | None:
    """Calibration of the IoU head over every scored prediction (those of ``results`` and the
    ``extra`` (protocol, predicted, actual) triples, e.g. the text protocol's), and per
    protocol; None when no protocol predicted an IoU."""
    pairs = [p for r in results for p in r.iou_predictions] + list(extra)
    if not pairs:
        return None

    def summary(rows: list[tuple[str, float, float]]) -> CalibrationSummary:
        pred = [p for _, p, _ in rows]
        actual = [a for _, _, a in rows]
        mae, pearson = metrics.calibration_error(pred, actual)
        bins = tuple(metrics.reliability_bins(pred, actual))
        return CalibrationSummary(mae, pearson, len(rows), bins)

    protocols = list(dict.fromkeys(name for name, _, _ in pairs))
    whole = summary(pairs)
    return Calibration(
        mae=whole.mae,
        pearson=whole.pearson,
        count=whole.count,
        by_protocol={name: summary([p for p in pairs if p[0] == name]) for name in protocols},
        bins=whole.bins,
    )
