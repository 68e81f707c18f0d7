"""Aggregation of per-mask scores into mIoU, curves and size/level breakdowns."""

from __future__ import annotations

import math

import pytest

from anyseg.evaluation import MaskResult, breakdown, interactive_curve, summarize_scores
from anyseg.evaluation.summary import size_bucket


def _row(area: int, point: float, box: float | None, level: str | None = None) -> MaskResult:
    return MaskResult(
        image_id=1,
        annotation_id=area,
        area=area,
        point=point,
        point_oracle=max(point, 0.9),
        box=box,
        interactive=(point, 1.0),
        level=level,
    )


def test_summaries_and_breakdown() -> None:
    rows = [
        _row(100, 0.2, 0.4, "whole"),  # small
        _row(1023, 0.4, 0.6, "part"),  # small (< 32*32)
        _row(1024, 0.6, None, "part"),  # medium (32*32 <= area < 96*96)
        _row(9216, 0.8, 1.0, None),  # large
    ]
    scores = summarize_scores(rows)
    assert set(scores) == {"point", "point_oracle", "box", "interactive"}
    assert scores["point"].miou == pytest.approx(0.5)
    assert scores["point"].histogram == (0, 0, 1, 0, 1, 0, 1, 0, 1, 0)
    assert scores["box"].count == 3 and scores["box"].miou == pytest.approx(2.0 / 3.0)
    assert scores["interactive"].miou == 1.0  # the last click
    assert interactive_curve(rows) == pytest.approx((0.5, 1.0))

    groups = breakdown(rows)
    assert list(groups["size"]) == ["small", "medium", "large"]
    assert groups["size"]["small"].count == 2
    assert groups["size"]["small"].miou["point"] == pytest.approx(0.3)
    assert groups["size"]["medium"].miou == pytest.approx(
        {"point": 0.6, "point_oracle": 0.9, "interactive": 1.0}
    )
    assert list(groups["level"]) == ["whole", "part", "unknown"]
    assert groups["level"]["part"].count == 2
    assert groups["level"]["part"].miou["box"] == pytest.approx(0.6)


def test_breakdown_without_levels_and_empty() -> None:
    assert set(breakdown([_row(50, 0.5, 0.5)])) == {"size"}
    assert interactive_curve([]) is None
    assert summarize_scores([]) == {}
    assert [size_bucket(a) for a in (0, 1023, 1024, 9215, 9216)] == [
        "small",
        "small",
        "medium",
        "medium",
        "large",
    ]
    assert not math.isnan(breakdown([_row(50, 0.5, 0.5)])["size"]["small"].miou["point"])
