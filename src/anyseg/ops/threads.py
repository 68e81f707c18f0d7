"""Running small tensor ops on the calling thread alone."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import torch

# Ops on at most this many prompt tokens (prompts x tokens per prompt) run on one thread.
FEW_TOKENS = 16


_local = threading.local()


def owns_thread_count() -> bool:
    """Whether the calling thread may set its intra-op thread count for a while and restore it:
    the main thread, and the threads of :func:`compute_executor`.

    What torch 2.13's OpenMP build does with a count (``tests/ops/test_threads.py`` checks it):
    once a thread has run torch ops its count is its own, so setting it leaves other threads'
    counts alone; but every ``torch.set_num_threads`` also sets the count that a thread takes
    when it first runs torch, whichever thread set it last. A count set briefly from a
    short-lived thread (a server's request thread) can therefore stick to the threads born in
    that moment. Threads that own their count are few, long-lived and run the model's work.
    """
    return threading.current_thread() is threading.main_thread() or getattr(_local, "owner", False)


def compute_executor(name: str) -> ThreadPoolExecutor:
    """A one-thread executor for a service's model work, started with the creating thread's
    count; its thread owns its count (:func:`owns_thread_count`), so the decode's
    :func:`one_thread` and lanes (:mod:`anyseg.ops.lanes`) work there as on the main thread."""
    return ThreadPoolExecutor(
        1, thread_name_prefix=name, initializer=_own_count, initargs=(torch.get_num_threads(),)
    )


def _own_count(threads: int) -> None:
    torch.set_num_threads(threads)  # this thread's own count from now on
    _local.owner = True


@contextmanager
def one_thread(active: bool = True) -> Iterator[None]:
    """Run the ops inside without intra-op worker threads (when ``active``).

    With OpenMP's passive wait policy (anyseg's default, see ``anyseg/__init__.py``) each
    parallel region wakes sleeping worker threads, which takes longer than a layer norm or a
    product of a few prompt tokens; decoding one prompt is dozens of such ops.

    Only a thread that owns its count (:func:`owns_thread_count`: the main thread, a
    :func:`compute_executor`'s) changes it, restored on exit; elsewhere, e.g. in a server's
    request threads, this does nothing.
    """
    threads = torch.get_num_threads()
    if not active or threads == 1 or not owns_thread_count():
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
