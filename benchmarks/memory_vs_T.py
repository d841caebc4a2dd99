"""Peak training memory and step time vs T: BPTT against rate-based backprop.

Spiking ResNet-18, 32x32 inputs, 10 classes, batch 32, T = 2, 4, 6, 8, one SGD step of
cross entropy on the time-mean logits (BPTT) or on the rate-pass logits (rate backprop,
backward on loss / T). Each configuration runs in a fresh subprocess, as in train_step.py, so
the CPU's peak resident memory belongs to that configuration alone: `peak_memory_bytes` is the
process's peak RSS, `step_peak_bytes` that peak minus the RSS just before the first step (model
and batch allocated). On CUDA both are torch.cuda.max_memory_allocated (the step figure from
the allocation before the first step). `seconds_per_step` is the fastest of the timed steps (the
mean is kept too), since other load on a shared machine only ever slows a step down;
`warmup_seconds` is the untimed first step (rate: it includes compiling the fused neuron loop,
or loading it from torch's on-disk cache).

Methods: `bptt`; `rate`, rate backprop as the package runs it (the fused neuron loop); and
`rate-before`, rate backprop as it was before the fused loop (a step-by-step neuron loop with
autograd for the surrogate's derivative, RateBackprop rebuilt every step), kept verbatim in
tests/rate_bp_reference.py: the "before" of docs/results.md, measured in the same run. The methods alternate for each T and the
whole sweep runs `--repeat` times; each configuration keeps its fastest round, so the ratios
compare steps taken under the same load.

Rate backprop's memory is that of one non-spiking forward/backward at batch B plus a no-grad
spiking forward, so it should stay nearly flat in T (the check: peak at T=8 <= 1.25x peak at
T=2), while BPTT keeps every step's activations and grows about linearly. Its step time should
be at most half of BPTT's at T=6 (the check `time_within_limit`).

    python benchmarks/memory_vs_T.py [--batch 32] [--steps 3] [--timesteps 2 4 6 8] [--repeat 2]
        [--methods bptt rate rate-before] [--device cpu]

Prints a table and writes benchmarks/results/memory_vs_T.json (all devices measured).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_step import machine, measure_step, print_row, write_result  # noqa: E402

METHODS = ("bptt", "rate", "rate-before")
LIMIT = 1.25  # rate backprop: peak(T=8) / peak(T=2) must not exceed this
TIME_LIMIT = (6, 0.5)  # rate backprop: step time at T=6 at most 0.5x BPTT's
LEAD = (("round", 5), ("device", 6), ("method", 11), ("timesteps", 2))


def one(method: str, model: str, T: int, batch: int, steps: int, device: str) -> dict:
    """Measure in this process (called in a fresh subprocess)."""
    import torch
    import torch.nn.functional as F

    from neurodistill.config import TrainConfig
    from neurodistill.models import create_model
    from neurodistill.train.loop import build_optimizer, seed_everything
    from neurodistill.train.rate_bp import rate_step

    seed_everything(0)
    dev = torch.device(device)
    net = create_model(model, num_classes=10, in_channels=3).to(dev).train()
    opt = build_optimizer(net, TrainConfig(optimizer="sgd", lr=0.1))
    x = torch.rand(batch, 3, 32, 32, device=dev)  # a static batch; each method encodes it itself
    y = torch.randint(0, 10, (batch,), device=dev)

    if method == "rate-before":
        use_before()

    def step():
        if method == "bptt":
            z = net(x.unsqueeze(0).repeat(T, 1, 1, 1, 1))  # direct encoding, as the trainer does
            loss = F.cross_entropy(z.mean(0), y)
        else:
            out = rate_step(net, x, T)
            loss = F.cross_entropy(out.logits, y) / T  # the reference's 1/T gradient scale
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t0 = time.perf_counter()
    m = measure_step(step, dev, steps)
    times = m.pop("step_seconds")
    seconds = min(times)  # the best step: the least disturbed by other load on a shared machine
    return {"method": method, "model": model, "timesteps": T, "batch": batch, "device": device,
            "seconds_per_step": seconds, "seconds_per_step_mean": sum(times) / steps, "images_per_s": batch / seconds,
            "warmup_seconds": time.perf_counter() - t0 - sum(times), **m}


def use_before() -> None:
    """Rate backprop as before the fused loop, kept verbatim in tests/rate_bp_reference.py."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.rate_bp_reference import use_reference

    use_reference()


