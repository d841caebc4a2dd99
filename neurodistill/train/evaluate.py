"""Accuracy of every time step's output alone and of the running mean of the outputs."""

from __future__ import annotations

import torch


def step_correct(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Correct counts per step: `(alone[T], running_mean[T])`.

    Shape:
        logits: `(T, B, K)`; labels: `(B,)`. `running_mean[t]` scores `mean(logits[:t+1])`,
        so `running_mean[-1]` is the model's prediction.
    """
    steps = torch.arange(1, logits.shape[0] + 1, device=logits.device, dtype=logits.dtype)
    running = logits.cumsum(0) / steps.view(-1, 1, 1)
    alone = (logits.argmax(-1) == labels).sum(1)
    mean = (running.argmax(-1) == labels).sum(1)
    return alone, mean
