"""One training epoch: its optimisation steps, and the metrics row it adds to metrics.csv.

No step waits for the device: what the steps add up stays there (`tally.Tally`) and is read once
per log interval (`--log-every`) and once at the epoch's end."""

from __future__ import annotations

import contextlib
import time
from typing import Any, NamedTuple

import torch

from .. import distributed
from ..progress import progress as progress_bar
from . import gpu
from .evaluate import TOP5_CLASSES
from .inputs import data_loader
from .state import Run
from .tally import Clock, StepReport, Tally

LOSS_PARTS = ("loss", "task", "distill", "reg", "ce", "kl", "entropy")


class EpochTotals(NamedTuple):
    names: list[str]  # the loss parts: LOSS_PARTS, then the method's own
    sums: dict[str, float]  # each part x samples, "correct", "seen" (and "correct_top5"), over every rank
    batches: int  # batches run here
    step_seconds: float  # what the steps took


def train_epoch(run: Run, epoch: int, progress: bool, clock: Clock | None = None) -> EpochTotals:
    """The epoch's steps and what they add up to over every rank."""
    cfg, d = run.cfg, run.d
    run.net.train()
    top5 = run.info.num_classes >= TOP5_CLASSES
    tally = Tally(run.device, top5)
    loader = data_loader(run.train_ds, cfg, d, train=True, epoch=epoch)
    bar = progress_bar(loader, run.batches, f"epoch {epoch + 1}/{cfg.epochs}", progress and d.main)
    report = StepReport(run, epoch, bar, clock or Clock(epoch * run.batches))
    fmt = gpu.memory_format(cfg, run.device)
    # Training time per batch (TSER's Table 4 column): the optimisation steps alone, data loading
    # included, evaluation and checkpointing excluded.
    t_steps, n_batches = time.perf_counter(), 0
    for i, (x, y) in enumerate(bar):
        if cfg.limit_train_batches and i >= cfg.limit_train_batches:
            break
        n_batches += 1
        x, y = gpu.to_device(x, run.device, fmt), y.to(run.device, non_blocking=True)
        parts, z = train_step(run, x, y)
        tally.add(parts, z, y)
        report.after(i, tally)
    sums = tally.read()  # waits for the device, so the time below is the device's time too
    step_seconds = time.perf_counter() - t_steps
    report.check(sums)
    names = [*LOSS_PARTS, *sorted(set(tally.names) - set(LOSS_PARTS))]
    keys = [*names, "correct", "seen", *(["correct_top5"] if top5 else [])]
    values = [sums.get(k, 0.0) for k in names] + [sums["correct"], tally.seen] + ([sums["correct_top5"]] if top5 else [])
    reduced = distributed.reduce_sum(d, torch.tensor(values, dtype=torch.float64))
    return EpochTotals(names, dict(zip(keys, reduced.tolist(), strict=True)), n_batches, step_seconds)


def train_step(run: Run, x: torch.Tensor, y: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One optimisation step on a batch already on the device: the loss parts and the outputs.
    Nothing here reads a value back from the device."""
    with run.dep.active(run.model) if run.dep else contextlib.nullcontext():
        parts, z = run.net(x, y)
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(parts["loss"]).backward()
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.scheduler.step()
    return parts, z


def epoch_row(run: Run, epoch: int, totals: EpochTotals, test: dict | None, val: dict | None) -> dict[str, Any]:
    """metrics.csv's row for `epoch` (counted from 0), its columns in their fixed order; an epoch
    that was not evaluated (`--eval-every`) has the same columns, its evaluations empty."""
    sums, top5 = totals.sums, run.info.num_classes >= TOP5_CLASSES
    test = test or not_evaluated(run)
    n = max(sums["seen"], 1.0)
    row = {"epoch": epoch + 1, "lr": run.optimizer.param_groups[0]["lr"]}
    row |= {f"train_{k}": sums[k] / n for k in totals.names}
    row["train_acc"] = sums["correct"] / n
    if top5:
        row["train_acc_top5"] = sums["correct_top5"] / n
    row |= {"test_loss": test["loss"], "test_acc": test["acc"]}
    if top5:
        row["test_acc_top5"] = test.get("acc_top5")
    row |= {f"test_acc_t{p['t']}": p["alone"] for p in test["per_timestep"]}
    if run.dep:
        row |= {"test_acc_float": test["acc_float"], "test_acc_qat_forward": test["acc_qat_forward"]}
    if run.val_loader is not None:
        row["val_acc"] = val["acc"] if val else None
    row["seconds"] = run.train_seconds
    row["train_batches"], row["train_step_seconds"] = totals.batches, totals.step_seconds
    return row


def not_evaluated(run: Run) -> dict[str, Any]:
    """An evaluation's entries, all None: the metrics of an epoch that `--eval-every` skipped."""
    T = run.inputs.timesteps if run.inputs.spiking else 1
    return {"loss": None, "acc": None, "acc_float": None, "acc_qat_forward": None,
            "per_timestep": [{"t": t + 1, "alone": None, "running_mean": None} for t in range(T)]}
