"""Training on digits: accuracy bars, resume after SIGKILL, atomic checkpoints, torchrun (gloo)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from neurodistill.cli import main
from neurodistill.config import read_config_file, resolve
from neurodistill.data import DataOptions, load_dataset
from neurodistill.train import load_checkpoint, train
from neurodistill.train.checkpoint import atomic_write
from neurodistill.train.evaluate import step_correct

from .conftest import ROOT, run_cli


def test_digits_split_is_fixed_and_stratified():
    train_ds, test_ds, info = load_dataset("digits", None, DataOptions(augment=False))
    assert (len(train_ds), len(test_ds), info.num_classes, info.input_shape) == (1437, 360, 10, (1, 8, 8))
    counts = torch.bincount(test_ds.tensors[1], minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # 20% of each class
    again = load_dataset("digits", None, DataOptions(augment=False))[1]
    assert torch.equal(again.tensors[0], test_ds.tensors[0])


def test_step_correct_by_hand():
    logits = torch.tensor([[[2.0, 0.0], [0.0, 1.0]], [[0.0, 3.0], [0.0, 1.0]]])  # T=2, B=2, K=2
    alone, mean = step_correct(logits, torch.tensor([0, 1]))
    # step 1: both right; step 2: sample 0 wrong; running mean at 2: [1, 1.5] -> wrong, right
    assert alone.tolist() == [2, 1] and mean.tolist() == [2, 1]


@pytest.mark.slow
def test_demo_teacher_and_tser_student_reach_the_bar(tmp_path):
    """`neurodistill demo`: teacher >= 98%, tser student (T=4) >= 97% (its time: benchmarks/demo_time.py)."""
    res = CliRunner().invoke(main, ["demo", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    teacher = json.loads((tmp_path / "teacher" / "summary.json").read_text())
    student = json.loads((tmp_path / "student" / "summary.json").read_text())
    assert (teacher["model"], student["model"], student["method"], student["timesteps"]) == ("ann_digits", "snn_digits", "tser", 4)
    assert teacher["test_acc"] >= 0.98 and student["test_acc"] >= 0.97, (teacher["test_acc"], student["test_acc"])
    # the summary line's student accuracy is the exported checkpoint's (best.pt), not last.pt's
    assert (f"test accuracy {student['best_test_acc']:.4f} (best.pt, epoch {student['best_epoch']}, exported; "
            f"last.pt {student['test_acc']:.4f})") in res.output
    bundle = json.loads((tmp_path / "loihi2" / "manifest.json").read_text())
    assert bundle["source"] == str(tmp_path / "student" / "best.pt")
    assert abs(bundle["accuracy_quantized"] - bundle["accuracy_float"]) <= 0.01
    sim = json.loads((tmp_path / "simulation" / "simulation.json").read_text())
    assert sim["samples"] == 360 and sim["accuracy"] >= 0.97
    rep = json.loads((tmp_path / "report" / "report.json").read_text())
    assert rep["profiles"][0] == "cmos45-fp32" and (tmp_path / "report" / "energy_by_profile.png").is_file()
    # the files docs/design.md#the-files-each-stage-writes promises
    for f in ("last.pt", "best.pt", "config.yaml", "metrics.csv", "summary.json"):
        assert (tmp_path / "student" / f).is_file()
    for key in ("dataset", "model", "method", "timesteps", "epochs", "seed", "test_acc", "test_acc_per_timestep",
                "train_seconds", "peak_memory_bytes", "checkpoint"):
        assert key in student
    assert [p["t"] for p in student["test_acc_per_timestep"]] == [1, 2, 3, 4]
    assert student["test_acc_per_timestep"][-1]["running_mean"] == student["test_acc"]
    rows = list(csv.DictReader((tmp_path / "student" / "metrics.csv").open()))
    assert len(rows) == 30 and float(rows[-1]["test_acc"]) == pytest.approx(student["test_acc"])
    cfg = read_config_file(tmp_path / "student" / "config.yaml")
    assert resolve(cfg, {}).loss.alpha == 0.5  # the resolved config round-trips
    ckpt = torch.load(tmp_path / "student" / "best.pt", weights_only=True)  # plain tensors and Python only
    assert ckpt["model"]["name"] == "snn_digits" and ckpt["model"]["neuron"]["reset"] == "hard"


def test_checkpoints_load_with_weights_only(tmp_path):
    summary = train(resolve({"model": "snn_digits", "epochs": 1, "limit_train_batches": 3, "out": str(tmp_path)}, {}))
    for name in ("last.pt", "best.pt"):
        ckpt = torch.load(tmp_path / name, weights_only=True)
        assert set(ckpt) >= {"model", "state_dict", "optimizer", "scheduler", "rng", "epoch", "config"}
    assert summary["checkpoint"] == str(tmp_path / "last.pt")


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["state_dict"]


@pytest.mark.slow
def test_resume_after_sigkill_gives_the_same_weights(tmp_path):
    args = ["train", "--model", "snn_digits", "--method", "tet", "--epochs", "4", "--batch-size", "16", "--seed", "3"]
    full = run_cli(*args, "--out", str(tmp_path / "full"))
    assert full.returncode == 0, full.stderr

    run = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "neurodistill.cli", *args, "--out", str(run)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = run / "metrics.csv"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:  # header + 2 epochs
            break
        time.sleep(0.05)
    time.sleep(0.3)  # into epoch 3
    assert proc.poll() is None, "the run finished before it could be killed; make it longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = load_checkpoint(run / "last.pt")["epoch"]
    assert 2 <= killed_at < 4

    resumed = run_cli("train", "--resume", "--out", str(run))
    assert resumed.returncode == 0, resumed.stderr
    a, b = _weights(tmp_path / "full" / "last.pt"), _weights(run / "last.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    sa = json.loads((tmp_path / "full" / "summary.json").read_text())
    sb = json.loads((run / "summary.json").read_text())
    assert sa["test_acc"] == sb["test_acc"] and sa["test_acc_per_timestep"] == sb["test_acc_per_timestep"]
    assert len((run / "metrics.csv").read_text().splitlines()) == 5


def test_atomic_write_survives_a_kill_mid_write(tmp_path):
    """A process killed while writing leaves the previous file intact (and only a temp file)."""
    target = tmp_path / "last.pt"
    torch.save({"epoch": 1}, target)
    code = (
        "import os, signal, sys\n"
        "from neurodistill.train.checkpoint import atomic_write\n"
        "def write(tmp):\n"
        "    with open(tmp, 'wb') as f:\n"
        "        f.write(b'PK half a checkpoint'); f.flush()\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        f"atomic_write({str(target)!r}, write)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT)
    assert proc.returncode == -signal.SIGKILL
    assert torch.load(target, weights_only=True) == {"epoch": 1}
    assert len(list(tmp_path.glob(".last.pt.*.tmp"))) == 1


def test_random_kills_never_leave_a_corrupt_last_pt(tmp_path):
    """Kill a run that checkpoints a large model back to back, at several moments."""
    run = tmp_path / "run"
    args = ["train", "--model", "snn_resnet18", "--dataset", "synthetic", "--synthetic-shape", "3,8,8", "--synthetic-size", "4",
            "--batch-size", "4", "--timesteps", "1", "--epochs", "1000", "--out", str(run)]
    for i, delay in enumerate((0.4, 0.9, 1.7)):
        flags = ["--resume"] if (run / "last.pt").exists() else []
        proc = subprocess.Popen([sys.executable, "-m", "neurodistill.cli", *args, *flags],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        start = time.time()
        while not (run / "last.pt").exists() and time.time() - start < 120:
            time.sleep(0.02)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        ckpt = load_checkpoint(run / "last.pt")  # raises CheckpointError if corrupt
        assert ckpt["epoch"] >= 1, i


def test_atomic_write_cleans_up_on_error(tmp_path):
    def boom(tmp):
        Path(tmp).write_text("partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "x.json", boom)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_torchrun_two_processes_gloo_then_resume_alone(tmp_path, digits_teacher):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "neurodistill.cli",
           "train", "--model", "snn_digits", "--method", "tser", "--teacher", str(digits_teacher), "--epochs", "30",
           "--device", "cpu", "--out", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["test_acc"] >= 0.97, summary["test_acc"]
    # one report per run, not one per rank: rank 0 alone logs epochs and prints the summary line
    assert res.stdout.count("test accuracy") == 1, res.stdout
    assert res.stderr.count("epoch 30/30 ") == 1, res.stderr[-3000:]
    # Rank 0 wrote one checkpoint; a single process resumes it (nothing left to train: it
    # evaluates on the whole test set and must agree with the reduced DDP evaluation).
    alone = run_cli("train", "--resume", "--device", "cpu", "--out", str(out))
    assert alone.returncode == 0, alone.stderr
    s1 = json.loads((out / "summary.json").read_text())
    assert s1["world_size"] == 1 and s1["test_acc"] == summary["test_acc"]
    more = run_cli("train", "--resume", "--epochs", "31", "--device", "cpu", "--out", str(out))
    assert more.returncode == 0, more.stderr
    assert load_checkpoint(out / "last.pt")["epoch"] == 31


def test_adamw_constant_schedule_and_tensorboard(tmp_path):
    cfg = resolve({"model": "snn_digits", "epochs": 2, "limit_train_batches": 2, "optimizer": "adamw", "lr": 1e-3,
                   "schedule": "constant", "tensorboard": True, "out": str(tmp_path)}, {})
    train(cfg)
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert "exp_avg" in next(iter(ckpt["optimizer"]["state"].values()))  # AdamW's state
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert [float(r["lr"]) for r in rows] == [1e-3, 1e-3]
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


def test_training_time_per_batch_is_recorded(tmp_path):
    """summary.json's train_seconds_per_batch is the optimisation steps' time over the batches run
    (metrics.csv per epoch), positive, and less than the whole epoch time (which adds evaluation)."""
    summary = train(resolve({"model": "snn_digits", "epochs": 2, "limit_train_batches": 3, "out": str(tmp_path)}, {}))
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert [int(r["train_batches"]) for r in rows] == [3, 3] and summary["train_batches"] == 6
    steps = sum(float(r["train_step_seconds"]) for r in rows)
    assert summary["train_seconds_per_batch"] == pytest.approx(steps / 6)
    assert 0 < steps < summary["train_seconds"] and summary["batch_size"] == 64
    assert json.loads((tmp_path / "summary.json").read_text())["train_seconds_per_batch"] == summary["train_seconds_per_batch"]
