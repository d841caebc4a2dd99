"""The class a run predicts, for both readout kinds (`DeployGraph.readout_kind`), in one place.

A spike readout predicts the class with the most output spikes over the T-step window; a tie goes
to the lowest class index (`argmax` returns the first maximum in torch and numpy alike), a rule
every runner (float, fxp, Lava, snnTorch's own counts) computes identically from the spikes alone.
"""

from __future__ import annotations

import torch


def output_window(spikes: torch.Tensor, timesteps: int) -> torch.Tensor:
    """The output population's spikes in its T-step window, `(T, B, K)`: the last `timesteps` steps
    of a run (the pipeline fill comes before; a float run has exactly T steps)."""
    s = spikes[-timesteps:]
    return s.reshape(s.shape[0], s.shape[1], -1)


def count_prediction(counts: torch.Tensor) -> torch.Tensor:
    """`(B, K)` spike counts -> `(B,)` classes: the largest count, ties to the lowest index."""
    return counts.flatten(1).argmax(-1)


def spike_prediction(spikes: torch.Tensor, timesteps: int) -> torch.Tensor:
    """`(steps, B, *shape)` output spikes -> `(B,)` classes over the last `timesteps` steps."""
    return count_prediction(output_window(spikes, timesteps).long().sum(0))
