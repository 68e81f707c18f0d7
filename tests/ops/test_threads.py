"""one_thread runs its ops on one thread where the thread owns its count (the main thread, a
compute executor's) and restores the count; elsewhere it leaves the count alone. Also the facts
about torch's per-thread counts that this rests on."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from anyseg.ops.threads import ComputeThread, one_thread, owns_thread_count


@pytest.fixture
def two_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_main_thread_runs_on_one_thread_and_restores(two_threads: None) -> None:
    with one_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with one_thread(active=False):
        assert torch.get_num_threads() == 2
    with pytest.raises(RuntimeError), one_thread():
        raise RuntimeError("restored on the way out")
    assert torch.get_num_threads() == 2


def test_other_threads_leave_the_count_alone(two_threads: None) -> None:
    inside, release = threading.Event(), threading.Event()
    seen: dict[str, int] = {}

    def worker() -> None:
        with one_thread():
            seen["worker"] = torch.get_num_threads()
            inside.set()
            release.wait(10)

    t = threading.Thread(target=worker)
    t.start()
    assert inside.wait(10)
    seen["main"] = torch.get_num_threads()
    release.set()
    t.join()
    assert seen == {"worker": 2, "main": 2}
    assert torch.get_num_threads() == 2


def test_torch_counts_are_per_thread_but_fresh_threads_take_the_last_one_set(
    two_threads: None,
) -> None:
    """What owns_thread_count's docstring says of torch's OpenMP build: a thread that has run
    torch keeps its count when another thread sets one, and a thread that has not takes the
    count set last, by whichever thread."""
    seen: dict[str, int] = {}

    def setter() -> None:
        torch.set_num_threads(1)
        seen["setter"] = torch.get_num_threads()

    def fresh() -> None:
        seen["fresh"] = torch.get_num_threads()

    for target in (setter, fresh):
        t = threading.Thread(target=target)
        t.start()
        t.join()
    seen["main"] = torch.get_num_threads()
    assert seen == {"setter": 1, "fresh": 1, "main": 2}


def test_a_compute_thread_owns_its_count(two_threads: None) -> None:
    """Its thread starts with its creator's count, one_thread works there as on the main thread,
    and neither changes the other's count."""
    assert owns_thread_count()
    inside, release = threading.Event(), threading.Event()
    pool = ComputeThread("test-compute")

    def work() -> tuple[bool, int, int, str]:
        before = torch.get_num_threads()
        with one_thread():
            during = torch.get_num_threads()
            inside.set()
            assert release.wait(10)
        assert torch.get_num_threads() == before
        return owns_thread_count(), before, during, threading.current_thread().name

    try:
        future = pool.submit(work)
        assert inside.wait(10)
        main_meanwhile = torch.get_num_threads()
        release.set()
        owned, before, during, name = future.result(timeout=10)
    finally:
        pool.shutdown(wait=True)
    assert (owned, before, during, main_meanwhile) == (True, 2, 1, 2)
    assert name.startswith("test-compute")
    assert torch.get_num_threads() == 2


def test_a_compute_thread_runs_calls_in_order_and_hands_back_errors() -> None:
    compute = ComputeThread("test-order")
    try:
        seen: list[int] = []
        futures = [compute.submit(seen.append, i) for i in range(20)]
        failing = compute.submit(int, "not a number")
        assert [f.result(timeout=10) for f in futures] == [None] * 20
        assert seen == list(range(20))
        with pytest.raises(ValueError, match="not a number"):
            failing.result(timeout=10)
        assert compute.submit(lambda: threading.current_thread().name).result(10) == "test-order"
    finally:
        compute.shutdown(wait=True)
    with pytest.raises(RuntimeError, match="test-order is shut down"):
        compute.submit(int, "1")


def test_a_process_exits_while_its_compute_thread_is_busy(tmp_path: Any) -> None:
    """A daemon thread: a server stopped during a long job (pre-fill) exits without waiting."""
    import subprocess
    import sys
    import time

    script = (
        "import time\n"
        "from anyseg.ops.threads import ComputeThread\n"
        "ComputeThread('busy').submit(time.sleep, 60)\n"
        "time.sleep(0.2)\n"
        "print('main done', flush=True)\n"
    )
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=50)
    assert out.returncode == 0 and out.stdout == "main done\n", out.stderr
    assert time.monotonic() - t0 < 30
