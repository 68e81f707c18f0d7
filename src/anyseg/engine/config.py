"""Settings of a dataset-scale labelling run on Ray: where it runs and how the work is spread.

What is generated and written is not here: that is :class:`~anyseg.automatic.AmgConfig` (the
generator) and :class:`~anyseg.automatic.job.LabelJobConfig` (overlays, overwrite, pixel cap),
the same objects the single-process ``anyseg auto`` uses. The flags of ``anyseg auto --engine
ray`` come from the field metadata (:mod:`anyseg.settings`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from anyseg.errors import InvalidInputError
from anyseg.settings import opt


@dataclass(frozen=True)
class EngineConfig:
    """How a labelling run is spread over a Ray cluster (see the README, "Labelling a large
    dataset", for sizing)."""

    address: str | None = field(
        default=None,
        metadata=opt(
            "Ray cluster to join: auto (the cluster this machine is part of), HOST:PORT, or "
            "ray://HOST:10001 (Ray Client); default: RAY_ADDRESS when set (as under ray job "
            "submit), else a new local Ray instance on this machine",
            metavar="ADDR",
        ),
    )
    workers: int | None = field(
        default=None,
        metadata=opt(
            "model replicas (Ray actors), each loading the model once; default: one per "
            "--gpus-per-worker GPUs of the cluster, or one per CPU (less one) without GPUs",
            metavar="N",
        ),
    )
    gpus_per_worker: float = field(
        default=0.0,
        metadata=opt("GPUs per worker (fractions share a GPU, e.g. 0.5; 0: CPU workers)"),
    )
    cpus_per_worker: float | None = field(
        default=None,
        metadata=opt(
            "CPUs per worker (also its torch threads); default: the cluster's CPUs shared "
            "among the workers, less half a CPU for Ray's own tasks",
            metavar="X",
        ),
    )
    batch_size: int = field(
        default=4,
        metadata=opt(
            "images per call of a worker (a Ray task): larger amortizes Ray's per-task "
            "overhead, smaller redoes less after a lost worker"
        ),
    )
    shards: int = field(
        default=0,
        metadata=opt(
            "also write N SA-1B-style tar shards OUT_DIR/shards/sa_000000.tar, ... (each image "
            "and its JSON), assembled from the finished images at the end (0: none)",
            metavar="N",
        ),
    )

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise InvalidInputError(f"workers must be >= 1, got {self.workers}")
        if self.gpus_per_worker < 0:
            raise InvalidInputError(f"gpus_per_worker must be >= 0, got {self.gpus_per_worker}")
        if self.cpus_per_worker is not None and self.cpus_per_worker <= 0:
            raise InvalidInputError(f"cpus_per_worker must be > 0, got {self.cpus_per_worker}")
        if self.batch_size < 1:
            raise InvalidInputError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.shards < 0:
            raise InvalidInputError(f"shards must be >= 0, got {self.shards}")
