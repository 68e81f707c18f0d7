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
    # The machine header: which CPU, its vector capability and fast mode's choice.
    assert re.search(r"^CPU capability: \S+, oneDNN bfloat16 (not )?supported", out, re.M), out
    assert re.search(r"^fast mode: ", out, re.M) and "load average at end" in out


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


def test_forced_bfloat16_is_timed_only_where_onednn_has_bfloat16_kernels(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Emulated bfloat16 is hundreds of times slower than float32: bench_model must not spend
    most of an hour timing it on an AVX2-only CPU."""
    sys.path.insert(0, str(BENCH))
    try:
        import _machine
    finally:
        sys.path.remove(str(BENCH))
    from anyseg.precision import FastPath

    for chosen in ("float32", "int8", "bfloat16"):
        monkeypatch.setattr(_machine, "choose_fast_path", lambda _d, c=chosen: FastPath(c, "t"))
        monkeypatch.setattr(_machine, "mkldnn_bf16_supported", lambda: False)
        kinds = [p.kind for p in _machine.other_fast_paths()]
        assert "bfloat16" not in kinds and chosen not in kinds
        assert kinds == ([] if chosen == "int8" else ["int8"])
        monkeypatch.setattr(_machine, "mkldnn_bf16_supported", lambda: True)
        kinds = [p.kind for p in _machine.other_fast_paths()]
        assert kinds == [k for k in ("bfloat16", "int8") if k != chosen]
        assert all(p.reason == "forced" for p in _machine.other_fast_paths())


def test_decode_rows_time_warm_turns() -> None:
    """Each implementation's turn is an untimed switch-over call, then ``block`` timed calls;
    with block 1 single calls alternate."""
    sys.path.insert(0, str(BENCH))
    try:
        import bench_model
    finally:
        sys.path.remove(str(BENCH))
    calls: list[str] = []
    clock = iter(range(10_000))

    def fn(p: object) -> None:
        calls.append(str(p))

    predictors = {"a": "a", "b": "b"}
    original = bench_model.time.perf_counter
    bench_model.time.perf_counter = lambda: float(next(clock))  # every timed call: 1 s
    try:
        rows = bench_model.bench_predictors(predictors, {"warm": (fn, 6, 3), "cold": (fn, 2, 1)})
    finally:
        bench_model.time.perf_counter = original
    warm, cold = calls[: 2 + 2 * 2 * 4], calls[2 + 2 * 2 * 4 :]
    assert warm == ["a", "b"] + (["a"] * 4 + ["b"] * 4) * 2  # warm-up, then turns of 1 + 3
    assert cold == ["a", "b"] + ["a", "b"] * 2
    assert rows == {"a": {"warm": 1.0, "cold": 1.0}, "b": {"warm": 1.0, "cold": 1.0}}
