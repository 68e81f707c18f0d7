"""A run's progress while it runs (images done / total, images per second, masks per image) and
its summary at the end (``summary.json``).

On a terminal the progress is a bar; otherwise (a log file, ``ray job logs``) it is one line
every ``interval`` seconds and one at the end. Each failure is reported when it happens.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from anyseg.engine.worker import ImageResult
from anyseg.io import display_path

PREFIX = "anyseg auto"
#: Results before an ETA is shown.
ETA_AFTER = 10


class Progress:
    """Counts the results of a run as they arrive.

    Args:
        total: images of the run (those already done included).
        already_done: images done by an earlier run (not labelled again).
        stream: where to report (None: nowhere).
        interval: seconds between progress lines when ``stream`` is not a terminal.
    """

    def __init__(
        self, total: int, already_done: int, stream: TextIO | None, interval: float = 10.0
    ) -> None:
        self.total = total
        self.already_done = already_done
        self.stream = stream
        self.interval = interval
        self.start = time.perf_counter()
        self.first_start: float | None = None  # epoch seconds: the first image a worker began
        self.last_result: float | None = None  # epoch seconds
        self.labelled = 0
        self.masks = 0
        self.worker_seconds = 0.0
        self.labelled_locations: list[str] = []
        self.failures: dict[str, str] = {}  # location -> reason
        self._seen: set[str] = set()
        self._last_line = self.start
        self._bar: Any = None
        self._closed = False
        if stream is not None and stream.isatty():
            from tqdm import tqdm

            todo = total - already_done
            self._bar = tqdm(total=todo, desc="images", unit="img", file=stream)

    @property
    def finished(self) -> int:
        """Images finished in this run (labelled or failed)."""
        return self.labelled + len(self.failures)

    def add(self, result: ImageResult) -> bool:
        """Count one result; False (and nothing counted) for an image already counted."""
        if result.location in self._seen:
            return False
        self._seen.add(result.location)
        now = time.perf_counter()
        if result.started:
            self.first_start = min(self.first_start or result.started, result.started)
        self.last_result = time.time()
        if result.error:
            self.failures[result.location] = result.error
            self.say(f"skipped {display_path(result.location)}: {result.error}")
        else:
            self.labelled += 1
            self.masks += result.masks
            self.worker_seconds += result.seconds
            self.labelled_locations.append(result.location)
            if result.hint:
                self.say(f"{display_path(result.location)}: 0 masks kept: {result.hint}")
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix_str(self._rates(now))
        elif self.stream is not None and now - self._last_line >= self.interval:
            self._last_line = now
            self.say(self.line(now))
        return True

    def line(self, now: float | None = None) -> str:
        """``12/20 images (60%), 1.25 img/s, 5.3 masks/img, 1 failed, ETA 6 s``."""
        now = time.perf_counter() if now is None else now
        done = self.already_done + self.finished
        percent = 100 * done / self.total if self.total else 100.0
        text = f"{done}/{self.total} images ({percent:.0f}%), {self._rates(now)}"
        if self.failures:
            text += f", {len(self.failures)} failed"
        rate = self.finished / max(now - self.start, 1e-9)
        left = self.total - done
        if left and self.finished >= ETA_AFTER:  # the first results include start-up time
            text += f", ETA {_duration(left / rate)}"
        return text

    def _rates(self, now: float) -> str:
        rate = self.finished / max(now - self.start, 1e-9)
        per_image = self.masks / self.labelled if self.labelled else 0.0
        return f"{rate:.2f} img/s, {per_image:.1f} masks/img"

    @property
    def labelling_seconds(self) -> float:
        """From the moment a worker began the first image to the last result (0 before one):
        the run without its start-up (Ray, the actors, shipping the model)."""
        if self.first_start is None or self.last_result is None:
            return 0.0
        return max(0.0, self.last_result - self.first_start)

    def say(self, text: str) -> None:
        """Report one line (above the bar on a terminal)."""
        if self.stream is None:
            return
        if self._bar is not None:
            self._bar.write(f"{PREFIX}: {text}", file=self.stream)
        else:
            print(f"{PREFIX}: {text}", file=self.stream, flush=True)

    def close(self) -> None:
        """End the bar, or print the last progress line (once)."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self.finished:
            self.say(self.line())


@dataclass(frozen=True)
class EngineSummary:
    """What a run did (written as ``summary.json``).

    Attributes:
        output: the output location.
        images: images named by the inputs.
        already_done: of those, done by an earlier run (not labelled again).
        labelled: labelled in this run.
        failed: failed in this run (listed in ``failures.jsonl``).
        masks: masks written in this run.
        seconds: wall time of the run, Ray start-up included.
        labelling_seconds: from a worker's start on the first image to the last result: the
            run without its start-up (workers' clocks: exact on one machine, within clock
            synchronisation on a cluster).
        worker_seconds: the workers' own time on the labelled images, summed (reading,
            generating, writing: what one process would spend on them).
        workers: model replicas.
        cpus_per_worker: CPUs each held.
        gpus_per_worker: GPUs each held.
        batch_size: images per worker call.
        shards: shard files of the output (0 when none were asked for).
        shards_written: of those, written in this run (the others were up to date).
        settings: the generator's and the job's settings, the model.
    """

    output: str
    images: int
    already_done: int
    labelled: int
    failed: int
    masks: int
    seconds: float
    labelling_seconds: float
    worker_seconds: float
    workers: int
    cpus_per_worker: float
    gpus_per_worker: float
    batch_size: int
    shards: int = 0
    shards_written: int = 0
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def images_per_minute(self) -> float:
        done = self.labelled + self.failed
        return 60 * done / self.seconds if self.seconds > 0 else 0.0

    @property
    def masks_per_image(self) -> float:
        return self.masks / self.labelled if self.labelled else 0.0

    def to_json_dict(self) -> dict[str, Any]:
        from anyseg.settings import to_mapping

        data = to_mapping(self)
        data["images_per_minute"] = round(self.images_per_minute, 3)
        data["masks_per_image"] = round(self.masks_per_image, 3)
        return data


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    return f"{minutes:.0f} min" if minutes < 90 else f"{minutes / 60:.1f} h"
