"""The learning-rate schedule: a function of the fraction of training done, for the epochs in force.

`lr = lr0 * (1 + cos(pi * done)) / 2` (cosine) or `lr0` (constant), where `done` is
`(epochs finished + batches of this epoch / batches per epoch) / epochs`. Nothing about the
schedule is carried over from a checkpoint but the epochs it finished: a run resumed with more
`--epochs` follows the cosine that ends at its new last step, and a run resumed on another
number of processes (other batches per epoch) is at the same point of the schedule after the
same number of samples. torch's CosineAnnealingLR, used before, restored its own `T_max`, so
`--resume --epochs 400` after 300 epochs sent the learning rate back up.
"""

from __future__ import annotations

import math
from typing import Any

import torch


class Schedule:
    """Sets the optimizer's learning rates; `step()` after every optimisation step, as torch's
    schedulers, and `resume(epoch)` to start after `epoch` finished epochs."""

    def __init__(self, optimizer: torch.optim.Optimizer, kind: str, epochs: int, batches: int) -> None:
        self.optimizer, self.kind, self.epochs, self.batches = optimizer, kind, epochs, max(1, batches)
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        self.steps = 0  # optimisation steps since the start of training, in this run's batches
        self._apply()

    def done(self) -> float:
        return min(1.0, self.steps / (self.batches * self.epochs))

    def factor(self) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * self.done())) if self.kind == "cosine" else 1.0

    def step(self) -> None:
        self.steps += 1
        self._apply()

    def resume(self, epoch: int) -> None:
        self.steps = epoch * self.batches
        self._apply()

    def get_last_lr(self) -> list[float]:
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        """What the schedule was, for the record; `--resume` reads only the checkpoint's epoch."""
        return {"kind": self.kind, "epochs": self.epochs, "batches_per_epoch": self.batches, "steps": self.steps,
                "done": self.done(), "base_lrs": list(self.base_lrs)}

    def _apply(self) -> None:
        f = self.factor()
        for g, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            g["lr"] = base * f
