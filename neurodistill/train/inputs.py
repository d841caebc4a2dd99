"""How batches reach the network: the data loaders, and the encoding of a batch for student and teacher."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from .. import distributed
from ..config import TrainConfig
from ..data import DatasetInfo
from .loaders import TrainSamples, eval_loader


class Inputs:
    """Direct encoding: a static image is repeated T times; event frames come time-first.

    Shape:
        static batch `(B, C, H, W)` -> student `(T, B, C, H, W)`, teacher `(B, C, H, W)`;
        event batch `(B, T, C, H, W)` -> student `(T, B, C, H, W)`, teacher the time-mean.
    """

    def __init__(self, info: DatasetInfo, timesteps: int, spiking: bool) -> None:
        self.event = info.frames is not None
        self.timesteps = info.frames if self.event else (timesteps if spiking else 1)
        self.spiking = spiking

    def student(self, x: torch.Tensor, timesteps: int | None = None) -> torch.Tensor:
        """The network input, at `timesteps` steps (default: T). Event frames are held for
        `timesteps / frames` steps each when more steps are asked for (a whole multiple)."""
        if not self.spiking:
            return x.mean(1) if self.event else x
        T = timesteps or self.timesteps
        if self.event:
            frames = x.transpose(0, 1)
            return (frames if T == self.timesteps else frames.repeat_interleave(T // self.timesteps, 0)).contiguous()
        return x.unsqueeze(0).repeat(T, *([1] * x.dim()))

    def teacher(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(1) if self.event else x


def data_loader(ds, cfg: TrainConfig, d: distributed.Dist, train: bool, epoch: int = 0,
                device_type: str = "cpu") -> DataLoader:
    """The training loader set to `epoch` (shuffled), or the evaluation loader (in order). Given the
    run's `TrainSamples`, every epoch gets its one loader back; given a plain dataset, a new one."""
    if not train:
        return eval_loader(ds, cfg, d, device_type)
    samples = ds if isinstance(ds, TrainSamples) else TrainSamples(ds, cfg, d, device_type)
    return samples.epoch(epoch)
