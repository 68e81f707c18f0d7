"""Running small tensor ops on the calling thread alone."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

# Ops on at most this many prompt tokens (prompts x tokens per prompt) run on one thread.
FEW_TOKENS = 16


@contextmanager
def one_thread(active: bool = True) -> Iterator[None]:
    """Run the ops inside without intra-op worker threads (when ``active``).

    With OpenMP's passive wait policy (anyseg's default, see ``anyseg/__init__.py``) each
    parallel region wakes sleeping worker threads, which takes longer than a layer norm or a
    product of a few prompt tokens; decoding one prompt is dozens of such ops.

    Only the main thread changes the count, restored on exit: there it is the main thread's own
    (other threads keep theirs), while a count set from any other thread also changes the main
    thread's, and its restore does not undo that (measured with torch 2.13's OpenMP). Elsewhere,
    e.g. in a server's request threads, this does nothing.
    """
    threads = torch.get_num_threads()
    if not active or threads == 1 or threading.current_thread() is not threading.main_thread():
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
