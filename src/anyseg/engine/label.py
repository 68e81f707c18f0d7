"""``label_dataset``: the automatic stage of the data engine over a whole dataset, on Ray.

One run: resolve the inputs (:mod:`~anyseg.engine.inputs`), skip the images whose JSON exists
in the output (they are done), label the rest on a pool of Ray actors
(:mod:`~anyseg.engine.ray_runner`) while reporting progress, then write ``failures.jsonl``
(one ``{"image", "error"}`` object per failed image: an empty file when none failed), bring the
tar shards up to date when asked (:mod:`~anyseg.engine.shards`) and write ``summary.json``.

Resumable and exactly once: every image's JSON is written atomically and last, so it exists
only for finished images; a run stopped at any point (Ctrl-C, a crash, a lost node) leaves
complete files only, and the next run labels what is missing. A run with nothing left to do
does not start Ray at all.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Sequence
from types import ModuleType

from anyseg.automatic.config import AmgConfig
from anyseg.automatic.job import LabelJobConfig
from anyseg.checkpoint import load_model
from anyseg.engine.config import EngineConfig
from anyseg.engine.inputs import ImageSource, resolve_inputs
from anyseg.engine.output import OutputStore
from anyseg.engine.progress import EngineSummary, Progress
from anyseg.engine.ray_runner import (
    cluster_nodes,
    connected,
    label_on_ray,
    plan_workers,
    shards_on_ray,
)
from anyseg.engine.shards import ShardSpec, assemble_shards
from anyseg.engine.worker import LabelTask
from anyseg.errors import InvalidInputError
from anyseg.io import to_json
from anyseg.settings import to_mapping

FAILURES_NAME = "failures.jsonl"
SUMMARY_NAME = "summary.json"


def label_dataset(
    inputs: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    amg: AmgConfig | None = None,
    job: LabelJobConfig | None = None,
    engine: EngineConfig | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    device: str = "auto",
    progress: bool = True,
) -> EngineSummary:
    """Label every image of ``inputs`` into ``output`` on Ray (see the module docstring).

    Args:
        inputs: image files, folders, manifests, or fsspec URIs of these
            (:mod:`anyseg.engine.inputs`).
        output: a local folder (shared by all nodes on a cluster) or an fsspec URI.
        amg: the generator's settings, ``mode`` included (default: ``AmgConfig()``).
        job: what is written per image (default: ``LabelJobConfig()``).
        engine: where to run and how to spread the work (default: ``EngineConfig()``, a local
            Ray instance unless ``RAY_ADDRESS`` names a cluster).
        checkpoint: model weights, read once on this machine (default: the bundled model).
        device: torch device of each worker (``auto``: its GPU when it has one).
        progress: report progress and failures on stderr while running.

    Returns:
        The run's summary (also written to ``summary.json``); ``summary.failed`` is nonzero when
        an image failed.

    Raises:
        InvalidInputError: bad inputs, Ray missing, a CUDA device without GPU workers, or a
            cluster without the GPUs asked for.
    """
    amg = amg or AmgConfig()
    job = job or LabelJobConfig()
    engine = engine or EngineConfig()
    if device.startswith("cuda") and engine.gpus_per_worker == 0:
        # Ray hides the GPUs from a worker that holds none: say so before starting anything.
        raise InvalidInputError(
            f"--device {device} on Ray needs GPU workers: add --gpus-per-worker 1 (or use "
            "--device auto, which takes a worker's GPU when it has one)"
        )
    start = time.perf_counter()
    store = OutputStore(output)
    sources = resolve_inputs(inputs, output=store.location)
    store.create()
    store.remove_temporaries()  # left by writers killed in an earlier run
    finished = {n[: -len(".json")] for n in store.names() if n.endswith(".json")}
    todo = [s for s in sources if job.overwrite or s.stem not in finished]
    stream = sys.stderr if progress else None
    report = Progress(len(sources), len(sources) - len(todo), stream)
    plan = None
    with contextlib.ExitStack() as stack:
        ray_session: list[ModuleType] = []

        def ray() -> ModuleType:  # started on first use: a run with nothing to do needs no Ray
            if not ray_session:
                ray_session.append(stack.enter_context(connected(engine.address)))
            return ray_session[0]

        if todo:
            plan = plan_workers(engine, cluster_nodes(ray()))
            task = LabelTask(store.location, amg, job, device, plan.threads)
            report.say(
                f"labelling {len(todo)} of {len(sources)} images on {plan.workers} Ray "
                f"worker(s) ({plan.cpus_per_worker:g} CPUs, {plan.gpus_per_worker:g} GPUs each)"
            )
            model = load_model(checkpoint, "cpu")  # once, here; the workers get it from Ray
            try:
                label_on_ray(ray(), todo, task, model, plan, engine.batch_size, report.add)
            finally:  # also on Ctrl-C: the finished images stay, the next run resumes
                report.close()
            store.remove_temporaries()
        report.close()
        write_failures(store, sources, report.failures)
        shards = shards_written = 0
        if engine.shards:

            def run_shards(specs: list[ShardSpec]) -> None:
                shards_on_ray(ray(), store.location)(specs)

            relabelled = set(report.labelled_locations)
            shards, shards_written = assemble_shards(
                sources, store, engine.shards, relabelled, run_shards
            )
    summary = EngineSummary(
        output=store.location,
        images=len(sources),
        already_done=report.already_done,
        labelled=report.labelled,
        failed=len(report.failures),
        masks=report.masks,
        seconds=time.perf_counter() - start,
        labelling_seconds=report.labelling_seconds,
        worker_seconds=report.worker_seconds,
        workers=plan.workers if plan else 0,
        cpus_per_worker=plan.cpus_per_worker if plan else 0.0,
        gpus_per_worker=plan.gpus_per_worker if plan else 0.0,
        batch_size=engine.batch_size,
        shards=shards,
        shards_written=shards_written,
        settings={
            "amg": to_mapping(amg),
            "job": to_mapping(job),
            "engine": to_mapping(engine),
            "checkpoint": None if checkpoint is None else os.fspath(checkpoint),
            "device": device,
        },
    )
    store.write_bytes(SUMMARY_NAME, (to_json(summary.to_json_dict(), indent=1) + "\n").encode())
    return summary


def write_failures(
    store: OutputStore, sources: Sequence[ImageSource], failures: dict[str, str]
) -> None:
    """``failures.jsonl``: the failed images in input order, each with its reason."""
    lines = [
        to_json({"image": s.location, "error": failures[s.location]})
        for s in sources
        if s.location in failures
    ]
    store.write_bytes(FAILURES_NAME, "".join(line + "\n" for line in lines).encode())
