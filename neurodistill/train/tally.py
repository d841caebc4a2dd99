"""What an epoch's steps add up, kept on the device, and the one look at it per log interval.

A step that read its loss (`.item()`) would wait for the device every step, and a GPU would idle
while the host queues the next one. So the loss parts, correct counts and the lowest loss stay on
the device (`Tally`), and `StepReport` reads them once every `--log-every` steps: the loss checks
run there, and rank 0 writes one line (off a terminal) or updates the bar (on one). Loss parts add
up in float64 in the order Python's floats used to, so a CPU run's metrics are bit for bit the same.
"""

from __future__ import annotations

import datetime
import logging
import math
import time
from typing import Any

import torch

from .evaluate import top5_correct

log = logging.getLogger(__name__)


class Tally:
    """The epoch's sums on the device: each loss part x the batch's samples, correct predictions
    (and top-5 ones with `top5`), and the lowest total loss of any step."""

    def __init__(self, device: torch.device, top5: bool) -> None:
        self.device, self.top5 = device, top5
        self.names: list[str] = []  # the method's loss parts, fixed by its first step
        self.parts: torch.Tensor | None = None
        self.correct = torch.zeros(2, dtype=torch.int64, device=device)  # top-1, top-5
        self.low = torch.full((), math.inf, device=device)
        self.seen = 0  # samples, known on the host

    @torch.no_grad()
    def add(self, parts: dict[str, torch.Tensor], z: torch.Tensor, y: torch.Tensor) -> None:
        if self.parts is None:
            self.names = list(parts)
            self.parts = torch.zeros(len(self.names), dtype=torch.float64, device=self.device)
        self.parts += torch.stack([parts[k].detach().double() for k in self.names]) * len(y)
        pred = z.mean(0)
        self.correct[0] += (pred.argmax(-1) == y).sum()
        if self.top5:
            self.correct[1] += top5_correct(pred, y)
        self.low = torch.minimum(self.low, parts["loss"].detach().float())
        self.seen += len(y)

    def read(self) -> dict[str, float]:
        """Every sum, as Python floats: the one wait for the device."""
        if self.parts is None:
            return {"correct": 0.0, "correct_top5": 0.0, "low": math.inf}
        values = torch.cat([self.parts, self.correct.double(), self.low.double().view(1)]).tolist()
        return dict(zip([*self.names, "correct", "correct_top5", "low"], values, strict=True))


class Clock:
    """The steps this process has run since it started training, and how long they took (for ETA)."""

    def __init__(self, first_step: int) -> None:
        self.first_step, self.t0 = first_step, time.perf_counter()


class StepReport:
    """Every `log_every`-th step of the run (rank 0): read the tally, check the loss, report."""

    def __init__(self, run, epoch: int, bar, clock: Clock) -> None:
        self.run, self.epoch, self.bar, self.clock = run, epoch, bar, clock
        self.every = run.cfg.log_every if run.d.main else 0
        self.total = run.batches * run.cfg.epochs
        self.before = epoch * run.batches  # steps of the epochs before this one
        self.t_last, self.seen_last, self.loss_last = time.perf_counter(), 0, 0.0
        self.warned_nonfinite = False

    def after(self, i: int, tally: Tally) -> None:
        """After the epoch's step `i` (from 0)."""
        step = self.before + i + 1
        if not self.every or step % self.every:
            return
        sums = tally.read()
        self.check(sums)
        now = time.perf_counter()
        n = tally.seen - self.seen_last
        loss = (sums["loss"] - self.loss_last) / max(n, 1)
        if hasattr(self.bar, "set_postfix"):
            self.bar.set_postfix(loss=f"{loss:.3f}")
        else:
            lr = self.run.optimizer.param_groups[0]["lr"]
            rate = n * self.run.d.world / max(now - self.t_last, 1e-9)
            left = (self.total - step) * (now - self.clock.t0) / max(step - self.clock.first_step, 1)
            log.info("step %d/%d (epoch %d)  loss %.4f  lr %.4g  %.0f images/s  ETA %s", step, self.total,
                     self.epoch + 1, loss, lr, rate, datetime.timedelta(seconds=round(left)))
        self.t_last, self.seen_last, self.loss_last = now, tally.seen, sums["loss"]

    def check(self, sums: dict[str, Any]) -> None:
        """The loss checks: a negative total (tser's entropy weight too large) once per run, a
        non-finite one (a diverging run) once per epoch."""
        run = self.run
        if sums["low"] < 0 and not run.warned_negative:
            log.warning("total loss is negative (%.4f): the entropy weight lam=%g is too large (TSER says avoid this)",
                        sums["low"], run.cfg.loss.lam)
            run.warned_negative = True
        if not math.isfinite(sums.get("loss", 0.0)) and not self.warned_nonfinite:
            log.warning("total loss is not finite (%s) in epoch %d: training diverges (lower --lr?); with fp16 AMP "
                        "the gradient scaler skips such steps", sums["loss"], self.epoch + 1)
            self.warned_nonfinite = True
