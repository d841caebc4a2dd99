"""`make gpu-check`: everything that only a GPU can check, in one prepared run of under 8 minutes.

    python scripts/gpu_check.py [--budget 470] [--only tests,train_step,...]

Steps, each in its own subprocess with its share of the time budget (a step that runs over is
stopped and recorded as such; the others still run):

1. `tests`: the tests marked `gpu` (CUDA-only: AMP fp16/bf16, channels-last, torch.compile,
   simulate --device cuda equal to the CPU's counts).
2. `train_step`: benchmarks/train_step.py on CUDA at T = 4 and 6, BPTT with each of
   spikingjelly's neuron backends (torch, cupy, triton).
3. `memory_vs_T`: benchmarks/memory_vs_T.py on CUDA: rate-based backprop against BPTT, memory
   and step time per T.
4. `sim_speed`: benchmarks/sim_speed.py (the fixed-point simulator and the float model on CUDA).
5. `methods`: `neurodistill train` for 200 steps of a spiking ResNet-18 on CIFAR-shaped synthetic
   data (3x32x32, 100 classes, batch 64) with every method (a 50-step ANN ResNet-18 teacher for
   kd and tser), the BPTT ones with AMP fp16 and tser also with bf16; images/s of each run.

Writes benchmarks/results/gpu_check-cuda.json: the GPU's name, torch and CUDA versions, and per
step its command, exit status, seconds and the last lines of its output; the benchmarks write
their own *-cuda.json beside it. Without a CUDA device it stops at once with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PY = sys.executable
STEPS = ("tests", "train_step", "memory_vs_T", "sim_speed", "methods")
SHARE = {"tests": 0.2, "train_step": 0.2, "memory_vs_T": 0.15, "sim_speed": 0.1, "methods": 0.35}
METHOD_RUNS = (("none", "fp16"), ("tet", "fp16"), ("kd", "fp16"), ("tser", "fp16"), ("tser", "bf16"),
               ("tssd", "fp16"), ("esd", "fp16"))


def run(name: str, cmd: list[str], limit: float) -> dict:
    """One step in a subprocess, stopped at `limit` seconds."""
    t0 = time.perf_counter()
    print(f"[gpu-check] {name}: {' '.join(cmd)} (limit {limit:.0f} s)", flush=True)
    try:
        res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=limit)
        status, out = res.returncode, res.stdout + res.stderr
    except subprocess.TimeoutExpired as e:
        status, out = "timeout", (e.stdout or b"").decode(errors="replace") + (e.stderr or b"").decode(errors="replace")
    seconds = round(time.perf_counter() - t0, 1)
    tail = out.strip().splitlines()[-15:]
    print("\n".join(f"    {line}" for line in tail), flush=True)
    return {"step": name, "command": cmd, "status": status, "seconds": seconds, "output_tail": tail}


def synthetic_args(model: str, steps: int) -> list[str]:
    return ["--model", model, "--dataset", "synthetic", "--synthetic-shape", "3,32,32", "--synthetic-classes", "100",
            "--synthetic-size", str(64 * steps), "--batch-size", "64", "--epochs", "1", "--device", "cuda",
            "--workers", "auto", "--val-split", "0"]


def method_runs(limit: float) -> list[dict]:
    """200 steps of each method; images/s from each run's summary."""
    cli = [PY, "-m", "neurodistill.cli", "train"]
    out: list[dict] = []
    deadline = time.perf_counter() + limit
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        teacher = work / "teacher"
        out.append(run("methods: ann teacher (50 steps)",
                       [*cli, *synthetic_args("ann_resnet18", 50), "--out", str(teacher)], max(deadline - time.perf_counter(), 1)))
        for method, dtype in METHOD_RUNS:
            left = deadline - time.perf_counter()
            if left < 5:
                out.append({"step": f"methods: {method} {dtype}", "status": "not run (budget spent)"})
                continue
            run_dir = work / f"{method}-{dtype}"
            cmd = [*cli, *synthetic_args("snn_resnet18", 200), "--method", method, "--timesteps", "4",
                   "--amp-dtype", dtype, "--out", str(run_dir)]
            if method in ("kd", "tser"):
                cmd += ["--teacher", str(teacher / "best.pt")]
            r = run(f"methods: {method} {dtype}", cmd, left)
            summary = run_dir / "summary.json"
            if summary.is_file():
                s = json.loads(summary.read_text())
                r["summary"] = {k: s.get(k) for k in ("train_seconds", "peak_memory_bytes", "test_acc", "backprop")}
            out.append(r)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=470.0, help="seconds for all steps together [470]")
    ap.add_argument("--only", default=",".join(STEPS), help=f"comma-separated steps [{','.join(STEPS)}]")
    args = ap.parse_args()
    import torch

    only = [s for s in args.only.split(",") if s]
    unknown = sorted(set(only) - set(STEPS))
    if unknown:
        print(f"error: --only {','.join(unknown)} is not a step; choose from {', '.join(STEPS)}", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("error: make gpu-check needs a CUDA device, and this torch sees none", file=sys.stderr)
        return 2
    total = sum(SHARE[s] for s in only)
    limit = {s: args.budget * SHARE[s] / total for s in only}
    commands = {
        "tests": [PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "gpu", "tests"],
        "train_step": [PY, "benchmarks/train_step.py", "--device", "cuda", "--timesteps", "4", "6"],
        "memory_vs_T": [PY, "benchmarks/memory_vs_T.py", "--device", "cuda"],
        "sim_speed": [PY, "benchmarks/sim_speed.py"],
    }
    results: list[dict] = []
    for step in only:
        if step == "methods":
            results += method_runs(limit[step])
        else:
            results.append(run(step, commands[step], limit[step]))
    report = {"check": "gpu-check", "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
              "cuda": torch.version.cuda, "budget_seconds": args.budget,
              "seconds": round(sum(r.get("seconds", 0) for r in results), 1), "steps": results}
    RESULTS.mkdir(parents=True, exist_ok=True)
    dest = RESULTS / "gpu_check-cuda.json"
    tmp = dest.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, dest)
    failed = [r["step"] for r in results if r.get("status") not in (0,)]
    print(f"[gpu-check] {len(results) - len(failed)} of {len(results)} steps passed in {report['seconds']} s; "
          f"{dest.relative_to(ROOT)}" + (f"; not passed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
