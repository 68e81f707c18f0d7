"""The Ray side of the engine: joining a cluster, sizing the workers, the Ray Data pipeline.

The images to label become a Ray Dataset of locations, and ``map_batches`` runs them through a
pool of actors (``ActorPoolStrategy``), each a :class:`~anyseg.engine.worker.LabelWorker` that
loads the model once (from Ray's object store: the driver loads the checkpoint once and puts it
there, so worker nodes need no copy of it). This is Ray Data's standard batch inference; Ray
does the scheduling, the back-pressure and the recovery: a worker whose process or node dies is
restarted and its unfinished batches are retried (Ray Data's defaults for actor pools:
``max_restarts=-1``, ``max_task_retries=-1``), which the per-image atomic writes make safe.

Actors get fractional CPUs sized from the cluster's resources: an actor holding a whole CPU on a
2-CPU machine starves Ray Data's own tasks and the job never starts (``RAY_NOTES.md``).

Ray is imported here only, when a run starts; without it the error says how to install it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

from anyseg.engine.config import EngineConfig
from anyseg.engine.inputs import ImageSource
from anyseg.engine.shards import ShardSpec, build_shard
from anyseg.engine.worker import ImageResult, LabelTask, LabelWorker
from anyseg.errors import InvalidInputError

if TYPE_CHECKING:
    from anyseg.modeling import Sam

#: CPUs left free for Ray Data's own tasks (and the shard tasks at the end).
RESERVED_CPUS = 0.5
#: Upper bound on the blocks the list of images is cut into (each block is one actor task).
MAX_BLOCKS = 10_000
SHARD_TASK_CPUS = 0.25
INSTALL_HINT = "pip install 'anyseg[ray]'"


def import_ray() -> ModuleType:
    """The ``ray`` module with Ray Data.

    Raises:
        InvalidInputError: Ray (or Ray Data) is not installed; the message says how.
    """
    try:
        import ray
        import ray.data  # Ray Data brings pyarrow; plain `ray` lacks it
    except ImportError as exc:
        raise InvalidInputError(
            f"the Ray engine needs Ray with Ray Data ({exc}): {INSTALL_HINT}"
        ) from None
    return ray


@contextlib.contextmanager
def connected(address: str | None) -> Iterator[ModuleType]:
    """Ray, initialised for this block: joined to ``address`` (or ``RAY_ADDRESS``), else a new
    local instance; shut down afterwards if this block started it. A Ray already initialised by
    the caller is used as it is and left running."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING}
    if address is None and not os.environ.get("RAY_ADDRESS"):
        kwargs["include_dashboard"] = False  # a throw-away local instance
    ray.init(address=address, **kwargs)
    try:
        yield ray
    finally:
        ray.shutdown()


@dataclass(frozen=True)
class WorkerPlan:
    """How many actors a run starts and what each holds."""

    workers: int
    cpus_per_worker: float
    gpus_per_worker: float

    @property
    def threads(self) -> int:
        """torch threads of a worker: its whole CPUs, at least one."""
        return max(1, math.floor(self.cpus_per_worker + 1e-9))


