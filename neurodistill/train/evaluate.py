"""Evaluation: the accuracy of every time step's output alone and of their running mean, on a
loader, for the float model and (with --deploy) the deployed fixed-point network."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from .. import distributed
from ..qat import training as qat
from .inputs import Inputs


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


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, inputs: Inputs, device, d: distributed.Dist) -> dict[str, Any]:
    model.eval()
    T = inputs.timesteps if inputs.spiking else 1
    sums = torch.zeros(2 + 2 * T, dtype=torch.float64)  # loss, n, alone[T], mean[T]
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        out = model(inputs.student(x))
        out = out if inputs.spiking else out.unsqueeze(0)
        alone, mean = step_correct(out.float(), y)
        sums[0] += torch.nn.functional.cross_entropy(out.float().mean(0), y, reduction="sum").item()
        sums[1] += len(y)
        sums[2 : 2 + T] += alone.double().cpu()
        sums[2 + T :] += mean.double().cpu()
    sums = distributed.reduce_sum(d, sums)
    n = max(sums[1].item(), 1.0)
    alone, mean = (sums[2 : 2 + T] / n).tolist(), (sums[2 + T :] / n).tolist()
    return {
        "loss": sums[0].item() / n,
        "acc": mean[-1],
        "per_timestep": [{"t": t + 1, "alone": a, "running_mean": m} for t, (a, m) in enumerate(zip(alone, mean, strict=True))],
    }


def evaluate_run(net: nn.Module, model: nn.Module, dep, loader: DataLoader, inputs: Inputs, device, d) -> dict[str, Any]:
    """The test evaluation; with --deploy, `acc` is the deployed network's accuracy in `run_fxp`
    (what `simulate --backend fxp` of the exported bundle gives), beside the float model's and
    the QAT forward's (the same predictions as run_fxp, up to float rounding of the encoding)."""
    if dep is None:
        return evaluate(net, loader, inputs, device, d)
    qat.recalibrate(dep, model)  # export's encoding scale for these weights; the next epoch trains with it
    flt = evaluate(net, loader, inputs, device, d)
    with dep.active(model):
        test = evaluate(net, loader, inputs, device, d)
    fxp = qat.evaluate_fxp(dep, model, loader, inputs.timesteps, device, d)
    return {**test, "acc": fxp["acc"], "acc_float": flt["acc"], "acc_qat_forward": test["acc"]}
