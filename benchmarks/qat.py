"""Quantization-aware training to Loihi 2 fixed point against post-training quantization, 3 seeds.

    python benchmarks/qat.py [--protocols digits digits-small] [--bits 8 6 4] [--seeds 0 1 2] [--fresh]

Drives the real CLI. Per (protocol, seed), protocols as in compare_methods.py:

1. the float student, `--method none` with `--val-split 0.1` (train's default, written out), its
   `best.pt` chosen on the 10% of the training split it never trained on;
2. a float fine-tune from it (`--init`, the QAT schedule of FINETUNE without `--deploy`): the
   control that separates QAT's effect from the extra training, and the float step time;
3. per weight-bit count B: post-training quantization (`export --weight-bits B` of 1.) and QAT
   (`train --init 1. --deploy loihi2 --weight-bits B` with FINETUNE's schedule, then `export`).

Every checkpoint deployed is the run's `best.pt`, as a user would deploy it: chosen on validation,
where a fine-tune's starting point competes as epoch 0 (for QAT that is PTQ itself); `last.pt` of
QAT is measured too. Every accuracy is on the whole test split: float ones from `simulate --backend
float` of the bundle (the trained model's float graph), deployed ones from `simulate --backend
fxp`. The QAT step's extra time is measured in one process, float and deployed steps interleaved
(`step_timing`); the runs' own `train_seconds_per_batch` are recorded too. A step whose outputs
exist from the same command is skipped, so an interrupted benchmark resumes; `--fresh` redoes the
selection. Writes benchmarks/results/qat.json and qat.md (the table in docs/results.md).
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_methods import PROTOCOLS, ROOT, cli, git_state  # noqa: E402
from train_step import RESULTS, machine, write_result  # noqa: E402

RUNS = Path("runs/qat")
# the fine-tune after the float run, with and without --deploy: (epochs, lr), cosine from lr to 0
FINETUNE = {"digits": ("10", "0.01"), "digits-small": ("10", "0.02")}
BITS = [8, 6, 4]
VAL_SPLIT = "0.1"  # train's default, written out: best.pt of every run is chosen on it
SEEDS = [0, 1, 2]


def _replace(flags: list[str], flag: str, value: str) -> list[str]:
    out = list(flags)
    out[out.index(flag) + 1] = value
    return out


def finetune_args(protocol: str, seed: int, init: Path, out: Path, bits: int | None) -> list[str]:
    epochs, lr = FINETUNE[protocol]
    flags = _replace(_replace(PROTOCOLS[protocol]["flags"], "--epochs", epochs), "--lr", lr)
    deploy = ["--deploy", "loihi2", "--weight-bits", str(bits)] if bits else []
    return ["train", *flags, "--method", "none", *deploy, "--init", str(init), "--seed", str(seed),
            "--out", str(out), "--overwrite"]


def step(args: list[str], out: Path, marker: str, fresh: bool) -> dict:
    """Run `neurodistill ARGS` unless `out/marker` records the same command; the JSON it left in `out`."""
    d = ROOT / out
    mark = d / marker
    if not fresh and mark.is_file() and json.loads(mark.read_text()).get("args") == args:
        return json.loads(mark.read_text())
    mark.unlink(missing_ok=True)
    t0 = time.perf_counter()
    res = subprocess.run(cli() + args, cwd=ROOT, capture_output=True, text=True)
    if res.returncode != 0:
        err = (res.stderr.strip() or res.stdout.strip()).splitlines()
        raise SystemExit(f"failed: {shlex.join(['neurodistill', *args])}\n  {err[-1] if err else res.returncode}")
    rec = {"args": args, "command": shlex.join(["neurodistill", *args]), "wall_seconds": round(time.perf_counter() - t0, 2)}
    d.mkdir(parents=True, exist_ok=True)
    mark.write_text(json.dumps(rec, indent=2) + "\n")
    return rec


def deployed(ckpt: Path, where: Path, bits: int | None, fresh: bool, backends=("fxp",)) -> dict:
    """Export `ckpt` to `where/bundle` and simulate it on the whole test split: accuracies by backend."""
    bundle = where / "bundle"
    export = ["export", str(ckpt), "--target", "loihi2", "--out", str(bundle), "--overwrite"]
    if bits:
        export += ["--weight-bits", str(bits)]
    ckpt_mtime = (ROOT / ckpt).stat().st_mtime
    m = ROOT / where / "bench_export.json"
    if m.is_file() and json.loads(m.read_text()).get("ckpt_mtime") != ckpt_mtime:
        fresh = True  # the checkpoint was trained again: so are its bundle and simulations
    step(export, where, "bench_export.json", fresh)
    m.write_text(json.dumps({**json.loads(m.read_text()), "ckpt_mtime": ckpt_mtime}, indent=2) + "\n")
    manifest = json.loads((ROOT / bundle / "manifest.json").read_text())
    out = {"manifest_accuracy_quantized": manifest["accuracy_quantized"], "manifest_accuracy_float": manifest["accuracy_float"]}
    for backend in backends:
        sim = where / f"sim-{backend}"
        step(["simulate", str(bundle), "--backend", backend, "--samples", "100000", "--device", "cpu", "--out", str(sim)],
             where, f"bench_sim_{backend}.json", fresh)
        out[backend] = json.loads((ROOT / sim / "simulation.json").read_text())["accuracy"]
    return out


def float_args(protocol: str, seed: int, out: Path) -> list[str]:
    """The float student: compare_methods' `--method none` run with validation spelled out, so that
    every best.pt here is chosen on images its training never saw."""
    return ["train", *PROTOCOLS[protocol]["flags"], "--method", "none", "--val-split", VAL_SPLIT, "--seed", str(seed),
            "--out", str(out), "--overwrite"]


def one(protocol: str, seed: int, bits_list: list[int], fresh: bool) -> dict:
    base = RUNS / protocol / f"seed{seed}"
    fl = base / "float"
    step(float_args(protocol, seed, fl), fl, "bench_train.json", fresh)
    init = fl / "best.pt"
    ptq = {}
    float_acc = None
    for b in bits_list:
        r = deployed(init, base / f"ptq-w{b}", b, fresh, backends=("fxp", "float"))
        ptq[b] = r["fxp"]
        float_acc = r["float"]
    ft_dir = base / "float-finetune"
    step(finetune_args(protocol, seed, init, ft_dir, None), ft_dir, "bench_train.json", fresh)
    ft = json.loads((ROOT / ft_dir / "summary.json").read_text())
    fl_sum = json.loads((ROOT / fl / "summary.json").read_text())
    row = {"protocol": protocol, "seed": seed, "float": float_acc, "float_best_epoch": fl_sum["best_epoch"],
           "float_finetune": ft["best_test_acc"], "float_finetune_best_epoch": ft["best_epoch"],
           "float_step_seconds": ft["train_seconds_per_batch"], "bits": {}}
    for b in bits_list:
        q_dir = base / f"qat-w{b}"
        step(finetune_args(protocol, seed, init, q_dir, b), q_dir, "bench_train.json", fresh)
        s = json.loads((ROOT / q_dir / "summary.json").read_text())
        r = deployed(q_dir / "best.pt", q_dir, None, fresh, backends=("fxp", "float"))
        last = deployed(q_dir / "last.pt", q_dir / "last", None, fresh)
        # the fair control: the same extra training in float, then post-training quantization
        ft_ptq = deployed(ft_dir / "best.pt", base / f"finetune-ptq-w{b}", b, fresh)["fxp"]
        row["bits"][b] = {"ptq": ptq[b], "qat": r["fxp"], "qat_reported": s["best_test_acc"],
                          "qat_best_epoch": s["best_epoch"], "qat_start_val": s["start"]["val_acc"],
                          "qat_best_val": s["best_selection_acc"],
                          "qat_last": last["fxp"], "qat_last_reported": s["test_acc"], "finetune_ptq": ft_ptq,
                          "qat_float": r["float"], "qat_last_float": s["deploy"]["test_acc_float"],
                          "qat_calibration_acc": s["deploy"]["calibration_acc"],
                          "manifest_accuracy_quantized": last["manifest_accuracy_quantized"],
                          "qat_step_seconds": s["train_seconds_per_batch"],
                          "step_ratio": s["train_seconds_per_batch"] / ft["train_seconds_per_batch"]}
        print(f"  {protocol} seed {seed} {b}-bit: float {float_acc:.4f}  ptq {ptq[b]:.4f}  qat {r['fxp']:.4f} "
              f"(best epoch {s['best_epoch']}, reported {s['best_test_acc']:.4f}; last.pt {last['fxp']:.4f})  "
              f"step x{row['bits'][b]['step_ratio']:.2f}", flush=True)
    return row


def step_timing(protocol: str, bits: int, steps: int = 40) -> dict:
    """Seconds per training step (forward, backward, SGD update) of the float model and of the
    same model deployed, interleaved in one process so both see the same machine load: medians."""
    import torch

    from neurodistill.export.bundle import dataset_samples
    from neurodistill.models import NeuronConfig, create_model
    from neurodistill.qat.forward import Deployment

    flags = PROTOCOLS[protocol]["flags"]
    T = int(flags[flags.index("--timesteps") + 1])
    batch = int(flags[flags.index("--batch-size") + 1]) if "--batch-size" in flags else 64
    torch.manual_seed(0)
    model = create_model("snn_digits", 10, 1, NeuronConfig())
    x, y = dataset_samples("digits", None, {}, batch)
    dep = Deployment.for_model(model, (1, 8, 8), bits, x)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)
    xs = x.unsqueeze(0).repeat(T, 1, 1, 1, 1)
    times: dict[str, list[float]] = {"float": [], "qat": []}

    def one(kind: str) -> None:
        t0 = time.perf_counter()
        if kind == "qat":
            with dep.active(model):
                z = model(xs)
        else:
            z = model(xs)
        loss = torch.nn.functional.cross_entropy(z.mean(0), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times[kind].append(time.perf_counter() - t0)

    for i in range(steps + 5):
        for kind in (("float", "qat") if i % 2 else ("qat", "float")):
            one(kind)
    med = {k: statistics.median(v[5:]) for k, v in times.items()}  # the first steps warm up
    return {"protocol": protocol, "bits": bits, "batch": batch, "timesteps": T, "steps": steps,
            "float_seconds": med["float"], "qat_seconds": med["qat"], "ratio": med["qat"] / med["float"],
            "torch_threads": torch.get_num_threads()}


def _ms(v: list[float]) -> str:
    m = statistics.mean(v)
    return f"{100 * m:.2f} ± {100 * statistics.stdev(v):.2f}" if len(v) > 1 else f"{100 * m:.2f}"


def table(rows: list[dict], protocol: str, bits_list: list[int], timing: dict) -> list[str]:
    rs = [r for r in rows if r["protocol"] == protocol]
    if not rs:
        return []
    out = [f"### {protocol} ({len(rs)} seed{'s' if len(rs) > 1 else ''}: {', '.join(str(r['seed']) for r in rs)})", "",
           "| weight bits | float | PTQ (fxp) | QAT (fxp) | QAT's weights in float | QAT − float | QAT − its float | "
           "QAT − PTQ, worst seed | PTQ loss recovered | QAT best epoch, by seed | QAT last.pt (fxp) | "
           "float fine-tuned | its PTQ (fxp) | QAT step / float step |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for b in bits_list:
        got = [r for r in rs if b in r["bits"]]
        if not got:
            continue
        fl = [r["float"] for r in got]
        ptq = [r["bits"][b]["ptq"] for r in got]
        qat = [r["bits"][b]["qat"] for r in got]
        loss = statistics.mean(fl) - statistics.mean(ptq)
        rec = (statistics.mean(qat) - statistics.mean(ptq)) / loss if loss > 0 else float("nan")
        worst = min(q - p for q, p in zip(qat, ptq, strict=True))
        ratio = timing[(protocol, b)]["ratio"]
        qf = [r["bits"][b]["qat_float"] for r in got]
        epochs = ", ".join(str(r["bits"][b]["qat_best_epoch"]) for r in got)
        out.append(f"| {b} | {_ms(fl)} | {_ms(ptq)} | {_ms(qat)} | {_ms(qf)} | "
                   f"{100 * (statistics.mean(qat) - statistics.mean(fl)):+.2f} | "
                   f"{100 * (statistics.mean(qat) - statistics.mean(qf)):+.2f} | {100 * worst:+.2f} | "
                   f"{'-' if rec != rec else f'{100 * rec:.0f}%'} | {epochs} | "
                   f"{_ms([r['bits'][b]['qat_last'] for r in got])} | {_ms([r['float_finetune'] for r in got])} | "
                   f"{_ms([r['bits'][b]['finetune_ptq'] for r in got])} | {ratio:.2f}x |")
    return out + [""]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--protocols", nargs="+", default=["digits-small", "digits"], choices=list(PROTOCOLS))
    ap.add_argument("--bits", nargs="+", type=int, default=BITS)
    ap.add_argument("--seeds", nargs="+", type=int, default=SEEDS)
    ap.add_argument("--fresh", action="store_true", help="redo every selected step")
    a = ap.parse_args()
    t0 = time.perf_counter()
    rows = []
    for seed in a.seeds:  # seed-major: an interrupted run leaves whole seeds of every protocol
        for p in a.protocols:
            rows.append(one(p, seed, a.bits, a.fresh))
    md = ["Accuracy on the whole digits test split (360 images), in points. float: `simulate --backend float` of "
          "the float student's bundle (its best.pt, chosen on a 10% validation split of the training images); PTQ: "
          "`export --weight-bits B` of it; QAT: `train --init FLOAT --deploy loihi2 --weight-bits B` with the "
          "fine-tune schedule, its best.pt exported. best.pt is chosen on the validation split, with the starting "
          "point (deployed, that is PTQ) competing as epoch 0 and winning ties: \"QAT best epoch\" 0 means no QAT "
          "epoch beat PTQ on validation and the bundle is PTQ's. \"QAT last.pt\" is the last epoch, unselected. "
          "Both deployed numbers from `simulate --backend fxp`. \"float fine-tuned\" is the same fine-tune without "
          "`--deploy` (the extra training alone) and \"its PTQ\" that model exported with `--weight-bits B`: QAT "
          "against it isolates what training the deployed network adds. PTQ loss recovered = (QAT − PTQ) / "
          "(float − PTQ), means over seeds (\"-\" where PTQ lost nothing on average). Standard deviations over "
          "seeds (n − 1).", ""]
    timing = {(p, b): step_timing(p, b) for p in a.protocols for b in a.bits}
    for p in a.protocols:
        md += table(rows, p, a.bits, timing)
    md.append("QAT step / float step: median seconds of one training step (forward, backward, update) of "
              "snn_digits at the protocol's batch and T, the float and the deployed forward interleaved in one "
              "process (`step_timing`); the runs' own `train_seconds_per_batch` ratios are in qat.json, noisier "
              "(other work shared the 2 cores).")
    md.append("")
    exact = all(r["bits"][b]["qat"] == r["bits"][b]["qat_reported"]
                and r["bits"][b]["qat_last"] == r["bits"][b]["qat_last_reported"]
                and r["bits"][b]["manifest_accuracy_quantized"] == r["bits"][b]["qat_calibration_acc"]
                for r in rows for b in r["bits"])
    md.append(f"Every QAT run's reported test accuracy (best.pt's, measured at its epoch, and last.pt's) equals "
              f"`simulate --backend fxp` of its bundle, and last.pt's calibration accuracy the manifest's "
              f"`accuracy_quantized`: {'yes' if exact else 'NO'}.")
    text = "\n".join(md) + "\n"
    print(text)
    (RESULTS / "qat.md").write_text(text)
    write_result("qat.json", {"machine": machine(), "git": git_state(), "finetune": FINETUNE,
                              "protocols": {p: PROTOCOLS[p] for p in a.protocols}, "rows": rows,
                              "step_timing": list(timing.values()),
                              "wall_seconds": round(time.perf_counter() - t0, 1), "reported_equals_fxp": exact})
    return 0


if __name__ == "__main__":
    sys.exit(main())
