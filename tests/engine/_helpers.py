"""Helpers of the engine tests (imported by the tests and their conftest)."""

from __future__ import annotations

import os
from pathlib import Path

#: Generator options that keep masks on the random test model and run fast.
FAST = ["--points-per-side", "3", "--pred-iou-thresh", "0", "--stability-score-thresh", "0"]
NUM_IMAGES = 20


def descendants(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of every process below ``pid`` (Linux /proc)."""
    parent: dict[int, int] = {}
    command: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue  # ended meanwhile
        parent[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
        command[int(entry)] = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
    found, frontier = [], [pid]
    while frontier:
        here = frontier.pop()
        for child, up in parent.items():
            if up == here:
                found.append((child, command[child]))
                frontier.append(child)
    return found


def ray_processes() -> list[tuple[int, str]]:
    return [(p, c) for p, c in descendants(os.getpid()) if "raylet" in c or "gcs_server" in c]
