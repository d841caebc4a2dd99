"""One training epoch: its optimisation steps, and the metrics row it adds to metrics.csv."""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import torch

from .. import distributed
from ..progress import progress as progress_bar
from .inputs import data_loader
from .state import Run

log = logging.getLogger(__name__)
LOSS_PARTS = ("loss", "task", "distill", "reg", "ce", "kl", "entropy")


def train_epoch(run: Run, epoch: int, progress: bool) -> tuple[list[str], torch.Tensor, int, float]:
    """The epoch's steps: (loss part names, their sums then correct and seen over every rank,
    batches run here, seconds the steps took)."""
    cfg, d = run.cfg, run.d
    run.net.train()
    parts_sum: dict[str, float] = {}  # loss parts x samples; the method decides which parts beyond LOSS_PARTS
    correct = seen = 0
    loader = data_loader(run.train_ds, cfg, d, train=True, epoch=epoch)
    bar = progress_bar(loader, run.batches, f"epoch {epoch + 1}/{cfg.epochs}", progress and d.main)
    # Training time per batch (TSER's Table 4 column): the optimisation steps alone, data loading
    # included, evaluation and checkpointing excluded. Each step calls .item(), which waits for
    # the device, so wall time here is the device's time too.
    t_steps, n_batches = time.perf_counter(), 0
    for i, (x, y) in enumerate(bar):
        if cfg.limit_train_batches and i >= cfg.limit_train_batches:
            break
        n_batches += 1
        x, y = x.to(run.device, non_blocking=True), y.to(run.device, non_blocking=True)
        parts, z = train_step(run, x, y)
        with torch.no_grad():
            for k, v in parts.items():
                parts_sum[k] = parts_sum.get(k, 0.0) + v.item() * len(y)
            correct += (z.mean(0).argmax(-1) == y).sum().item()
            seen += len(y)
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{parts['loss'].item():.3f}")
    step_seconds = time.perf_counter() - t_steps
    names = [*LOSS_PARTS, *sorted(set(parts_sum) - set(LOSS_PARTS))]
    sums = torch.tensor([parts_sum.get(k, 0.0) for k in names] + [correct, seen], dtype=torch.float64)
    return names, distributed.reduce_sum(d, sums), n_batches, step_seconds


def train_step(run: Run, x: torch.Tensor, y: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One optimisation step on a batch already on the device: the loss parts and the outputs."""
    with run.dep.active(run.model) if run.dep else contextlib.nullcontext():
        parts, z = run.net(x, y)
    if parts["loss"].item() < 0 and not run.warned_negative:
        log.warning("total loss is negative (%.4f): the entropy weight lam=%g is too large (TSER says avoid this)",
                    parts["loss"].item(), run.cfg.loss.lam)
        run.warned_negative = True
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(parts["loss"]).backward()
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.scheduler.step()
    return parts, z


def epoch_row(run: Run, epoch: int, names: list[str], sums: torch.Tensor, test: dict, val: dict | None,
              n_batches: int, step_seconds: float) -> dict[str, Any]:
    """metrics.csv's row for `epoch` (counted from 0), its columns in their fixed order."""
    n = max(sums[-1].item(), 1.0)
    row = {"epoch": epoch + 1, "lr": run.optimizer.param_groups[0]["lr"]}
    row |= {f"train_{k}": sums[j].item() / n for j, k in enumerate(names)}
    row |= {"train_acc": sums[-2].item() / n, "test_loss": test["loss"], "test_acc": test["acc"]}
    row |= {f"test_acc_t{p['t']}": p["alone"] for p in test["per_timestep"]}
    if run.dep:
        row |= {"test_acc_float": test["acc_float"], "test_acc_qat_forward": test["acc_qat_forward"]}
    if val is not None:
        row["val_acc"] = val["acc"]
    row["seconds"] = run.train_seconds
    row["train_batches"], row["train_step_seconds"] = n_batches, step_seconds
    return row
