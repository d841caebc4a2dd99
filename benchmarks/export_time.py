"""Seconds to export ResNet-19 (CIFAR shape 3x32x32, random weights) to each target, on this machine.

    python benchmarks/export_time.py [--model snn_resnet19] [--calib 16] [--timesteps 2]

Prints a table and writes benchmarks/results/export_time.json. The loihi2 export plans three
chips (`--chips 3`): ResNet-19 at 32x32 has about 1.4 M neurons, more than one Loihi 2 chip holds.
The goal of issue 3: all three targets together in <= 30 s on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_step import machine, write_result  # noqa: E402


def make_checkpoint(model_name: str, timesteps: int, path: Path) -> None:
    import torch

    from neurodistill.config import resolve
    from neurodistill.models import create_model
    from neurodistill.train.checkpoint import save_checkpoint

    torch.manual_seed(0)
    cfg = resolve({"model": model_name, "dataset": "synthetic", "timesteps": timesteps,
                   "data": {"synthetic_shape": [3, 32, 32], "synthetic_size": 64}}, {})
    model = create_model(model_name, 10, 3, cfg.neuron)
    save_checkpoint(path, {
        "model": {"name": model_name, "num_classes": 10, "in_channels": 3, "spiking": True, "neuron": cfg.neuron.to_dict()},
        "state_dict": model.state_dict(), "config": cfg.to_dict(),
        "dataset": {"name": "synthetic", "num_classes": 10, "input_shape": [3, 32, 32], "frames": None},
    })


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="snn_resnet19")
    ap.add_argument("--calib", type=int, default=16)
    ap.add_argument("--timesteps", type=int, default=2)
    args = ap.parse_args()
    from neurodistill.export import bundle

    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        ckpt = tmp / "random.pt"
        make_checkpoint(args.model, args.timesteps, ckpt)
        jobs = {
            "loihi2": lambda: bundle.export_loihi2(ckpt, tmp / "loihi2", calib=args.calib, chips=3),
            "nir": lambda: bundle.export_nir(ckpt, tmp / "nir", timesteps=args.timesteps),
            "onnx": lambda: bundle.export_onnx(ckpt, tmp / "onnx", timesteps=args.timesteps),
        }
        for target, job in jobs.items():
            t0 = time.perf_counter()
            job()
            seconds = time.perf_counter() - t0
            size = sum(f.stat().st_size for f in (tmp / target).iterdir())
            rows.append({"target": target, "seconds": seconds, "bytes": size})
            print(f"{target:<7} {seconds:7.2f} s  {size / 2**20:8.1f} MiB")
    total = sum(r["seconds"] for r in rows)
    print(f"{'total':<7} {total:7.2f} s  (goal <= 30 s)")
    out = {"benchmark": "export_time", "model": args.model, "input_shape": [3, 32, 32], "timesteps": args.timesteps,
           "calibration_samples": args.calib, "machine": machine(), "results": rows, "total_seconds": total,
           "goal_seconds": 30}
    write_result("export_time.json", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
