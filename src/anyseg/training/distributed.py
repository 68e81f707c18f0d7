"""Multi-process training helpers: process-group set-up (torchrun / explicit) and the sampler
that shards one deterministic stream of samples over processes.

The sample stream is a function of the seed only: epoch e is a permutation of the data set drawn
from ``(seed, e)``; stream position p holds image ``perm_e[p mod n]`` with draw key p (which seeds
the sample's masks, flip and prompts). Optimizer step k consumes positions
``[k·G, (k+1)·G)`` with G = world size × images per process × accumulation steps; process r, micro
step a takes ``b`` consecutive positions starting at ``k·G + (a·world + r)·b``. A 2-process run
with 1 image each therefore sees exactly the samples of a 1-process run with 2 images, and a
resumed run continues the stream where it stopped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job (world_size 1: no process group)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @staticmethod
    def from_env() -> DistInfo:
        """Read torchrun's RANK / WORLD_SIZE / LOCAL_RANK (defaults: a single process)."""
        return DistInfo(
            rank=int(os.environ.get("RANK", 0)),
            world_size=int(os.environ.get("WORLD_SIZE", 1)),
            local_rank=int(os.environ.get("LOCAL_RANK", 0)),
        )


def init_process_group(info: DistInfo, device: torch.device) -> bool:
    """Join the process group (gloo on CPU, nccl on CUDA) when world_size > 1.

    Uses the ``env://`` rendezvous (MASTER_ADDR / MASTER_PORT, set by torchrun). Returns whether
    this call created the group (the caller then destroys it).
    """
    if info.world_size <= 1 or dist.is_initialized():
        return False
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, rank=info.rank, world_size=info.world_size)
    return True


def all_reduce_mean(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean of a tensor over processes (identity with one process)."""
    if info.world_size <= 1 or not dist.is_initialized():
        return values
    out = values.clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / info.world_size


class StepSampler(torch.utils.data.Sampler[list[tuple[int, int]]]):
    """Batch sampler of ``(index, draw_key)`` lists: one list per micro step of this process,
    from optimizer step ``start_step`` to ``total_steps`` (see the module docstring)."""

    def __init__(
        self,
        dataset_len: int,
        seed: int,
        images_per_batch: int,
        info: DistInfo,
        accum_steps: int,
        start_step: int,
        total_steps: int,
    ) -> None:
        if dataset_len <= 0:
            raise ValueError("the data set is empty")
        self.n = dataset_len
        self.seed = seed
        self.b = images_per_batch
        self.info = info
        self.accum = accum_steps
        self.start = start_step
        self.total = total_steps
        self._perm_epoch = -1
        self._perm = np.arange(0)

    @property
    def global_batch(self) -> int:
        """Images per optimizer step over all processes."""
        return self.info.world_size * self.b * self.accum

    def position_item(self, p: int) -> tuple[int, int]:
        epoch, offset = divmod(p, self.n)
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.n)
            self._perm_epoch = epoch
        return int(self._perm[offset]), p

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        world, rank = self.info.world_size, self.info.rank
        for step in range(self.start, self.total):
            for a in range(self.accum):
                first = step * self.global_batch + (a * world + rank) * self.b
                yield [self.position_item(first + j) for j in range(self.b)]

    def __len__(self) -> int:
        return max(self.total - self.start, 0) * self.accum
