"""AmgConfig validation, config-file and command-line round trips."""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import pytest

from anyseg.automatic.config import AmgConfig
from anyseg.errors import InvalidInputError
from anyseg.settings import add_arguments, from_arguments


def test_defaults_are_the_originals() -> None:
    cfg = AmgConfig()
    assert (cfg.points_per_side, cfg.points_per_batch, cfg.pred_iou_thresh) == (32, 64, 0.88)
    assert (cfg.stability_score_thresh, cfg.stability_score_offset) == (0.95, 1.0)
    assert (cfg.box_nms_thresh, cfg.crop_n_layers, cfg.crop_nms_thresh) == (0.7, 0, 0.7)
    assert cfg.crop_overlap_ratio == 512 / 1500
    assert (cfg.crop_n_points_downscale_factor, cfg.min_mask_region_area) == (1, 0)
    assert (cfg.output_mode, cfg.mode, cfg.point_grids) == ("binary_mask", "exact", None)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"points_per_side": None}, "exactly one of points_per_side and point_grids"),
        ({"point_grids": [np.zeros((4, 2))]}, "exactly one"),
        ({"points_per_side": 0}, "points_per_side must be >= 1"),
        ({"points_per_batch": 0}, "points_per_batch"),
        ({"box_nms_thresh": 1.5}, "box_nms_thresh must be in [0, 1]"),
        ({"crop_n_layers": -1}, "crop_n_layers"),
        ({"output_mode": "png"}, "output_mode must be one of"),
        ({"mode": "turbo"}, "mode must be one of"),
        ({"pred_iou_thresh": float("nan")}, "pred_iou_thresh must be a number in [0, 1]"),
        ({"pred_iou_thresh": -0.1}, "pred_iou_thresh must be a number in [0, 1]"),
        ({"stability_score_thresh": 1.5}, "stability_score_thresh must be a number in [0, 1]"),
        ({"stability_score_offset": float("inf")}, "stability_score_offset must be a finite"),
        ({"box_nms_thresh": float("nan")}, "box_nms_thresh must be in [0, 1]"),
        ({"points_per_side": None, "point_grids": [np.ones((3, 3))]}, "point_grids[0]"),
        (
            {"points_per_side": None, "point_grids": [np.ones((3, 2))], "crop_n_layers": 1},
            "one grid per crop layer",
        ),
    ],
)
def test_invalid_settings_are_named(kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        AmgConfig(**kwargs)


def test_explicit_grids_are_stored_as_float_arrays() -> None:
    cfg = AmgConfig(points_per_side=None, point_grids=[[[0.5, 0.5], [0.25, 0.75]]])
    assert cfg.point_grids is not None
    assert cfg.point_grids[0].dtype == np.float64 and cfg.point_grids[0].shape == (2, 2)


def test_from_dict_rejects_unknown_keys() -> None:
    assert AmgConfig.from_dict({"points_per_side": 8}).points_per_side == 8
    with pytest.raises(InvalidInputError, match="points_per_sid"):
        AmgConfig.from_dict({"points_per_sid": 8})


def test_command_line_options_come_from_the_dataclass() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser, AmgConfig)
    assert from_arguments(AmgConfig, parser.parse_args([])) == AmgConfig()
    args = parser.parse_args(
        ["--points-per-side", "8", "--pred-iou-thresh", "0.5", "--crop-n-layers", "1"]
    )
    cfg = from_arguments(AmgConfig, args)
    assert dataclasses.replace(cfg) == AmgConfig(
        points_per_side=8, pred_iou_thresh=0.5, crop_n_layers=1
    )
    flags = {opt for a in parser._actions for opt in a.option_strings}
    # Not command-line options: arrays, the Python-only output format, and the mode (the
    # commands' shared --mode flag sets it).
    assert {"--output-mode", "--point-grids", "--mode"}.isdisjoint(flags)
    assert "--stability-score-offset" in flags and "--crop-overlap-ratio" in flags
    with pytest.raises(InvalidInputError, match="pred_iou_thresh must be a number"):
        from_arguments(AmgConfig, parser.parse_args(["--pred-iou-thresh", "nan"]))