def plan_workers(engine: EngineConfig, nodes: Sequence[dict[str, float]]) -> WorkerPlan:
    """Size the actor pool from the alive nodes' resources (``{"CPU": 8.0, "GPU": 1.0}`` each).

    With ``gpus_per_worker`` G > 0 there is one worker per G GPUs of each node by default, each
    with an equal share of its node's CPUs (less :data:`RESERVED_CPUS`). Without GPUs there is
    one worker per CPU of the cluster, less the reserve (at least one), CPUs shared equally. An
    explicit ``workers`` or ``cpus_per_worker`` replaces the default.

    Raises:
        InvalidInputError: GPU workers asked for on a cluster without GPUs.
    """
    gpus = engine.gpus_per_worker
    total_cpu = sum(n.get("CPU", 0.0) for n in nodes)
    largest_cpu = max((n.get("CPU", 0.0) for n in nodes), default=0.0)
    if gpus > 0:
        slots = [(n, math.floor(n.get("GPU", 0.0) / gpus + 1e-9)) for n in nodes]
        slots = [(n, k) for n, k in slots if k > 0]
        if not slots and engine.workers is None:
            found = sum(n.get("GPU", 0.0) for n in nodes)
            raise InvalidInputError(
                f"--gpus-per-worker {gpus} asks for GPU workers, but the Ray cluster has "
                f"{found:g} GPUs: start GPU nodes, or use CPU workers (--gpus-per-worker 0)"
            )
        workers = engine.workers or sum(k for _, k in slots)
        shares = [(n.get("CPU", 0.0) - RESERVED_CPUS) / k for n, k in slots]
        cpus = min(shares, default=1.0)
    else:
        workers = engine.workers or max(1, math.floor(total_cpu - RESERVED_CPUS))
        cpus = min((total_cpu - RESERVED_CPUS) / workers, largest_cpu - RESERVED_CPUS)
    if engine.cpus_per_worker is not None:
        cpus = engine.cpus_per_worker
    cpus = max(0.05, math.floor(cpus * 100) / 100)  # two decimals, never zero
    return WorkerPlan(workers, cpus, gpus)


def cluster_nodes(ray: ModuleType) -> list[dict[str, float]]:
    """The resources of each alive node."""
    return [dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")]


class RayLabelWorker(LabelWorker):
    """The actor class: a :class:`LabelWorker` whose model comes from Ray's object store."""

    def __init__(self, task: LabelTask, model: Any) -> None:
        import ray

        if isinstance(model, ray.ObjectRef):
            model = ray.get(model)
        super().__init__(task, model)


def label_on_ray(
    ray: ModuleType,
    todo: Sequence[ImageSource],
    task: LabelTask,
    model: Sam,
    plan: WorkerPlan,
    batch_size: int,
    on_result: Callable[[ImageResult], object],
) -> None:
    """Label ``todo`` on the actor pool; ``on_result`` gets each image's result as it arrives
    (in completion order; an image of a retried batch may come twice)."""
    ctx = ray.data.DataContext.get_current()
    saved = (ctx.enable_progress_bars, ctx.print_on_execution_start)
    ctx.enable_progress_bars = False  # the engine prints its own progress
    ctx.print_on_execution_start = False
    quiet = _DropMessage("Progress bars disabled")  # Ray Data's warning about the line above
    ray_data_log = logging.getLogger("ray.data._internal.progress")  # where it is logged
    ray_data_log.addFilter(quiet)
    try:
        blocks = max(1, min(MAX_BLOCKS, math.ceil(len(todo) / batch_size)))
        ds = ray.data.from_items(
            [{"location": s.location} for s in todo], override_num_blocks=blocks
        )
        ds = ds.map_batches(
            RayLabelWorker,
            fn_constructor_kwargs={"task": task, "model": ray.put(model)},
            batch_size=batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=plan.workers),
            num_cpus=plan.cpus_per_worker,
            num_gpus=plan.gpus_per_worker,
        )
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            for i in range(len(batch["location"])):
                on_result(
                    ImageResult(
                        location=str(batch["location"][i]),
                        masks=int(batch["masks"][i]),
                        error=str(batch["error"][i]),
                        hint=str(batch["hint"][i]),
                        seconds=float(batch["seconds"][i]),
                        started=float(batch["started"][i]),
                        worker=str(batch["worker"][i]),
                    )
                )
    finally:
        ctx.enable_progress_bars, ctx.print_on_execution_start = saved
        ray_data_log.removeFilter(quiet)


class _DropMessage(logging.Filter):
    """Drops the log records whose message starts with ``prefix``."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefix)


def shards_on_ray(ray: ModuleType, output: str) -> Callable[[list[ShardSpec]], None]:
    """A shard builder for :func:`~anyseg.engine.shards.assemble_shards`: one Ray task per
    shard, in parallel over the cluster."""
    remote = ray.remote(num_cpus=SHARD_TASK_CPUS)(build_shard)

    def run(specs: list[ShardSpec]) -> None:
        ray.get([remote.remote(spec, output) for spec in specs])

    return run
