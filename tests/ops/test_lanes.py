"""Lanes: parts of one op chain run at once, one per thread, each with one intra-op thread; the
main thread's count and mode survive, errors surface after every lane is done."""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from anyseg.ops.lanes import concat_in_lanes, lanes_available, run_lanes, split_range
from anyseg.ops.threads import ComputeThread


@pytest.fixture
def three_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(
    ("total", "lanes", "multiple", "expected"),
    [
        (10, 2, 1, [(0, 5), (5, 10)]),
        (10, 3, 1, [(0, 3), (3, 6), (6, 10)]),
        (64, 2, 8, [(0, 32), (32, 64)]),
        (70, 2, 8, [(0, 32), (32, 70)]),  # 9 units of 8: the last part takes the remainder
        (2, 4, 1, [(0, 1), (1, 2)]),  # empty parts dropped
        (5, 1, 1, [(0, 5)]),
        (0, 2, 1, []),
    ],
)
def test_split_range(
    total: int, lanes: int, multiple: int, expected: list[tuple[int, int]]
) -> None:
    assert split_range(total, lanes, multiple) == expected


def test_split_range_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="lanes >= 1"):
        split_range(10, 0)


def test_lanes_are_the_main_threads_count_for_cpu_work_with_gradients_off(
    three_threads: None,
) -> None:
    cpu = torch.device("cpu")
    assert lanes_available(cpu) == 1  # gradients on
    with torch.no_grad():
        assert lanes_available(cpu) == 3
        assert lanes_available(torch.device("meta")) == 1  # only CPU work is split
    seen: list[int] = []
    with torch.inference_mode():
        t = threading.Thread(target=lambda: seen.append(lanes_available(cpu)))
        t.start()
        t.join()
        assert lanes_available(cpu) == 3
    assert seen == [1]  # not on a thread that does not own its count
    pool = ComputeThread("test-lanes")
    try:

        def on_compute_thread() -> int:
            with torch.inference_mode():
                return lanes_available(cpu)

        assert pool.submit(on_compute_thread).result(timeout=10) == 3  # its creator's count
    finally:
        pool.shutdown(wait=True)


def test_parts_run_at_once_in_order_on_single_threads(three_threads: None) -> None:
    barrier = threading.Barrier(3, timeout=10)  # only passes if all three lanes run at once
    seen: dict[int, tuple[str, int, bool]] = {}

    def lane(start: int, stop: int) -> tuple[int, int]:
        barrier.wait()
        seen[start] = (
            threading.current_thread().name,
            _openmp_threads(),
            torch.is_inference_mode_enabled(),
        )
        return start, stop

    with torch.inference_mode():
        result = run_lanes(lane, [(0, 2), (2, 5), (5, 9)])
    assert result == [(0, 2), (2, 5), (5, 9)]
    assert seen[0][0] == threading.main_thread().name
    assert {seen[2][0], seen[5][0]} != {threading.main_thread().name}
    assert all(threads == 1 for _, threads, _ in seen.values())
    assert all(inference for *_, inference in seen.values())
    assert torch.get_num_threads() == 3  # restored on the main thread


def test_a_compute_thread_runs_lanes_and_keeps_the_main_threads_count(
    three_threads: None,
) -> None:
    """A service's compute thread (ops.threads.ComputeThread) splits as the main thread does;
    its count comes back after, and the main thread's never changes."""
    barrier = threading.Barrier(3, timeout=10)
    lane_counts: list[int] = []

    def lane(start: int, stop: int) -> tuple[int, int]:
        barrier.wait()
        lane_counts.append(_openmp_threads())
        return start, stop

    def on_compute_thread() -> tuple[list[tuple[int, int]], int, str]:
        with torch.inference_mode():
            parts = run_lanes(lane, [(0, 3), (3, 6), (6, 9)])
        return parts, torch.get_num_threads(), threading.current_thread().name

    pool = ComputeThread("test-lanes")
    try:
        parts, after, name = pool.submit(on_compute_thread).result(timeout=30)
    finally:
        pool.shutdown(wait=True)
    assert parts == [(0, 3), (3, 6), (6, 9)] and after == 3 and name.startswith("test-lanes")
    assert lane_counts == [1, 1, 1]  # every lane, the compute thread's own included, on one
    assert torch.get_num_threads() == 3


def _openmp_threads() -> int:
    """The calling thread's OpenMP team size for its next parallel region (torch's own count
    is shared by all threads, see anyseg.ops.lanes): ``omp_get_max_threads`` of the libgomp
    that torch loaded."""
    paths = [line.split()[-1] for line in Path("/proc/self/maps").read_text().splitlines()]
    gomp = next((path for path in paths if "libgomp" in path), None)
    if gomp is None:
        pytest.skip("torch's libgomp is not mapped (not Linux, or another OpenMP)")
    return int(ctypes.CDLL(gomp).omp_get_max_threads())


def test_a_failing_lane_raises_after_all_lanes_finish(three_threads: None) -> None:
    finished: list[int] = []

    def lane(start: int, stop: int) -> int:
        if start == 2:
            raise ValueError("lane 2 fails")
        time.sleep(0.05)
        finished.append(start)
        return start

    with torch.no_grad(), pytest.raises(ValueError, match="lane 2 fails"):
        run_lanes(lane, [(0, 2), (2, 4), (4, 6)])
    assert sorted(finished) == [0, 4]
    assert torch.get_num_threads() == 3


def test_more_parts_than_lanes_is_refused(three_threads: None) -> None:
    with pytest.raises(RuntimeError, match="4 lanes asked for where 1 are available"):
        run_lanes(lambda a, b: a, [(0, 1), (1, 2), (2, 3), (3, 4)])  # gradients on: 1 lane
    assert run_lanes(lambda a, b: (a, b), [(0, 5)]) == [(0, 5)]  # one part: a plain call


@pytest.mark.parametrize("dim", [0, 1])
def test_concat_in_lanes_equals_cat(three_threads: None, dim: int) -> None:
    x = torch.randn(7, 9)

    def part(start: int, stop: int) -> torch.Tensor:
        return (x.narrow(dim, start, stop - start) * 2) > 0.5

    total = x.shape[dim]
    with torch.no_grad():
        got = concat_in_lanes(part, total, 3, like=x, shape=x.shape, dim=dim, dtype=torch.bool)
        single = concat_in_lanes(part, total, 1, like=x, shape=x.shape, dim=dim)
    assert got.dtype == torch.bool
    assert torch.equal(got, (x * 2) > 0.5)
    assert torch.equal(single, got)


def _lanes_in_child(queue: Any) -> None:
    with torch.no_grad():
        queue.put(
            run_lanes(lambda a, b: b - a, split_range(10, lanes_available(torch.device("cpu"))))
        )


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork start method only")
def test_a_forked_child_gets_its_own_lanes(three_threads: None) -> None:
    """A child forked after the parent used its lanes (it has none of the parent's worker
    threads, and lanes.py starts it a fresh pool) splits work too."""
    with torch.no_grad():
        assert run_lanes(lambda a, b: b - a, split_range(10, 3)) == [3, 3, 4]
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_lanes_in_child, args=(queue,))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert queue.get(timeout=5) == [3, 3, 4]
