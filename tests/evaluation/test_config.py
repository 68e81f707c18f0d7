"""EvalConfig validation and dict round trip."""

from __future__ import annotations

import pytest

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
        ({"amg_pred_iou_thresh": 1.5}, "amg_pred_iou_thresh"),
        ({"recall_thresholds": (0.5, 2.0)}, "recall_thresholds"),
    ],
)
def test_invalid_values_are_rejected(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        EvalConfig(**kwargs)  # type: ignore[arg-type]


def test_unknown_keys_are_rejected() -> None:
    with pytest.raises(InvalidInputError, match="unknown evaluation option"):
        EvalConfig.from_dict({"num_point": 3})
