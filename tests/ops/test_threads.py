"""one_thread runs its ops on the main thread alone and restores the count; elsewhere it leaves
the count alone (a count set from another thread would also change the main thread's)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import torch

from anyseg.ops.threads import one_thread


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
