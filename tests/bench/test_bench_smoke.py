"""The benchmarks run end to end on the tiny preset (their --quick paths), so that a change to
the library or to a benchmark's instrumentation cannot leave `bench/` broken until the next
full measurement. Timings are not checked; the printed tables and fidelity lines are."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def run_bench(*args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "ANYSEG_REFERENCE"}
    done = subprocess.run(
        [sys.executable, str(BENCH / args[0]), *args[1:]],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
def test_bench_amg_quick_times_both_modes_and_compares_them() -> None:
    out = run_bench("bench_amg.py", "--quick", "--no-reference")
    assert re.search(r"\| anyseg exact \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d.]+x \| \d+ \| ", out)
    assert re.search(r"\| anyseg fast \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d.]+x \| \d+ \| ", out)
    fidelity = re.search(
        r"no filters \((\d+) vs (\d+) records\): mean best-match mask IoU ([\d.]+)", out
    )
    assert fidelity, out
    assert int(fidelity[1]) == int(fidelity[2]) == 192  # 8x8 points, 3 masks each, no filters
    assert float(fidelity[3]) > 0.9


@pytest.mark.slow
def test_bench_model_tiny_prints_every_stage() -> None:
    out = run_bench(
        "bench_model.py",
        "--preset",
        "test",
        "--repeats",
        "1",
        "--decode-repeats",
        "1",
        "--no-profile",
        "--chosen-path-only",
    )
    for stage in (
        "encoder 1024 px",
        "1 point, 3 masks",
        "box, 1 mask",
        "64 points, one predict_torch",
    ):
        assert re.search(rf"\| {re.escape(stage)} \| [\d.]+ ms \|", out), stage
    assert "peak memory, encoder 1024 px" in out
    assert re.search(
        r"two-way transformer and IoU head [\d.]+ ms; .*whole predict\(\) [\d.]+ ms", out
    )
    fidelity = re.search(r"vs exact, mask IoU over the fixture prompts: (mean ([\d.]+)|n/a)", out)
    assert fidelity, out
    if fidelity[2] is not None:  # ../shared/fixtures present: fast mode stays close to exact
        assert float(fidelity[2]) > 0.9
