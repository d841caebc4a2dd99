"""A training step that never reads the device, the log a cluster user reads (one line every
--log-every steps off a terminal, top-5 from 100 classes), the loss checks, --eval-every and
--save-every (and resuming such a run)."""

from __future__ import annotations

import csv
import logging
import re

import pytest
import torch

from neurodistill.config import resolve
from neurodistill.data import DataOptions, load_dataset
from neurodistill.train import epoch as ep
from neurodistill.train import load_checkpoint, loop, model_from_checkpoint, tally, train
from neurodistill.train.evaluate import top5_correct

SMALL = {"model": "snn_digits", "epochs": 2, "limit_train_batches": 4, "batch_size": 32, "seed": 4}
STEP_LINE = re.compile(r"step (\d+)/(\d+) \(epoch (\d+)\)  loss (\S+)  lr (\S+)  (\d+) images/s  ETA (\d+:\d\d:\d\d)$")
TIME_COLUMNS = ("seconds", "train_step_seconds")


class _Killed(Exception):
    pass


def _rows(out):
    return list(csv.DictReader((out / "metrics.csv").read_text().splitlines()))


def _record_steps(monkeypatch) -> list[tuple[float, int]]:
    """(loss, batch size) of every training step, read after the step returns."""
    real, steps = ep.train_step, []

    def recorded(run, x, y):
        parts, z = real(run, x, y)
        steps.append((parts["loss"].item(), len(y)))
        return parts, z

    monkeypatch.setattr(ep, "train_step", recorded)
    return steps


@pytest.mark.parametrize("method,extra", [("none", {}), ("tser", {}), ("tssd", {}), ("esd", {}),
                                          ("kd", {"backprop": "rate"}), ("none", {"model": "ann_digits"})])
def test_a_training_step_never_reads_a_value_back(tmp_path, monkeypatch, digits_teacher, method, extra):
    """Inside the step and the tally, any read of a tensor's value on the host raises (on a GPU
    each would wait for the device): only the log interval and the epoch's end read."""
    inside = []
    for name in ("item", "tolist", "__bool__", "__float__", "__int__", "__index__"):
        real = getattr(torch.Tensor, name)

        def guarded(self, *a, _real=real, _name=name, **k):
            if inside:
                raise AssertionError(f"Tensor.{_name} inside a training step")
            return _real(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, guarded)

    def flagged(fn):
        def run(*a, **k):
            inside.append(1)
            try:
                return fn(*a, **k)
            finally:
                inside.pop()
        return run

    monkeypatch.setattr(ep, "train_step", flagged(ep.train_step))
    monkeypatch.setattr(tally.Tally, "add", flagged(tally.Tally.add))
    teacher = {"teacher": str(digits_teacher)} if method in ("kd", "tser") else {}
    train(resolve({**SMALL, "epochs": 1, "method": method, **teacher, **extra, "log_every": 2, "out": str(tmp_path)}, {}))
    assert len(_rows(tmp_path)) == 1


def test_one_line_every_n_steps_off_a_terminal(tmp_path, monkeypatch, caplog):
    """Lines at global steps 2, 4, 6, 8, 10 of 10 (epochs of 5): the step, the epoch, the mean loss
    of the steps since the previous line (or the epoch's start), the learning rate, images/s, ETA."""
    steps = _record_steps(monkeypatch)
    caplog.set_level(logging.INFO, logger="neurodistill")
    cfg = resolve({**SMALL, "limit_train_batches": 5, "log_every": 2, "schedule": "constant", "lr": 0.05,
                   "out": str(tmp_path)}, {})
    train(cfg)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step ")]
    parsed = [STEP_LINE.match(ln) for ln in lines]
    assert all(parsed) and len(parsed) == 5, lines
    assert [(int(m[1]), int(m[2]), int(m[3])) for m in parsed] == [(2, 10, 1), (4, 10, 1), (6, 10, 2), (8, 10, 2),
                                                                   (10, 10, 2)]
    windows = (steps[0:2], steps[2:4], steps[5:6], steps[6:8], steps[8:10])  # step 5 ends epoch 1 unlogged
    for m, window in zip(parsed, windows, strict=True):
        mean = sum(loss * n for loss, n in window) / sum(n for _, n in window)
        assert float(m[4]) == pytest.approx(mean, abs=1e-4)
        assert float(m[5]) == 0.05 and int(m[6]) > 0
    # the epoch line is still there, once per epoch, and no step line looks like one
    epochs = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch ")]
    assert [e.split()[1] for e in epochs] == ["1/2", "2/2"]


