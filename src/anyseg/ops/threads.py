"""Running small tensor ops on the calling thread alone."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any, TypeVar

import torch

# Ops on at most this many prompt tokens (prompts x tokens per prompt) run on one thread.
FEW_TOKENS = 16

T = TypeVar("T")


_local = threading.local()


def owns_thread_count() -> bool:
    """Whether the calling thread may set its intra-op thread count for a while and restore it:
    the main thread, and a :class:`ComputeThread`.

    What torch 2.13's OpenMP build does with a count (``tests/ops/test_threads.py`` checks it):
    once a thread has run torch ops its count is its own, so setting it leaves other threads'
    counts alone; but every ``torch.set_num_threads`` also sets the count that a thread takes
    when it first runs torch, whichever thread set it last. A count set briefly from a
    short-lived thread (a server's request thread) can therefore stick to the threads born in
    that moment. Threads that own their count are few, long-lived and run the model's work.
    """
    return threading.current_thread() is threading.main_thread() or getattr(_local, "owner", False)


class ComputeThread:
    """One long-lived daemon thread that runs submitted calls in order (a service's model work).

    It starts with the creating thread's intra-op count and owns it (:func:`owns_thread_count`),
    so the decode's :func:`one_thread` and lanes (:mod:`anyseg.ops.lanes`) work there as on the
    main thread. A daemon, as the request threads that wait on it are: a server stopped in the
    middle of a long job (pre-fill, an embedding) exits without finishing it.
    """

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = (
            queue.SimpleQueue()
        )
        self._closed = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._run, args=(torch.get_num_threads(),), name=name, daemon=True
        )
        self._thread.start()

    def submit(self, fn: Callable[..., T], /, *args: Any) -> Future[T]:
        """Queue ``fn(*args)``; its result (or exception) comes back through the future."""
        future: Future[T] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self._thread.name} is shut down")
            self._jobs.put((future, lambda: fn(*args)))
        return future

    def shutdown(self, wait: bool = True) -> None:
        """Refuse new calls; the queued ones still run (``wait``: until they have)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._jobs.put(None)
        if wait and threading.current_thread() is not self._thread:
            self._thread.join()

    def _run(self, threads: int) -> None:
        torch.set_num_threads(threads)  # this thread's own count from now on
        _local.owner = True
        while (job := self._jobs.get()) is not None:
            future, call = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = call()
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)
            del future, call, job  # drop the call's arguments (images, embeddings) at once


@contextmanager
def one_thread(active: bool = True) -> Iterator[None]:
    """Run the ops inside without intra-op worker threads (when ``active``).

    With OpenMP's passive wait policy (anyseg's default, see ``anyseg/__init__.py``) each
    parallel region wakes sleeping worker threads, which takes longer than a layer norm or a
    product of a few prompt tokens; decoding one prompt is dozens of such ops.

    Only a thread that owns its count (:func:`owns_thread_count`: the main thread, a
    :class:`ComputeThread`) changes it, restored on exit; elsewhere, e.g. in a server's
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
