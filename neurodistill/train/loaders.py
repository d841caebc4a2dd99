"""The run's data loaders: how many workers, pinned memory, one training loader per run, and the
seeds its augmentation draws from.

A training sample is asked for as the key `(epoch, index)` and augmented with torch's generator
seeded by `(seed, rank, epoch, index)` alone (every augmentation here, torchvision's included,
draws from torch's generator; numpy and `random` keep the per-worker seeds DataLoader gives them). So what a sample's random crop, flip, AutoAugment policy or
Cutout square is does not depend on which worker process drew it, how many workers there are,
what persistent workers drew in earlier epochs, or whether the run was resumed; and two DDP
ranks never draw the same augmentations (they used to: every rank seeded with `seed` alone).
"""

from __future__ import annotations

import contextlib
import os

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset, get_worker_info
from torch.utils.data.distributed import DistributedSampler

from .. import distributed
from ..config import TrainConfig

# `--workers auto` never starts more than this many per process: at about 2,500 CIFAR images/s
# per core (AutoAugment + Cutout, benchmarks/loader.py), 8 workers outrun any one GPU's spiking
# ResNet step, and each further worker only adds start-up time and memory (every worker holds a
# copy of the dataset's Python objects, which reference counting gradually un-shares).
WORKERS_CAP = 8
PREFETCH = 4  # batches each worker keeps ready: smooths slow batches (AutoAugment's costly ops)


def cores() -> int:
    """CPU cores this process may run on (its affinity mask, where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def resolve_workers(workers: int | str, device_type: str) -> int:
    """`workers` itself, or for `auto`: 0 on a CPU, where the training step already uses every core
    and is far slower than loading in series (benchmarks/loader.py); on CUDA the cores per local
    rank, less one for the process itself, between 1 and WORKERS_CAP."""
    if workers != "auto":
        return int(workers)
    if device_type != "cuda":
        return 0
    per_rank = cores() // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, min(WORKERS_CAP, per_rank - 1))


_M64 = 2**64 - 1


def mixed_seed(*parts: int) -> int:
    """A 63-bit seed from non-negative integers, well spread even for neighbouring inputs: each
    part folded in by splitmix64's finaliser (a few microseconds; numpy's SeedSequence takes 13)."""
    h = 0
    for p in parts:
        h = (h ^ p) + 0x9E3779B97F4A7C15 & _M64
        h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9 & _M64
        h = (h ^ (h >> 27)) * 0x94D049BB133111EB & _M64
        h ^= h >> 31
    return h >> 1


@contextlib.contextmanager
def _torch_seeded(seed: int):
    """torch's CPU generator seeded with `seed` for the block. In the main process (workers = 0)
    its state is put back after it, so the run's own random streams (dropout, the methods' draws)
    go on as if no sample had been drawn."""
    saved = torch.get_rng_state() if get_worker_info() is None else None
    torch.default_generator.manual_seed(seed)  # not torch.manual_seed: that would reseed CUDA's generators too
    try:
        yield
    finally:
        if saved is not None:
            torch.set_rng_state(saved)


class SeededSamples(Dataset):
    """`ds` indexed by `(epoch, i)`: sample i, drawn with torch's generator seeded by (seed, rank, epoch, i)."""

    def __init__(self, ds, seed: int, rank: int) -> None:
        self.ds, self.seed, self.rank = ds, seed, rank

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, key: tuple[int, int]):
        epoch, i = key
        with _torch_seeded(mixed_seed(self.seed, self.rank, epoch, i)):
            return self.ds[i]


class EpochOrder(Sampler):
    """The keys `(epoch, i)` of one epoch, in that epoch's order: alone, a permutation seeded by
    (seed, epoch) only, the order training has always had; under torchrun, this rank's shard of
    DistributedSampler's."""

    def __init__(self, ds, seed: int, d: distributed.Dist) -> None:
        self.n, self.seed, self.epoch = len(ds), seed, 0
        self.shard = (DistributedSampler(ds, num_replicas=d.world, rank=d.rank, shuffle=True, seed=seed, drop_last=True)
                      if d.enabled else None)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self) -> list[int]:
        if self.shard is not None:
            self.shard.set_epoch(self.epoch)
            return list(self.shard)
        # `% 2**64`: the same numbers as ever for ordinary seeds, and no overflow for huge ones
        g = torch.Generator().manual_seed((self.seed * 100_003 + self.epoch) % 2**64)
        return torch.randperm(self.n, generator=g).tolist()

    def __iter__(self):
        epoch, order = self.epoch, self.order()
        return ((epoch, i) for i in order)

    def __len__(self) -> int:
        return len(self.shard) if self.shard is not None else self.n


class TrainSamples(Dataset):
    """The training split as a run draws it: per-sample seeds, and the run's one loader, whose
    workers (if any) persist from epoch to epoch. Indexing it by an integer gives the plain sample."""

    def __init__(self, ds, cfg: TrainConfig, d: distributed.Dist, device_type: str) -> None:
        self.ds, self.order = ds, EpochOrder(ds, cfg.seed, d)
        self.workers = resolve_workers(cfg.workers, device_type)
        # The loader's dataset is a separate object, so the loader holds no reference back to this
        # one: when the run lets go of it, the loader and its worker processes go at once.
        self.loader: DataLoader | None = DataLoader(
            SeededSamples(ds, cfg.seed, d.rank), batch_size=cfg.batch_size, sampler=self.order,
            num_workers=self.workers, pin_memory=device_type == "cuda", persistent_workers=self.workers > 0,
            prefetch_factor=PREFETCH if self.workers else None, drop_last=False,
            # Workers' own seeds: different on every rank (and, as torch adds the worker's id, on every
            # worker), and drawn without touching the process's global generator.
            generator=torch.Generator().manual_seed(mixed_seed(cfg.seed, d.rank)))

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int):
        return self.ds[i]

    def batches(self) -> int:
        """Batches per epoch on this rank."""
        return -(-len(self.order) // self.loader.batch_size)

    def epoch(self, epoch: int) -> DataLoader:
        """The loader, set to draw `epoch`'s samples in `epoch`'s order."""
        self.order.set_epoch(epoch)
        return self.loader

    def close(self) -> None:
        """Stop the persistent workers now rather than when the garbage collector gets to them."""
        self.loader = None


def eval_loader(ds, cfg: TrainConfig, d: distributed.Dist, device_type: str) -> DataLoader:
    """The evaluation loader: in order; under torchrun the test set sharded without padding, so
    reduced accuracies count each sample once. Its workers are not persistent: an evaluation is
    short, and holding them between evaluations would keep their memory for nothing."""
    ds = Subset(ds, range(d.rank, len(ds), d.world)) if d.enabled else ds
    return DataLoader(ds, batch_size=cfg.batch_size, shuffle=False, num_workers=resolve_workers(cfg.workers, device_type),
                      pin_memory=device_type == "cuda", generator=torch.Generator())  # leaves the global RNG alone