def test_eta_counts_down_to_zero(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="neurodistill")
    train(resolve({**SMALL, "log_every": 4, "out": str(tmp_path)}, {}))
    etas = [STEP_LINE.match(r.getMessage())[7] for r in caplog.records if r.getMessage().startswith("step ")]
    assert len(etas) == 2 and etas[-1] == "0:00:00"


def test_no_step_lines_with_a_bar_or_log_every_0(tmp_path, caplog, capsys):
    caplog.set_level(logging.INFO, logger="neurodistill")
    train(resolve({**SMALL, "log_every": 2, "out": str(tmp_path / "bar")}, {}), progress=True)
    assert "loss=" in capsys.readouterr().err  # the bar's postfix, updated at each interval
    train(resolve({**SMALL, "log_every": 0, "out": str(tmp_path / "quiet")}, {}))
    assert not [r for r in caplog.records if r.getMessage().startswith("step ")]


def test_negative_loss_is_warned_once(tmp_path, monkeypatch, caplog, digits_teacher):
    """tser with a large entropy weight: the same warning as ever, once, with the first negative
    step's loss when every step is looked at."""
    steps = _record_steps(monkeypatch)
    cfg = resolve({**SMALL, "method": "tser", "teacher": str(digits_teacher), "loss": {"lam": 5.0}, "lr": 0.5,
                   "log_every": 1, "out": str(tmp_path)}, {})
    train(cfg)
    warned = [r.getMessage() for r in caplog.records if "total loss is negative" in r.getMessage()]
    first = next(loss for loss, _ in steps if loss < 0)
    assert warned == [f"total loss is negative ({first:.4f}): the entropy weight lam=5 is too large (TSER says avoid this)"]


