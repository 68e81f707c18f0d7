"""EvalConfig validation and dict round trip."""

from __future__ import annotations

import pytest

from anyseg.automatic import AmgConfig
from anyseg.errors import InvalidInputError
from anyseg.evaluation import EvalConfig


def test_round_trip_and_defaults() -> None:
    config = EvalConfig(protocols=("box", "amg"), max_images=3, recall_thresholds=(0.5, 0.9))
    data = config.to_dict()
    assert data["protocols"] == ["box", "amg"] and data["recall_thresholds"] == [0.5, 0.9]
    assert EvalConfig.from_dict(data) == config
    default = EvalConfig()
    assert default.protocols == ("point", "box", "interactive")
    assert default.num_points == 9 and default.first_point == "center"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"protocols": ()}, "non-empty subset"),
        ({"protocols": ("point", "points")}, "non-empty subset"),
        ({"protocols": ("box", "box")}, "listed twice"),
        ({"max_images": 0}, "max_images"),
        ({"max_masks_per_image": True}, "max_masks_per_image"),
        ({"min_mask_area": 0}, "min_mask_area"),
        ({"num_points": 0}, "num_points"),
        ({"first_point": "middle"}, "first_point"),
        ({"recall_thresholds": (0.5, 2.0)}, "recall_thresholds"),
    ],
)
def test_invalid_values_are_rejected(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        EvalConfig(**kwargs)  # type: ignore[arg-type]


def test_unknown_keys_are_rejected() -> None:
    with pytest.raises(
        InvalidInputError, match=r"unknown key\(s\) num_point \(did you mean num_points"
    ):
        EvalConfig.from_dict({"num_point": 3})
    with pytest.raises(InvalidInputError, match=r"amg\.points_per_sid"):
        EvalConfig.from_dict({"amg": {"points_per_sid": 3}})


def test_the_generator_settings_are_an_amg_config() -> None:
    config = EvalConfig.from_dict({"amg": {"points_per_side": 8, "pred_iou_thresh": 0.5}})
    assert config.amg == AmgConfig(points_per_side=8, pred_iou_thresh=0.5)
    assert EvalConfig.from_dict(config.to_dict()) == config
    with pytest.raises(InvalidInputError, match="pred_iou_thresh must be a number"):
        EvalConfig.from_dict({"amg": {"pred_iou_thresh": 1.5}})


def test_reports_of_earlier_versions_still_load() -> None:
    legacy = {"protocols": ["amg"], "amg_points_per_side": 16, "amg_pred_iou_thresh": 0.3}
    config = EvalConfig.from_dict(legacy)
    assert config.amg == AmgConfig(points_per_side=16, pred_iou_thresh=0.3)
