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

TOP5_CLASSES = 100  # top-5 accuracy is reported from this many classes on (CIFAR-100, ImageNet)


def top5_correct(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """How many of the rows of `z (B, K)` have label `y` among their 5 largest (0-d, on z's device)."""
    return (z.topk(min(5, z.shape[-1]), -1).indices == y.unsqueeze(-1)).any(-1).sum()


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
    """Loss, accuracy (and top-5 accuracy where there are >= TOP5_CLASSES classes), per time step too."""
    model.eval()
    T = inputs.timesteps if inputs.spiking else 1
    # loss, n, top-5 correct, alone[T], mean[T]; summed on the device so that the batches run
    # without waiting for it, and read once at the end
    sums = torch.zeros(3 + 2 * T, dtype=torch.float64, device=device)
    classes = 0
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        out = model(inputs.student(x))
        out = (out if inputs.spiking else out.unsqueeze(0)).float()
        alone, mean = step_correct(out, y)
        z, classes = out.mean(0), out.shape[-1]
        sums[0] += torch.nn.functional.cross_entropy(z, y, reduction="sum").double()
        sums[1] += len(y)
        if classes >= TOP5_CLASSES:
            sums[2] += top5_correct(z, y)
        sums[3 : 3 + T] += alone
        sums[3 + T :] += mean
    sums = distributed.reduce_sum(d, sums.cpu())
    n = max(sums[1].item(), 1.0)
    alone, mean = (sums[3 : 3 + T] / n).tolist(), (sums[3 + T :] / n).tolist()
    result = {
        "loss": sums[0].item() / n,
        "acc": mean[-1],
        "per_timestep": [{"t": t + 1, "alone": a, "running_mean": m} for t, (a, m) in enumerate(zip(alone, mean, strict=True))],
    }
    if classes >= TOP5_CLASSES:
        result["acc_top5"] = sums[2].item() / n
    return result


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
