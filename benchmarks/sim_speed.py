"""Simulation speed: neurodistill's fixed-point simulator vs Lava, and vs float torch inference.

    python benchmarks/sim_speed.py [--samples 360] [--lava-samples 20]

On the digits demo bundle (trained and exported first if runs/bench-sim does not hold one):
samples/s of `run_fxp` (batched, every layer's spikes recorded) vs the Lava backend (netx,
Loihi2SimCfg fixed_pt, one sample after another, same bundle and inputs), and the time of the
fixed-point run over float torch inference of the trained model on the same samples. Prints a
table and writes benchmarks/results/sim_speed.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_step import machine, write_result  # noqa: E402

WORK = Path("runs/bench-sim")


def ensure_bundle() -> tuple[Path, Path]:
    from neurodistill.config import resolve
    from neurodistill.export.bundle import export_loihi2
    from neurodistill.train import train

    ckpt, bundle = WORK / "student" / "best.pt", WORK / "bundle"
    if not ckpt.exists():
        train(resolve({"model": "snn_digits", "epochs": 30, "out": str(WORK / "student")}, {}), overwrite=True)
    if not bundle.exists():
        export_loihi2(ckpt, bundle, calib=256)
    return ckpt, bundle


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=1440, help="digits test images, repeated to this many")
    ap.add_argument("--repeat", type=int, default=10, help="timed rounds; the best of each is kept")
    ap.add_argument("--lava-samples", type=int, default=20)
    args = ap.parse_args()
    import torch

    from neurodistill.data.digits import digits_arrays
    from neurodistill.export.graph_io import read_graph
    from neurodistill.export.loihi2 import encoding_bias, encoding_current
    from neurodistill.sim.fxp import run_fxp
    from neurodistill.sim.run import _lava_spikes
    from neurodistill.train.checkpoint import load_checkpoint
    from neurodistill.train.loop import model_from_checkpoint

    ckpt, bundle = ensure_bundle()
    graph = read_graph(bundle / "deploy.h5")
    _, _, x, _ = digits_arrays()
    x = x.repeat((args.samples + len(x) - 1) // len(x), 1, 1, 1)[: args.samples]
    T = graph.timesteps
    model = model_from_checkpoint(load_checkpoint(ckpt), ckpt).eval()

    bias, _ = encoding_bias(graph, encoding_current(graph, x.numpy()))
    bias_t = torch.as_tensor(bias)
    x_seq = x.unsqueeze(0).repeat(T, 1, 1, 1, 1)

    def fxp():
        run_fxp(graph, bias_t, T, record=True)

    def flt():
        with torch.no_grad():
            model(x_seq)

    # Interleaved rounds, best of each: both see the same machine load; the minimum is the
    # least disturbed run.
    t_fxp = t_float = float("inf")
    for _ in range(args.repeat):
        for fn, which in ((fxp, "fxp"), (flt, "float")):
            t0 = time.perf_counter()
            fn()
            dt = time.perf_counter() - t0
            if which == "fxp":
                t_fxp = min(t_fxp, dt)
            else:
                t_float = min(t_float, dt)
    n_lava = min(args.lava_samples, len(x))
    t0 = time.perf_counter()
    _lava_spikes(bundle, graph, bias[:n_lava], T + graph.latency_steps, None)
    t_lava = time.perf_counter() - t0
    rows = {
        "fxp_samples_per_s": len(x) / t_fxp, "lava_samples_per_s": n_lava / t_lava,
        "float_torch_samples_per_s": len(x) / t_float,
    }
    rows["fxp_over_lava_speedup"] = rows["fxp_samples_per_s"] / rows["lava_samples_per_s"]
    rows["fxp_time_over_float_torch"] = t_fxp / t_float
    for k, v in rows.items():
        print(f"{k:<28} {v:12.2f}")
    print("goals: fxp_over_lava_speedup >= 1000, fxp_time_over_float_torch <= 2")
    out = {"benchmark": "sim_speed", "bundle": "digits (snn_digits, T=4)", "samples": len(x), "lava_samples": n_lava,
           "method": f"best of {args.repeat} interleaved rounds for fxp and float; Lava once",
           "lava_seconds_include_startup": True, "machine": machine(), "results": rows}
    write_result("sim_speed.json", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
