"""Images/s and peak memory of one BPTT training step: spiking ResNet-18, 32x32, T = 1, 2, 4, 8.

Each configuration runs in a fresh subprocess, so the CPU's peak resident memory belongs to
that configuration alone; `step_peak_bytes` is the peak minus the resident memory just before
the first step (model and batch allocated; the optimizer state comes with the first step). On CUDA the numbers are
torch.cuda.max_memory_allocated, and every spikingjelly neuron backend is measured.

    python benchmarks/train_step.py [--batch 16] [--steps 3] [--timesteps 1 2 4 8]

Prints a table and writes benchmarks/results/train_step-<device>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def one(model: str, T: int, batch: int, steps: int, device: str, backend: str) -> dict:
    """Measure in this process (called in a fresh subprocess)."""
    import torch

    from neurodistill.config import TrainConfig
    from neurodistill.distill.losses import LossConfig, loss_none
    from neurodistill.models import create_model, select_backend
    from neurodistill.train.loop import build_optimizer, seed_everything

    seed_everything(0)
    select_backend(backend)
    dev = torch.device(device)
    net = create_model(model, num_classes=10, in_channels=3).to(dev)
    opt = build_optimizer(net, TrainConfig(optimizer="sgd", lr=0.1))
    x = torch.rand(T, batch, 3, 32, 32, device=dev)
    y = torch.randint(0, 10, (batch,), device=dev)

    def step():
        loss = loss_none(net(x), y, LossConfig())["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    m = measure_step(step, dev, steps)
    seconds = sum(m["step_seconds"]) / steps
    return {"model": model, "timesteps": T, "batch": batch, "device": device, "backend": backend,
            "seconds_per_step": seconds, "images_per_s": batch / seconds,
            **{k: v for k, v in m.items() if k != "step_seconds"}}


def measure_step(step, dev, steps: int) -> dict:
    """Time `steps` calls of a training step after one warm-up, and its peak memory: process peak RSS
    (CPU) or torch's peak allocation (CUDA), and that peak minus the memory held before the first
    step (model and batch allocated), which so includes the optimizer state the first step makes."""
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _rss_now()
    step()  # warm-up: allocator, kernels, optimizer state
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    if dev.type == "cuda":
        peak, kind = torch.cuda.max_memory_allocated(), "cuda_max_memory_allocated"
    else:
        peak, kind = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "process_max_rss"
    return {"step_seconds": times, "peak_memory_bytes": int(peak), "step_peak_bytes": int(peak - base),
            "memory_kind": kind}


def write_result(name: str, payload: dict) -> Path:
    """benchmarks/results/NAME as indented JSON, with the date; shared by every benchmark script."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps({**payload, "date": time.strftime("%Y-%m-%d")}, indent=2) + "\n")
    print(f"wrote {path}")
    return path


def _rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def machine() -> dict:
    import torch

    cpu = platform.processor()
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="snn_resnet18")
    ap.add_argument("--batch", type=int, default=None, help="default: 16 on CPU, 64 on CUDA")
    ap.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step")
    ap.add_argument("--timesteps", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    ap.add_argument("--one", nargs=5, metavar=("MODEL", "T", "BATCH", "DEVICE", "BACKEND"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        m, T, b, d, be = args.one
        print(json.dumps(one(m, int(T), int(b), args.steps, d, be)))
        return 0

    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    batch = args.batch or (64 if device == "cuda" else 16)
    backends = ["torch", "cuda", "triton"] if device == "cuda" else ["torch"]
    rows = []
    for backend in backends:
        for T in args.timesteps:
            cmd = [sys.executable, __file__, "--steps", str(args.steps), "--one", args.model, str(T), str(batch), device, backend]
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0:
                err = (res.stderr.strip().splitlines() or ["?"])[-1]
                rows.append({"model": args.model, "timesteps": T, "batch": batch, "device": device, "backend": backend, "error": err})
            else:
                rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
            print_row(rows[-1], (("backend", 8), ("timesteps", 2), ("batch", 5)))
    out = {"benchmark": "train_step", "machine": machine(), "method": "BPTT, loss none, SGD", "results": rows}
    write_result(f"train_step-{device}.json", out)
    return 0


def print_row(r: dict, lead: tuple[tuple[str, int], ...]) -> None:
    """One table row of a step measurement: the `lead` columns (key, width), then speed and memory;
    the header before the first row."""
    if not getattr(print_row, "header", False):
        print(" ".join(f"{'T' if k == 'timesteps' else k:<{w}}" for k, w in lead) + f" {'images/s':>9} {'s/step':>7} {'peak MiB':>9} {'step MiB':>9}")
        print_row.header = True
    head = " ".join(f"{r[k]!s:<{w}}" for k, w in lead)
    if "error" in r:
        print(f"{head}  error: {r['error']}")
        return
    print(f"{head} {r['images_per_s']:>9.1f} {r['seconds_per_step']:>7.3f} {r['peak_memory_bytes'] / 2**20:>9.0f} "
          f"{r['step_peak_bytes'] / 2**20:>9.0f}")


if __name__ == "__main__":
    sys.exit(main())
