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
    # Unset thresholds resolve to the paper's for a model that recommends none (SAM's own).
    cfg = AmgConfig().resolved_for(None)
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


def test_one_default_reaches_every_command_and_the_api(
    monkeypatch: pytest.MonkeyPatch, test_model: object
) -> None:
    """Every consumer takes the generator's defaults from AmgConfig itself: change one default
    there (as a one-line edit of the field would) and auto, eval, serve's pre-fill and the
    Python API all follow."""
    from anyseg.automatic import SamAutomaticMaskGenerator
    from anyseg.cli import eval as eval_cli
    from anyseg.cli import serve as serve_cli
    from anyseg.cli.main import build_parser
    from anyseg.evaluation import EvalConfig
    from anyseg.server.config import PrefillConfig

    names = [f.name for f in dataclasses.fields(AmgConfig)]
    defaults = list(AmgConfig.__init__.__defaults__)  # type: ignore[misc]
    defaults[names.index("pred_iou_thresh")] = 0.42
    monkeypatch.setattr(AmgConfig.__init__, "__defaults__", tuple(defaults))
    assert AmgConfig().pred_iou_thresh == 0.42

    parser = build_parser()
    auto_args = parser.parse_args(["auto", "x.png", "-o", "out"])
    assert from_arguments(AmgConfig, auto_args).pred_iou_thresh == 0.42
    eval_args = parser.parse_args(["eval", "DATA", "-o", "out"])
    assert eval_cli.build_config(eval_args).amg.pred_iou_thresh == 0.42
    assert EvalConfig().amg.pred_iou_thresh == 0.42
    serve_args = parser.parse_args(["serve", "."])
    assert serve_cli.build_config(serve_args).prefill.amg.pred_iou_thresh == 0.42
    assert PrefillConfig().amg.pred_iou_thresh == 0.42
    assert SamAutomaticMaskGenerator(test_model).config.pred_iou_thresh == 0.42  # type: ignore[arg-type]
