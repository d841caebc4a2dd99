"""The training loader: `--workers auto`, pinned memory and persistent workers, one loader per run,
today's per-epoch order, per-sample augmentation seeds (the same training for any number of
workers, different draws on every rank and worker), and two gloo ranks that augment differently
and still resume bit for bit."""

from __future__ import annotations

import csv
import multiprocessing
import os
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner
from torch.utils.data import DataLoader, Dataset, RandomSampler, TensorDataset, get_worker_info

from neurodistill.cli import main
from neurodistill.config import resolve
from neurodistill.data.digits import RandomShift, digits_arrays
from neurodistill.distributed import Dist
from neurodistill.errors import ConfigError
from neurodistill.train import loaders, train
from neurodistill.train.checkpoint import load_checkpoint
from neurodistill.train.loaders import EpochOrder, SeededSamples, TrainSamples, resolve_workers

from .conftest import ROOT

SMALL = {"model": "snn_digits", "epochs": 2, "limit_train_batches": 3, "batch_size": 16, "val_split": 0.0,
         "device": "cpu", "timesteps": 2}


def _one_image(n: int = 64) -> RandomShift:
    """n copies of one digit, shifted at random: samples differ by their augmentation alone."""
    x, y, _, _ = digits_arrays()
    return RandomShift(x[:1].repeat(n, 1, 1, 1), y[:1].repeat(n))


@pytest.mark.parametrize("device,cores,local_world,want", [
    ("cpu", 64, "1", 0),  # a CPU step uses every core itself and is far slower than loading
    ("cuda", 16, "2", 7),  # 8 cores per rank, one left to the rank's own process
    ("cuda", 64, "1", 8),  # capped
    ("cuda", 2, "1", 1),
    ("cuda", 8, "8", 1),  # at least one
])
def test_workers_auto(monkeypatch, device, cores, local_world, want):
    monkeypatch.setattr(loaders, "cores", lambda: cores)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", local_world)
    assert resolve_workers("auto", device) == want
    assert resolve_workers(3, device) == 3


