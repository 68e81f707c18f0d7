"""One engine worker: a model loaded once, labelling batches of images with ``anyseg auto``'s job.

:class:`LabelWorker` is what each Ray actor holds (:mod:`anyseg.engine.ray_runner` wraps it; it
imports no Ray itself, so it runs and is tested in any process). Per image it calls
:func:`anyseg.automatic.job.label_image` with the run's :class:`~anyseg.automatic.AmgConfig`
and :class:`~anyseg.automatic.job.LabelJobConfig`, so the records are exactly those of the
single-process ``anyseg auto``. Remote images are copied to a scratch folder first; for a remote
output the files are written to scratch, then put as whole objects, the JSON last.

A batch may run twice (Ray retries the tasks of a lost worker on another one): an image whose
JSON exists is then not labelled again (unless ``overwrite``), and a repeated write replaces a
file with the same bytes. Either way each image ends with one complete JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from anyseg.automatic.config import AmgConfig
from anyseg.automatic.job import OVERLAY_SUFFIX, LabelJobConfig, label_image
from anyseg.engine.inputs import ImageSource
from anyseg.engine.output import OutputStore

if TYPE_CHECKING:
    from anyseg.modeling import Sam

#: Columns of a worker's output batch (one row per image).
RESULT_COLUMNS = ("location", "masks", "error", "hint", "seconds", "started", "worker")


@dataclass(frozen=True)
class LabelTask:
    """What every worker of a run needs besides the model (sent to each actor once).

    Attributes:
        output: the output location (:class:`~anyseg.engine.output.OutputStore`).
        amg: the generator's settings (``mode`` included).
        job: what is written per image.
        device: torch device of the worker (``auto``: its GPU when Ray gave it one).
        threads: torch CPU threads (None: leave torch's default).
    """

    output: str
    amg: AmgConfig
    job: LabelJobConfig
    device: str = "auto"
    threads: int | None = None


@dataclass(frozen=True)
class ImageResult:
    """What a worker did with one image.

    Attributes:
        location: the image.
        masks: masks in its JSON (0 when it failed).
        error: why it failed ("" if it did not).
        hint: why no mask was kept ("" if masks were kept or it failed).
        seconds: wall time spent on it in the worker.
        started: when the worker began it (seconds since the epoch, the worker's clock).
        worker: ``host:pid`` of the worker.
    """

    location: str
    masks: int = 0
    error: str = ""
    hint: str = ""
    seconds: float = 0.0
    started: float = 0.0
    worker: str = ""


class LabelWorker:
    """A model replica: ``worker(batch)`` labels ``batch["location"]`` and returns one row per
    image (columns :data:`RESULT_COLUMNS`).

    Args:
        task: the run's settings.
        model: the model (any device: it is moved to the task's device).
    """

    def __init__(self, task: LabelTask, model: Sam) -> None:
        import torch

        from anyseg.automatic.generator import SamAutomaticMaskGenerator
        from anyseg.checkpoint import resolve_device

        if task.threads is not None:
            torch.set_num_threads(task.threads)
        self.task = task
        self.store = OutputStore(task.output)
        self.generator = SamAutomaticMaskGenerator(
            model.to(resolve_device(task.device)).eval(), config=task.amg
        )
        self.scratch = Path(tempfile.mkdtemp(prefix="anyseg-engine-"))
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def __call__(self, batch: dict[str, Any]) -> dict[str, np.ndarray]:
        results = [self.label(ImageSource(str(loc))) for loc in batch["location"]]
        return {
            "location": np.array([r.location for r in results], dtype=object),
            "masks": np.array([r.masks for r in results], dtype=np.int64),
            "error": np.array([r.error for r in results], dtype=object),
            "hint": np.array([r.hint for r in results], dtype=object),
            "seconds": np.array([r.seconds for r in results], dtype=np.float64),
            "started": np.array([r.started for r in results], dtype=np.float64),
            "worker": np.array([self.name] * len(results), dtype=object),
        }

    def label(self, source: ImageSource) -> ImageResult:
        """Label one image (never raises: a failure is a result with its reason)."""
        start, started = time.perf_counter(), time.time()
        json_name = f"{source.stem}.json"
        try:
            if not self.task.job.overwrite and self.store.exists(json_name):
                # A retried batch: the first attempt finished this image.
                masks = len(json.loads(self.store.read_bytes(json_name))["annotations"])
                return self._result(source, start, started, masks=masks)
            result = self._label(source)
        except Exception as exc:  # one image's failure, whatever it is, must not stop the run
            text = " ".join(str(exc).split())
            return self._result(source, start, started, error=f"{type(exc).__name__}: {text}")
        error, hint = result.error or "", result.hint or ""
        return self._result(source, start, started, result.masks, error, hint)

    def _label(self, source: ImageSource) -> Any:
        import torch

        with torch.inference_mode(), source.local_copy(self.scratch) as path:
            if self.store.local is not None:
                return label_image(self.generator, path, self.store.local, self.task.job)
            result = label_image(self.generator, path, self.scratch, self.task.job)
            written = [f"{source.stem}{OVERLAY_SUFFIX}", f"{source.stem}.json"]  # JSON last
            try:
                if result.error is None:
                    for name in written:
                        if (self.scratch / name).is_file():
                            self.store.put_file(self.scratch / name, name)
            finally:
                for name in written:
                    (self.scratch / name).unlink(missing_ok=True)
            return result

    def _result(
        self,
        source: ImageSource,
        start: float,
        started: float,
        masks: int = 0,
        error: str = "",
        hint: str = "",
    ) -> ImageResult:
        seconds = time.perf_counter() - start
        return ImageResult(source.location, masks, error, hint, seconds, started, self.name)

    def close(self) -> None:
        """Remove the scratch folder."""
        scratch = getattr(self, "scratch", None)  # absent when __init__ failed
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)

    def __del__(self) -> None:
        self.close()
