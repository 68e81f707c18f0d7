"""The default model's GPU training script, run end to end on a tiny config (CPU)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_training_script_times_then_trains(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "ANYSEG": f"{sys.executable} -m anyseg",
        "PYTHON": sys.executable,
        "CONFIG": str(REPO / "configs" / "test.toml"),
        "OUT_DIR": str(tmp_path / "run"),
        "DATA_DIR": str(tmp_path / "data"),
        "TRAIN_IMAGES": "6",
        "HELDOUT_IMAGES": "3",
        "CAL_STEPS": "3",
        "MIN_STEPS": "2",
    }
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "train_default_model_gpu.sh"), "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    # The data was made with the recorded seeds and counts, the timing ran, then the training.
    assert (tmp_path / "data" / "synth_train_gpu" / "dataset.json").is_file()
    assert len(list((tmp_path / "data" / "synth_heldout" / "images").iterdir())) == 3
    assert "calibration:" in done.stdout and "training 2 steps" in done.stdout
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    assert int(rows[-1]["step"]) == 2
    assert (tmp_path / "run" / "model.safetensors").is_file()
    resolved = (tmp_path / "run" / "config.resolved.toml").read_text()
    assert str(tmp_path / "data" / "synth_train_gpu") in resolved