def test_no_loss_warning_for_a_healthy_run(tmp_path, caplog):
    train(resolve({**SMALL, "log_every": 1, "out": str(tmp_path)}, {}))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_non_finite_loss_is_warned_once_per_epoch(tmp_path, monkeypatch, caplog):
    real = ep.train_step
    count = []

    def poisoned(run, x, y):
        parts, z = real(run, x, y)
        count.append(1)
        if len(count) in (2, 3):  # two steps of epoch 1; epoch 2 is clean
            parts = {**parts, "loss": torch.full_like(parts["loss"], float("nan"))}
        return parts, z

    monkeypatch.setattr(ep, "train_step", poisoned)
    train(resolve({**SMALL, "log_every": 1, "out": str(tmp_path)}, {}))
    warned = [r.getMessage() for r in caplog.records if "not finite" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith("total loss is not finite (nan) in epoch 1: ")
    assert _rows(tmp_path)[0]["train_loss"] == "nan" and _rows(tmp_path)[1]["train_loss"] != "nan"


def test_top5_from_100_classes(tmp_path):
    """100 classes: train, test (and summary) top-5 accuracy; the test one equals top-5 counted by
    hand on the last weights. 10 classes: no top-5 anywhere."""
    data = {"synthetic_shape": [1, 8, 8], "synthetic_classes": 100, "synthetic_size": 256}
    cfg = resolve({**SMALL, "model": "ann_digits", "dataset": "synthetic", "data": data, "val_split": 0,
                   "out": str(tmp_path / "k100")}, {})
    summary = train(cfg)
    rows = _rows(tmp_path / "k100")
    assert {"train_acc_top5", "test_acc_top5"} <= set(rows[0])
    _, test_ds, _ = load_dataset("synthetic", None, DataOptions(**{**data, "synthetic_shape": (1, 8, 8)}))
    last = tmp_path / "k100" / "last.pt"
    model = model_from_checkpoint(load_checkpoint(last), last).eval()
    x = torch.stack([test_ds[i][0] for i in range(len(test_ds))])
    y = torch.tensor([int(test_ds[i][1]) for i in range(len(test_ds))])
    with torch.no_grad():
        z = model(x)
    by_hand = sum(int(y[i]) in z[i].topk(5).indices.tolist() for i in range(len(y))) / len(y)
    assert summary["test_acc_top5"] == pytest.approx(by_hand) and float(rows[-1]["test_acc_top5"]) == pytest.approx(by_hand)
    assert summary["test_acc_top5"] >= summary["test_acc"]
    assert 0 <= float(rows[-1]["train_acc_top5"]) <= 1
    ten = train(resolve({**SMALL, "epochs": 1, "out": str(tmp_path / "k10")}, {}))
    assert "test_acc_top5" not in ten and not [k for k in _rows(tmp_path / "k10")[0] if "top5" in k]


def test_top5_correct_by_hand():
    z = torch.tensor([[0.0, 1, 2, 3, 4, 5], [5, 4, 3, 2, 1, 0], [0, 9, 0, 0, 0, 0]])
    # row 0: label 0 is the smallest of 6 (not in the top 5); row 1: the largest; row 2: 2 ties at 0 for the 5th
    assert int(top5_correct(z, torch.tensor([0, 0, 1]))) == 2


def _saves(monkeypatch) -> list[tuple[str, int]]:
    real, saved = loop.save_checkpoint, []

    def recorded(path, payload):
        saved.append((path.name, payload["epoch"]))
        real(path, payload)

    monkeypatch.setattr(loop, "save_checkpoint", recorded)
    return saved


def test_eval_every_and_save_every_then_resume(tmp_path, monkeypatch):
    """5 epochs, --eval-every 2, --save-every 2: evaluated after epochs 2, 4, 5; last.pt after 2, 4, 5.
    Killed after epoch 3 (last.pt: epoch 2) and resumed, the run ends bit for bit as the whole one."""
    base = {**SMALL, "epochs": 5, "limit_train_batches": 2, "eval_every": 2, "save_every": 2}
    saved = _saves(monkeypatch)
    whole = train(resolve({**base, "out": str(tmp_path / "whole")}, {}))
    assert [e for name, e in saved if name == "last.pt"] == [2, 4, 5]
    assert {e for name, e in saved if name == "best.pt"} <= {2, 4, 5}
    rows = _rows(tmp_path / "whole")
    assert [r["epoch"] for r in rows] == ["1", "2", "3", "4", "5"]
    for r in rows:
        evaluated = r["epoch"] in ("2", "4", "5")
        assert all(bool(r[k]) == evaluated for k in ("test_acc", "test_loss", "val_acc", "test_acc_t1", "test_acc_t4")), r
        assert r["train_loss"] and r["train_acc"]
    assert whole["test_acc"] == float(rows[-1]["test_acc"])

    real_csv = loop.write_csv

    def die_after_epoch_3(path, history):
        real_csv(path, history)
        if len(history) == 3:
            raise _Killed

    monkeypatch.setattr(loop, "write_csv", die_after_epoch_3)
    with pytest.raises(_Killed):
        train(resolve({**base, "out": str(tmp_path / "killed")}, {}))
    assert load_checkpoint(tmp_path / "killed" / "last.pt")["epoch"] == 2
    monkeypatch.setattr(loop, "write_csv", real_csv)
    resumed = train(resolve({**base, "out": str(tmp_path / "killed")}, {}), resume=True)
    a, b = load_checkpoint(tmp_path / "whole" / "last.pt"), load_checkpoint(tmp_path / "killed" / "last.pt")
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    strip = [{k: v for k, v in r.items() if k not in TIME_COLUMNS} for r in rows]
    assert strip == [{k: v for k, v in r.items() if k not in TIME_COLUMNS} for r in _rows(tmp_path / "killed")]
    assert (resumed["test_acc"], resumed["best_epoch"]) == (whole["test_acc"], whole["best_epoch"])
