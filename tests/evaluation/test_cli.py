"""``anyseg eval`` end to end with a saved test checkpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from anyseg.automatic import AmgConfig
from anyseg.cli.main import main


def test_eval_cli_writes_report_and_plots(
    tiny_dataset: Any, test_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = main(
        [
            "eval",
            str(tiny_dataset.root),
            "--checkpoint",
            str(test_checkpoint),
            "-o",
            str(out),
            "--points",
            "3",
            "--max-images",
            "1",
            "--max-masks-per-image",
            "2",
            "--protocols",
            "point,interactive",
            "--device",
            "cpu",
            "--quiet",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "1 point, best of 3 (oracle)" in printed and "interactive mIoU by clicks" in printed
    assert sorted(p.name for p in out.iterdir()) == [
        "calibration.png",
        "interactive_curve.png",
        "iou_hist.png",
        "per_mask.jsonl",
        "report.json",
        "samples.png",
    ]
    report = json.loads((out / "report.json").read_text())
    assert report["checkpoint"]["path"] == str(test_checkpoint.resolve())
    assert len(report["checkpoint"]["sha256"]) == 64
    assert report["dataset"]["num_masks"] == 2 and report["dataset"]["num_images"] == 1
    assert report["dataset"]["num_images_total"] == 2
    assert report["config"]["protocols"] == ["point", "interactive"]
    assert report["config"]["max_masks_per_image"] == 2
    assert len(report["interactive_curve"]) == 3
    assert "box" not in report["scores"]

    # The report's config reruns the same evaluation.
    out2 = tmp_path / "out2"
    code = main(
        [
            "eval",
            str(tiny_dataset.root),
            "--checkpoint",
            str(test_checkpoint),
            "-o",
            str(out2),
            "--config",
            str(out / "report.json"),
            "--device",
            "cpu",
            "--quiet",
        ]
    )
    assert code == 0
    again = json.loads((out2 / "report.json").read_text())
    assert again["scores"] == report["scores"]
    assert again["interactive_curve"] == report["interactive_curve"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "either DATA_DIR"),
        (["--coco", "x.json"], "--coco needs --images"),
        (["DATA", "--images", "imgs"], "--images is only used with --coco"),
        (["DATA", "--protocols", "point,bogus"], "protocols must be"),
        (["DATA", "--points", "0"], "num_points must be"),
        (["DATA", "--amg-pred-iou-thresh", "1.5"], "(--amg-pred-iou-thresh 1.5)"),
        (["DATA", "--amg-stability-score-thresh", "-1"], "(--amg-stability-score-thresh -1)"),
    ],
)
def test_eval_cli_user_errors(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["eval", *argv, "-o", str(tmp_path / "o")])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("anyseg eval: error:") and message in err
    assert not (tmp_path / "o").exists()


def test_eval_cli_missing_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["eval", str(tmp_path / "nope"), "-o", str(tmp_path / "o")])
    assert code == 1
    assert "does not exist" in capsys.readouterr().err


def test_eval_cli_amg_thresholds_reach_the_config() -> None:
    from anyseg.cli.eval import build_config
    from anyseg.cli.main import build_parser

    thresholds = ["--amg-pred-iou-thresh", "0.3", "--amg-stability-score-thresh", "0.8"]
    args = build_parser().parse_args(["eval", "DATA", "-o", "o", *thresholds])
    config = build_config(args)
    assert config.amg.pred_iou_thresh == 0.3 and config.amg.stability_score_thresh == 0.8
    default = build_config(build_parser().parse_args(["eval", "DATA", "-o", "o"]))
    assert default.amg == AmgConfig()
