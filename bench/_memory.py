"""Peak memory of one call, measured in the benchmark process itself (Linux).

``peak_growth(fn)`` frees what can be freed (Python's garbage, glibc's free lists), resets the
kernel's high-water mark of this process's resident memory (``/proc/self/clear_refs``, value
5), runs ``fn`` and reads the new high-water mark (``VmHWM``). The difference from the resident
size before the call is the memory the call needed at its peak: activations and temporaries,
not the weights already loaded. Both implementations are measured the same way, one after
the other, in the same process.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(field: str) -> int:
    for line in STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def available() -> bool:
    """Whether this system lets a process reset and read its peak resident memory."""
    try:
        CLEAR_REFS.write_text("5")
        _status_kib("VmHWM")
    except (OSError, KeyError):
        return False
    return True


def _trim() -> None:
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # glibc only
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # return its free lists to the kernel


def peak_growth(fn: Callable[[], T]) -> tuple[T, int | None]:
    """``fn()`` and the peak resident memory it added, in bytes (None where not measurable)."""
    if not available():
        return fn(), None
    _trim()
    before = _status_kib("VmRSS")
    CLEAR_REFS.write_text("5")
    result = fn()
    peak = _status_kib("VmHWM")
    return result, max(0, peak - before) * 1024


def mib(n: Any) -> str:
    return "n/a" if n is None else f"{n / 2**20:,.0f} MiB"
