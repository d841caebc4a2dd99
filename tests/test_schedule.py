"""The learning rate is a function of the fraction of training done for the --epochs in force:
a stopped and resumed run steps with the uninterrupted run's learning rates, a run resumed with
more epochs follows the cosine that ends at its new last step (old checkpoints included), and
another world size is at the same point of the schedule after the same samples."""

from __future__ import annotations

import csv
import math

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from neurodistill.config import resolve
from neurodistill.train import train
from neurodistill.train.checkpoint import load_checkpoint, save_checkpoint
from neurodistill.train.schedule import Schedule

from .resume import kill_after_epoch_1_then_resume

# 4 steps an epoch; lr 0.1
SMALL = {"model": "snn_digits", "limit_train_batches": 4, "batch_size": 16, "val_split": 0.0, "device": "cpu",
         "timesteps": 2}


@pytest.fixture
def lrs():
    """The learning rate of every optimisation step taken while the test runs."""
    seen: list[float] = []
    handle = register_optimizer_step_pre_hook(
        lambda opt, args, kwargs: seen.append(opt.param_groups[0]["lr"]))
    yield seen
    handle.remove()


def _metrics_lr(out) -> list[float]:
    return [float(r["lr"]) for r in csv.DictReader((out / "metrics.csv").open())]


def _weights(path):
    return load_checkpoint(path)["state_dict"]


def test_a_stopped_and_resumed_run_steps_with_the_uninterrupted_runs_learning_rates(tmp_path, lrs, monkeypatch):
    train(resolve({**SMALL, "epochs": 3, "out": str(tmp_path / "a")}, {}))
    whole = list(lrs)
    # 12 steps of 0.05 (1 + cos(pi k / 12)), by hand: 0.1, then 0.075 (k=4), 0.05 (k=6), 0.025 (k=8)
    assert len(whole) == 12
    assert whole[0] == 0.1
    assert whole[4] == pytest.approx(0.075, abs=1e-15)
    assert whole[6] == pytest.approx(0.05, abs=1e-15)
    assert whole[8] == pytest.approx(0.025, abs=1e-15)
    assert all(a > b for a, b in zip(whole, whole[1:], strict=False))

    lrs.clear()
    kill_after_epoch_1_then_resume({**SMALL, "epochs": 3, "out": str(tmp_path / "b")}, monkeypatch)
    assert lrs == whole  # float for float
    assert _metrics_lr(tmp_path / "b") == _metrics_lr(tmp_path / "a")
    a, b = _weights(tmp_path / "a" / "last.pt"), _weights(tmp_path / "b" / "last.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def _old_style(last, lr: float, steps: int) -> None:
    """Rewrite `last` as the trainer before this schedule saved it: torch's CosineAnnealingLR state
    (T_max = the old run's steps, stepped to its end) and `initial_lr` in the optimizer's groups."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    for _ in range(steps):
        opt.step()
        sched.step()
    ckpt = load_checkpoint(last)
    ckpt["scheduler"] = sched.state_dict()
    for g in ckpt["optimizer"]["param_groups"]:
        g["initial_lr"], g["lr"] = lr, opt.param_groups[0]["lr"]
    save_checkpoint(last, {k: v for k, v in ckpt.items() if k not in ("format", "format_version", "neurodistill_version")})


@pytest.mark.parametrize("checkpoint", ["this version", "CosineAnnealingLR's (older versions)"])
def test_resuming_with_more_epochs_follows_the_cosine_to_the_new_end(tmp_path, lrs, checkpoint):
    out = tmp_path / "run"
    train(resolve({**SMALL, "epochs": 2, "out": str(out)}, {}))
    assert _metrics_lr(out)[-1] == 0.0  # the 2-epoch run ended its cosine
    if checkpoint != "this version":
        _old_style(out / "last.pt", 0.1, 8)
    lrs.clear()
    train(resolve({**SMALL, "epochs": 4, "out": str(out)}, {}), resume=True)
    # steps 8..15 of a 16-step cosine: 0.05 (1 + cos(pi k / 16)); k = 8 is half-way, 0.05 by hand
    assert lrs == pytest.approx([0.05 * (1 + math.cos(math.pi * k / 16)) for k in range(8, 16)], abs=1e-15)
    assert lrs[0] == pytest.approx(0.05, abs=1e-15)
    assert all(a > b for a, b in zip(lrs, lrs[1:], strict=False)) and lrs[-1] < 0.001
    assert _metrics_lr(out)[2:] == [pytest.approx(0.05 * (1 + math.cos(math.pi * 3 / 4)), abs=1e-15), 0.0]


def test_another_world_size_is_at_the_same_point_after_the_same_samples():
    """One process with 12 batches an epoch, or two with 6 each: after 1.5 of 4 epochs, the same lr."""
    def after(batches: int, steps: int) -> float:
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        s = Schedule(opt, "cosine", epochs=4, batches=batches)
        s.resume(1)  # the checkpoint finished one epoch (written by either)
        for _ in range(steps):
            s.step()
        return opt.param_groups[0]["lr"]

    one, two = after(12, 6), after(6, 3)
    assert one == two == pytest.approx(0.05 * (1 + math.cos(math.pi * 1.5 / 4)), abs=1e-15)


def test_constant_schedule_stays_at_lr_through_a_resume(tmp_path, lrs):
    out = tmp_path / "run"
    train(resolve({**SMALL, "epochs": 1, "schedule": "constant", "out": str(out)}, {}))
    train(resolve({**SMALL, "epochs": 2, "schedule": "constant", "out": str(out)}, {}), resume=True)
    assert lrs == [0.1] * 8
