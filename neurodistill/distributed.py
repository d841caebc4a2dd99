"""torchrun support: process group from the environment, rank-0 helpers, metric reduction."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def launched_as_main() -> bool:
    """Rank 0 of a torchrun launch, or a process alone: readable before and after the process group."""
    return os.environ.get("RANK", "0") == "0"


def setup(device_type: str) -> Dist:
    """Join the process group that torchrun describes in the environment (or run alone)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        # NCCL for GPUs; gloo is the one backend that works on CPUs.
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def teardown(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        # Every rank arrives before any leaves: a gloo rank that destroys the group while its peer
        # is still writing the summary can abort at exit ("terminate called without an active
        # exception", seen once in CI on a loaded 2-core machine).
        dist.barrier()
        dist.destroy_process_group()


def reduce_sum(d: Dist, values: torch.Tensor) -> torch.Tensor:
    """Sum a float64 vector of counts/sums across ranks (identity when alone)."""
    if not d.enabled:
        return values
    on_gpu = dist.get_backend() == "nccl"  # NCCL reduces CUDA tensors only
    buf = values.cuda() if on_gpu else values.clone()
    dist.all_reduce(buf, op=dist.ReduceOp.SUM)
    return buf.cpu() if on_gpu else buf


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()