def summarise(rows: list[dict], timesteps: list[int]) -> dict:
    """Per device and method: peak(T_max) / peak(T_min), for both memory figures, and step time
    over BPTT's at each T; and the checks."""
    out: dict = {}
    lo, hi = min(timesteps), max(timesteps)
    for r in rows:
        if "error" not in r:
            out.setdefault(r["device"], {}).setdefault(r["method"], {})[r["timesteps"]] = r
    summary: dict = {}
    for device, by_method in out.items():
        bptt = by_method.get("bptt", {})
        for method, by_T in by_method.items():
            key = f"{device}/{method}"
            s = summary[key] = {}
            if lo in by_T and hi in by_T:
                s[f"peak_ratio_T{hi}_T{lo}"] = by_T[hi]["peak_memory_bytes"] / by_T[lo]["peak_memory_bytes"]
                s[f"step_peak_ratio_T{hi}_T{lo}"] = by_T[hi]["step_peak_bytes"] / max(by_T[lo]["step_peak_bytes"], 1)
            if method != "bptt":
                for T in sorted(set(by_T) & set(bptt)):
                    s[f"time_vs_bptt_T{T}"] = by_T[T]["seconds_per_step"] / bptt[T]["seconds_per_step"]
            if method == "rate":
                if f"peak_ratio_T{hi}_T{lo}" in s:
                    s["within_limit"] = s[f"peak_ratio_T{hi}_T{lo}"] <= LIMIT
                t_check, limit = TIME_LIMIT
                if f"time_vs_bptt_T{t_check}" in s:
                    s["time_within_limit"] = s[f"time_vs_bptt_T{t_check}"] <= limit
    return summary


def sweep(args, devices: list[str]) -> list[dict]:
    """Every (device, T, method) in a fresh process, methods alternating per T, `--repeat` rounds;
    per configuration the round with the fastest step (its memory is that round's too)."""
    best: dict[tuple, dict] = {}
    for rnd in range(args.repeat):
        for device in devices:
            for T in args.timesteps:
                for method in args.methods:
                    cmd = [sys.executable, __file__, "--steps", str(args.steps),
                           "--one", method, args.model, str(T), str(args.batch), device]  # fmt: skip
                    res = subprocess.run(cmd, capture_output=True, text=True)
                    if res.returncode != 0:
                        err = (res.stderr.strip().splitlines() or ["?"])[-1]
                        row = {"method": method, "model": args.model, "timesteps": T, "batch": args.batch,
                               "device": device, "round": rnd, "error": err}  # fmt: skip
                    else:
                        row = json.loads(res.stdout.strip().splitlines()[-1])
                    row["round"] = rnd
                    print_row(row, LEAD)
                    key = (device, method, T)
                    old = best.get(key)
                    times = (old or {}).get("seconds_all", []) + [row.get("seconds_per_step")]
                    if old is None or "error" in old or ("error" not in row and row["seconds_per_step"] < old["seconds_per_step"]):
                        best[key] = row
                    best[key]["seconds_all"] = times
    return list(best.values())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="snn_resnet18")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step; the fastest is reported")
    ap.add_argument("--timesteps", type=int, nargs="+", default=[2, 4, 6, 8])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--repeat", type=int, default=2, help="rounds of the whole sweep; each configuration keeps its fastest")
    ap.add_argument("--device", nargs="+", default=None, help="cpu and/or cuda (default: cpu, and cuda if available)")
    ap.add_argument("--one", nargs=5, metavar=("METHOD", "MODEL", "T", "BATCH", "DEVICE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        method, model, T, batch, device = args.one
        print(json.dumps(one(method, model, int(T), int(batch), args.steps, device)))
        return 0

    import torch

    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    rows = sweep(args, devices)
    print("best of each configuration:")
    for row in rows:
        print_row(row, LEAD)
    summary = summarise(rows, args.timesteps)
    for key, s in summary.items():
        print(f"{key:<17} " + "  ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in s.items()))
    t_check, t_limit = TIME_LIMIT
    out = {"benchmark": "memory_vs_T", "machine": machine(),
           "setup": f"{args.model}, 32x32, 10 classes, batch {args.batch}, SGD, CE; rate: backward on loss/T; "
                    f"best of {args.repeat} rounds",
           "limit": f"rate backprop peak(T={max(args.timesteps)}) <= {LIMIT} x peak(T={min(args.timesteps)}); "
                    f"step time at T={t_check} <= {t_limit} x BPTT's",
           "results": rows, "summary": summary}  # fmt: skip
    write_result("memory_vs_T.json", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
