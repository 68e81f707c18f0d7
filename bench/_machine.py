"""What the benchmarks ran on: CPU, its vector capability and bfloat16 support, fast mode's
probe, threads and the machine's load (other work shares these CPUs)."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch

from anyseg.precision import (
    FastPath,
    choose_fast_path,
    cpu_capability,
    mkldnn_bf16_supported,
    probe_speedups,
)

T = TypeVar("T")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def load_average() -> str:
    try:
        return "/".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def describe_machine(threads: int) -> list[str]:
    """Lines for a benchmark's header."""
    speeds = probe_speedups()
    ratios = ", ".join(f"{k} {v:.2f}x" for k, v in speeds.items())
    return [
        f"CPU: {cpu_name()}, {os.cpu_count()} logical CPUs, {threads} torch threads",
        f"CPU capability: {cpu_capability()}; probe GEMM speed vs float32: {ratios}",
        f"{choose_fast_path('cpu').describe()}",
        f"torch {torch.__version__}, OMP_WAIT_POLICY "
        f"{os.environ.get('OMP_WAIT_POLICY', 'default (spinning)')}, load average (1/5/15 min) "
        f"{load_average()} at start",
    ]


def other_fast_paths() -> list[FastPath]:
    """The paths fast mode did not choose here, forced, to show what they would cost; bfloat16
    only where oneDNN has bfloat16 kernels (elsewhere it is emulated, hundreds of times slower
    than float32: one vit_b encoder pass would take most of an hour)."""
    chosen = choose_fast_path("cpu").kind
    kinds = [k for k in ("bfloat16", "int8") if k != chosen]
    if not mkldnn_bf16_supported():
        kinds = [k for k in kinds if k != "bfloat16"]
    return [FastPath(k, "forced") for k in kinds]


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def median_times(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds per call of each function; calls interleaved so load hits all alike."""
    for fn in fns.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(v) for name, v in times.items()}
