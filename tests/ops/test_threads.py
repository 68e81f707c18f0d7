"""one_thread runs its ops on one thread where the thread owns its count (the main thread, a
compute executor's) and restores the count; elsewhere it leaves the count alone. Also the facts
about torch's per-thread counts that this rests on."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import torch

from anyseg.ops.threads import compute_executor, one_thread, owns_thread_count


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


def test_a_compute_executor_thread_owns_its_count(two_threads: None) -> None:
    """Its thread starts with its creator's count, one_thread works there as on the main thread,
    and neither changes the other's count."""
    assert owns_thread_count()
    inside, release = threading.Event(), threading.Event()
    pool = compute_executor("test-compute")

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
