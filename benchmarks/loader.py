"""Does a training step wait for data? Images/s of the CIFAR training pipeline against the step's.

The pipeline is the trainer's own: CIFAR-10 files in the official python format (random images,
written to a temporary folder here), random crop + flip, AutoAugment (CIFAR-10 policy) and
Cutout 16, through `TrainSamples`, the run's one loader with its per-sample seeds, at batch 64
and 0, 1, 2 worker processes; the images/s of the fastest of 3 epochs after a warm-up epoch
(which starts the persistent workers), since other load on a shared machine only ever slows one
down. A plain torch DataLoader over the same data set at 0 workers, without the per-sample
seeds, shows what they cost. The step is train_step.py's: one BPTT step (loss none, SGD) of a
spiking ResNet-18 at 32x32, batch 64, T = 4, on the CPU, in a fresh subprocess, the fastest of
the timed steps after a warm-up step.

`ratio` = loader images/s / step images/s: above 1 the loader keeps up (with workers, loading
runs beside the step); with 0 workers loading runs in series with the step, and `wait` is the
share of each step's time spent loading. `--workers auto`, the default, is 0 on a CPU.

    python benchmarks/loader.py [--images 2560] [--batch 64] [--timesteps 4] [--steps 2]

Prints a table and writes benchmarks/results/loader.json.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_step import machine, measure_step, write_result  # noqa: E402

WORKERS = (0, 1, 2)
EPOCHS = 3  # timed epochs per loader, after the warm-up one


def write_cifar10(root: Path, images: int) -> None:
    """CIFAR-10's python-version layout with `images` random training images (and a small test batch)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    per = -(-images // 5)
    for i in range(1, 6):
        n = min(per, images - per * (i - 1))
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": [int(v) for v in rng.integers(0, 10, n)]}
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch, protocol=2))
    test = {b"data": rng.integers(0, 256, (10, 3072), dtype=np.uint8), b"labels": list(range(10))}
    (folder / "test_batch").write_bytes(pickle.dumps(test, protocol=2))


def images_per_s(loader, epoch_of) -> float:
    """Images/s of the fastest of EPOCHS passes over `loader`, after a warm-up pass."""
    for _ in epoch_of(0):
        pass
    best = 0.0
    for epoch in range(1, EPOCHS + 1):
        t0, n = time.perf_counter(), 0
        for x, _ in epoch_of(epoch):
            n += len(x)
        best = max(best, n / (time.perf_counter() - t0))
    return best


def measure_loader(root: Path, batch: int) -> list[dict]:
    from torch.utils.data import DataLoader

    from neurodistill.config import TrainConfig
    from neurodistill.data import DataOptions, load_dataset
    from neurodistill.distributed import Dist
    from neurodistill.train.loaders import TrainSamples, resolve_workers

    opts = DataOptions(augment=True, autoaugment=True, cutout=16)
    train_ds, _, _ = load_dataset("cifar10", root, opts)
    default = resolve_workers("auto", "cpu")
    rows = []
    for w in WORKERS:
        samples = TrainSamples(train_ds, TrainConfig(workers=w, batch_size=batch), Dist(), "cpu")
        ips = images_per_s(samples.loader, samples.epoch)
        samples.close()
        rows.append({"loader": "TrainSamples", "workers": w, "default": w == default, "images_per_s": ips})
        print(f"  loader, {w} workers: {ips:,.0f} images/s", flush=True)
    plain = DataLoader(train_ds, batch_size=batch, shuffle=True)
    rows.append({"loader": "plain DataLoader, no per-sample seeds", "workers": 0, "default": False,
                 "images_per_s": images_per_s(plain, lambda e: plain)})
    return rows


def step_here(batch: int, T: int, steps: int) -> dict:
    """train_step.py's BPTT step, measured in this process (called in a fresh subprocess)."""
    import torch

    from neurodistill.config import TrainConfig
    from neurodistill.distill.losses import LossConfig, loss_none
    from neurodistill.models import create_model
    from neurodistill.train.loop import build_optimizer, seed_everything

    seed_everything(0)
    net = create_model("snn_resnet18", num_classes=10, in_channels=3)
    opt = build_optimizer(net, TrainConfig(optimizer="sgd", lr=0.1))
    x, y = torch.rand(T, batch, 3, 32, 32), torch.randint(0, 10, (batch,))

    def step():
        loss = loss_none(net(x), y, LossConfig())["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    m = measure_step(step, torch.device("cpu"), steps)
    seconds = min(m["step_seconds"])
    return {"model": "snn_resnet18", "timesteps": T, "batch": batch, "device": "cpu", "step_seconds": m["step_seconds"],
            "seconds_per_step": seconds, "images_per_s": batch / seconds}


def step_in_subprocess(batch: int, T: int, steps: int) -> dict:
    cmd = [sys.executable, __file__, "--step-here", "--batch", str(batch), "--timesteps", str(T), "--steps", str(steps)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2560, help="training images generated")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--timesteps", type=int, default=4, help="T of the training step")
    ap.add_argument("--steps", type=int, default=2, help="timed training steps after one warm-up step")
    ap.add_argument("--step-here", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.step_here:
        print(json.dumps(step_here(args.batch, args.timesteps, args.steps)))
        return 0
    load_before = os.getloadavg()  # a shared machine: the load says how far to trust the numbers
    with tempfile.TemporaryDirectory() as tmp:
        write_cifar10(Path(tmp), args.images)
        rows = measure_loader(Path(tmp), args.batch)
    step = step_in_subprocess(args.batch, args.timesteps, args.steps)
    step_ips = step["images_per_s"]
    print(f"\nCIFAR pipeline (crop + flip, AutoAugment, Cutout 16), batch {args.batch}, against a spiking ResNet-18 "
          f"BPTT step, T={args.timesteps}: {step_ips:.1f} images/s")
    print(f"{'loader':<38} {'workers':>7} {'images/s':>9} {'ratio':>7} {'wait':>6}")
    for r in rows:
        r["ratio"] = r["images_per_s"] / step_ips
        # in series (0 workers): loading time over loading + step time
        r["wait"] = (1 / r["images_per_s"]) / (1 / r["images_per_s"] + 1 / step_ips) if r["workers"] == 0 else None
        wait = f"{100 * r['wait']:>5.1f}%" if r["wait"] is not None else f"{'-':>6}"
        name = r["loader"] + (" (default)" if r["default"] else "")
        print(f"{name:<38} {r['workers']:>7} {r['images_per_s']:>9,.0f} {r['ratio']:>7.1f} {wait}")
    print(f"load average (1 min) before {load_before[0]:.1f}, after {os.getloadavg()[0]:.1f}, on {os.cpu_count()} cores")
    from neurodistill.train.loaders import resolve_workers

    out = {"benchmark": "loader", "machine": machine(), "images": args.images, "batch": args.batch,
           "pipeline": "RandomCrop(32, 4) + flip, AutoAugment CIFAR10 policy, ToTensor, Normalize, Cutout 16",
           "workers_auto": {"cpu": resolve_workers("auto", "cpu"), "cuda": resolve_workers("auto", "cuda")},
           "load_average_1_5_15min": {"before": load_before, "after": os.getloadavg()}, "step": step, "results": rows}
    write_result("loader.json", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
