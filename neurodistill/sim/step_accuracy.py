"""Accuracy of the simulated readout at each of the T steps: each step alone and the running mean
(a spike readout: the running spike count).

The readout integrates and never fires, so after window step t its voltage is the sum of the
logits of steps 1..t (fixed point: in Loihi units, the readout's bias included every step). The
running-mean prediction at t is the argmax of that sum, and at t = T it is the simulation's own
prediction; a step alone is the argmax of what that step added. Pure functions.
"""

from __future__ import annotations

import torch


def readout_window(v_steps: torch.Tensor, timesteps: int) -> torch.Tensor:
    """The readout's last `timesteps` steps of a run, `(T, B, K)`: its T-step window (pipeline fill before)."""
    return v_steps[-timesteps:]


def correct_per_step(increments: torch.Tensor, running: torch.Tensor, y: torch.Tensor) -> tuple[list[int], list[int]]:
    """Correct predictions per step: `increments (T, B, K)` (what each step adds), `running (T, B, K)`
    (what the prediction after step t is the argmax of)."""
    alone = (increments.flatten(2).argmax(-1) == y).sum(1)  # a conv classifier's readout is (K, 1, 1)
    mean = (running.flatten(2).argmax(-1) == y).sum(1)
    return [int(a) for a in alone], [int(m) for m in mean]


def from_logits(logits: torch.Tensor, y: torch.Tensor) -> tuple[list[int], list[int]]:
    """Float backend: logits per step `(T, B, K)`; the running mean is computed as the prediction is."""
    running = torch.stack([logits[: t + 1].mean(0) for t in range(logits.shape[0])])
    return correct_per_step(logits, running, y)


def from_readout(v_window: torch.Tensor, y: torch.Tensor) -> tuple[list[int], list[int]]:
    """Fixed point (fxp, Lava): the readout voltage in its window `(T, B, K)`, starting from rest."""
    v = v_window.long()
    steps = torch.diff(v, dim=0, prepend=torch.zeros_like(v[:1]))
    return correct_per_step(steps, v, y)


def from_spikes(window: torch.Tensor, y: torch.Tensor) -> tuple[list[int], list[int]]:
    """A spike readout (every backend): its spikes in the window `(T, B, K)`; a step alone predicts
    the lowest class that fired then (class 0 if none did), the running prediction the largest count
    so far, ties to the lowest index (`core/readout.py`)."""
    s = window.long()
    return correct_per_step(s, s.cumsum(0), y)


def summarize(alone: list[int], running: list[int], samples: int) -> list[dict]:
    return [{"t": t + 1, "alone": a / samples, "running_mean": m / samples}
            for t, (a, m) in enumerate(zip(alone, running, strict=True))]
