"""One chain of tensor ops split by hand over the cores: a few coarse parallel parts ("lanes").

Decoding one prompt is a chain of mid-sized ops (products with the 4096 image cells, layer
norms, GELUs, softmaxes), each of which would open its own intra-op parallel region. With
OpenMP's passive wait policy (anyseg's default, see ``anyseg/__init__.py``) every region wakes
sleeping worker threads, and on a virtual machine such a wake-up can cost more than a tenth of a
millisecond, about what the region saves. :func:`run_lanes` instead cuts the work into one
contiguous part per thread (image rows, cells) and runs each part's whole chain on one thread:
part 0 on the calling thread, the others on persistent worker threads, each with a single
intra-op thread. The threads meet once per call instead of once per op.

Each part runs the same ops on a slice, so results equal the unsplit ops' up to the slicing
(row-independent ops give the same values; reductions a caller merges itself, e.g. a softmax,
differ by float rounding).

Only a thread that owns its intra-op thread count splits (the main thread, or a service's
compute thread, see :func:`anyseg.ops.threads.owns_thread_count`), and only with gradients off
(:func:`lanes_available`): the workers keep their counts at one, and the caller sets its own to
one while the lanes run and restores it afterwards.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import torch

from anyseg.ops.threads import one_thread, owns_thread_count

T = TypeVar("T")

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_workers = 0


def lanes_available(device: torch.device) -> int:
    """How many lanes a caller may split work on ``device`` into now: the intra-op thread count
    for CPU tensors, with gradients off, on a thread that owns its count (the main thread, a
    compute thread), else 1 (no split; an accelerator queues its own work)."""
    if device.type != "cpu" or not owns_thread_count() or torch.is_grad_enabled():
        return 1
    return max(1, torch.get_num_threads())


def split_range(total: int, lanes: int, multiple: int = 1) -> list[tuple[int, int]]:
    """``lanes`` contiguous (start, stop) parts of range(total), as even as whole ``multiple``s
    allow (every boundary but the last a multiple of it); empty parts are dropped."""
    if total < 0 or lanes < 1 or multiple < 1:
        raise ValueError(f"split_range({total}, {lanes}, {multiple}): need total >= 0, lanes >= 1")
    units = -(-total // multiple)
    bounds = [min(total, multiple * (units * i // lanes)) for i in range(lanes + 1)]
    return [(a, b) for a, b in itertools.pairwise(bounds) if b > a]


def run_lanes(fn: Callable[[int, int], T], parts: Sequence[tuple[int, int]]) -> list[T]:
    """``[fn(start, stop) for start, stop in parts]``, the parts at once: the first on the
    calling thread, the others on worker threads, each with one intra-op thread and the caller's
    inference mode. All parts finish before the first exception raised by any is re-raised.

    Call it with at most :func:`lanes_available` parts (e.g. from :func:`split_range`); one part
    runs as a plain call.
    """
    if len(parts) <= 1:
        return [fn(*part) for part in parts]
    available = lanes_available(torch.device("cpu"))
    if len(parts) > available:
        raise RuntimeError(f"{len(parts)} lanes asked for where {available} are available")
    inference = torch.is_inference_mode_enabled()

    def lane(start: int, stop: int) -> T:
        with torch.inference_mode(inference), torch.no_grad():
            return fn(start, stop)

    with one_thread():  # the workers' first call sets the shared count to 1: restored on exit
        pool = _workers(len(parts) - 1)
        futures: list[Future[T]] = [pool.submit(lane, *part) for part in parts[1:]]
        results: list[T] = []
        error: BaseException | None = None
        try:
            results.append(fn(*parts[0]))
        except BaseException as exc:  # re-raised once the workers are done
            error = exc
        for future in futures:
            try:
                results.append(future.result())
            except BaseException as exc:
                error = error or exc
        if error is not None:
            raise error
    return results


def concat_in_lanes(
    fn: Callable[[int, int], torch.Tensor],
    total: int,
    lanes: int,
    like: torch.Tensor,
    shape: Sequence[int],
    dim: int = 0,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """``torch.cat([fn(start, stop) ...], dim)`` over :func:`split_range` (total, lanes), the
    parts in lanes, each writing its result into its slice of one (``shape``) tensor (dtype
    ``like``'s unless given, on its device); with one part, ``fn(0, total)`` itself."""
    parts = split_range(total, lanes)
    if len(parts) == 1:
        return fn(0, total)
    out = torch.empty(tuple(shape), dtype=dtype or like.dtype, device=like.device)

    def part(start: int, stop: int) -> None:
        out.narrow(dim, start, stop - start).copy_(fn(start, stop))

    run_lanes(part, parts)
    return out


def _single_thread() -> None:
    torch.set_num_threads(1)


def _forget_pool() -> None:
    """After a fork the child has none of the parent's worker threads: start a fresh pool."""
    global _pool, _pool_workers
    _pool, _pool_workers = None, 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _workers(count: int) -> ThreadPoolExecutor:
    """The persistent pool, grown to ``count`` workers (each keeps one intra-op thread)."""
    global _pool, _pool_workers
    with _lock:
        if _pool is None or _pool_workers < count:
            old = _pool
            _pool = ThreadPoolExecutor(
                count, thread_name_prefix="anyseg-lane", initializer=_single_thread
            )
            _pool_workers = count
            if old is not None:
                old.shutdown(wait=False)
        return _pool