def test_workers_option_and_config(tmp_path):
    assert resolve({}, {}).workers == "auto"
    assert resolve({"workers": 4}, {}).workers == 4
    for bad in ("many", -1, 257):
        with pytest.raises(ConfigError, match="workers = .* allowed: auto, or an integer from 0 to 256"):
            resolve({"workers": bad}, {})
    res = CliRunner().invoke(main, ["train", "--workers", "x", "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert [ln for ln in res.stderr.splitlines() if ln.startswith("error:")] == [
        "error: --workers 'x' is neither auto nor an integer (e.g. --workers 8)"]
    assert not (tmp_path / "r").exists()


def test_loader_settings_per_device():
    ds = TensorDataset(torch.zeros(10, 1), torch.zeros(10))
    cuda = TrainSamples(ds, resolve({"workers": 2}, {}), Dist(), "cuda").loader
    assert (cuda.num_workers, cuda.pin_memory, cuda.persistent_workers, cuda.prefetch_factor) == (2, True, True, 4)
    cpu = TrainSamples(ds, resolve({}, {}), Dist(), "cpu").loader
    assert (cpu.num_workers, cpu.pin_memory, cpu.persistent_workers) == (0, False, False)


def test_epoch_order_is_the_one_training_always_had():
    ds = TensorDataset(torch.arange(50))
    order = EpochOrder(ds, 3, Dist())
    for epoch in (0, 1, 7):
        order.set_epoch(epoch)
        # the sampler every run used before there was one loader per run
        before = RandomSampler(ds, generator=torch.Generator().manual_seed(3 * 100_003 + epoch))
        assert list(order) == [(epoch, i) for i in before]


def test_one_training_loader_per_run(tmp_path, monkeypatch):
    made: list[DataLoader] = []
    init = DataLoader.__init__

    def counting(self, *args, **kwargs):
        made.append(self)
        init(self, *args, **kwargs)

    monkeypatch.setattr(DataLoader, "__init__", counting)
    train(resolve({**SMALL, "epochs": 3, "out": str(tmp_path)}, {}))
    assert len(made) == 2  # one training loader for the three epochs, one test loader


def test_training_is_the_same_for_any_number_of_workers(tmp_path):
    """Per-sample seeds: 0 and 2 worker processes draw the same augmentations, bit for bit; the
    persistent workers are gone when train() returns."""
    train(resolve({**SMALL, "workers": 0, "out": str(tmp_path / "w0")}, {}))
    train(resolve({**SMALL, "workers": 2, "out": str(tmp_path / "w2")}, {}))
    assert multiprocessing.active_children() == []
    a, b = (load_checkpoint(tmp_path / w / "last.pt")["state_dict"] for w in ("w0", "w2"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_drawing_a_sample_leaves_the_process_rngs_alone():
    samples = SeededSamples(_one_image(), seed=0, rank=0)
    before = torch.get_rng_state()
    first = samples[(0, 5)][0]
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(samples[(0, 5)][0], first)  # a key always draws the same augmentation


def test_ranks_epochs_and_samples_draw_different_augmentations():
    r0, r1 = SeededSamples(_one_image(), 0, rank=0), SeededSamples(_one_image(), 0, rank=1)
    x0 = torch.stack([r0[(0, i)][0] for i in range(32)])
    assert not torch.equal(x0, torch.stack([r1[(0, i)][0] for i in range(32)]))  # per rank
    assert not torch.equal(x0, torch.stack([r0[(1, i)][0] for i in range(32)]))  # per epoch
    assert len({tuple(x.flatten().tolist()) for x in x0}) > 1  # per sample: 9 shifts, 32 draws


class _WorkerSeed(Dataset):
    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> int:
        return get_worker_info().seed


def test_worker_seeds_differ_per_rank_and_per_worker():
    seeds = set()
    for rank in (0, 1):
        samples = TrainSamples(_WorkerSeed(), resolve({"workers": 2, "batch_size": 1}, {}), Dist(rank, 2), "cpu")
        seeds |= {int(s) for s in samples.epoch(0)}
        samples.close()
    assert len(seeds) == 4


def _torchrun(record: str, *args: str, kill_after: int = 0) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(ROOT / "tests" / "ddp_one_image.py"), record, "train", "--model", "snn_digits", "--dataset", "one-image",
           "--batch-size", "16", "--limit-train-batches", "2", "--val-split", "0", "--timesteps", "2",
           "--device", "cpu", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "KILL_AFTER_EPOCH": str(kill_after or "")}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert (res.returncode != 0) == bool(kill_after), res.stderr[:3000] + res.stderr[-3000:]


@pytest.mark.slow
def test_two_gloo_ranks_augment_differently_and_resume_bit_identically(tmp_path):
    record = tmp_path / "drawn"
    record.mkdir()
    _torchrun(str(record), "--epochs", "2", "--workers", "0", "--out", str(tmp_path / "whole"))
    rank0, rank1 = torch.load(record / "drawn-rank0.pt"), torch.load(record / "drawn-rank1.pt")
    # every training sample is the same image: the first batches differ by augmentation alone
    assert rank0.shape == rank1.shape and len(rank0) >= 2 * 2 * 16
    assert not torch.equal(rank0[:16], rank1[:16])
    # killed right after epoch 1's checkpoint, resumed; with a worker process per rank this time
    _torchrun("-", "--epochs", "2", "--workers", "1", "--out", str(tmp_path / "resumed"), kill_after=1)
    assert load_checkpoint(tmp_path / "resumed" / "last.pt")["epoch"] == 1
    _torchrun("-", "--epochs", "2", "--workers", "1", "--resume", "--out", str(tmp_path / "resumed"))
    a, b = (load_checkpoint(tmp_path / r / "last.pt") for r in ("whole", "resumed"))
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    lr = [[float(r["lr"]) for r in csv.DictReader((tmp_path / r / "metrics.csv").open())] for r in ("whole", "resumed")]
    assert lr[0] == lr[1] == [pytest.approx(0.05, abs=1e-15), 0.0]
