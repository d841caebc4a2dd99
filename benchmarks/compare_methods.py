"""Method comparison on digits: every training method and TSER's ablation, 3 seeds, mean ± std.

    python benchmarks/compare_methods.py [--protocols digits digits-small] [--methods none kd ...]
                                         [--seeds 0 1 2] [--fresh] [--wait-esd MINUTES] [--write]

Drives the real CLI, one `neurodistill train ...` subprocess per run:

- one ANN teacher per seed (`ann_digits`, the demo's teacher settings: 30 epochs, lr 0.1) in
  `runs/compare/teachers/seedS`, used by kd, tser and the ablation rows of the same seed, in both
  protocols;
- one spiking student per (protocol, method, seed) in `runs/compare/PROTOCOL/METHOD/seedS`.

Methods: none, tet, kd, tser, tssd, esd, `none-rate` (`--method none --backprop rate`: esd trains
with rate-based backprop, so this is its baseline without the branches), and TSER's Table 3
ablation as `tser-kd`, `tser-ts_kl`, `tser-ts_ce`, `tser-ts_both`, `tser-ts_both_er`
(`--method tser --ablation NAME`). Protocols: `digits` (the demo student's settings) and
`digits-small` (a low-budget one where the methods separate); see PROTOCOLS.

A run whose `summary.json` exists and whose recorded command (`compare.json` in the run
directory) is the one this script would run is not trained again, so an interrupted comparison
resumes where it stopped; `--fresh` retrains everything selected. Then it reads every run's
`summary.json` (test accuracy, accuracy of each time step alone, train seconds), prints one table
per protocol (mean ± sample standard deviation over the seeds, n − 1 in the denominator) and,
when the selection is the full default one (or with `--write`), writes
`benchmarks/results/compare_methods.json` (machine, exact commands, per-seed numbers) and
`benchmarks/results/compare_methods.md` (the tables, as pasted into docs/results.md).

`esd` runs last. When the installed CLI does not list it (`neurodistill train --help`), its rows
are reported as not run; `--wait-esd M` polls the help every `--poll` seconds for up to M minutes
and runs them as soon as it appears. Running the script again later fills them in.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_step import RESULTS, machine, write_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RUNS = Path("runs/compare")  # relative to ROOT: the recorded commands are the ones that ran, from the repository root
SCRIPT_COMMAND = ".venv/bin/python benchmarks/compare_methods.py"

# The demo's teacher (neurodistill/demo.py TEACHER), one per seed.
TEACHER_FLAGS = ["--model", "ann_digits", "--dataset", "digits", "--epochs", "30", "--lr", "0.1"]

PROTOCOLS = {
    "digits": {
        "flags": ["--model", "snn_digits", "--dataset", "digits", "--timesteps", "4", "--epochs", "30", "--lr", "0.1"],
        "timesteps": 4,
        "description": "The demo student's settings: snn_digits, T=4, 30 epochs of the 1,437 training images "
                       "(batch 64, 23 steps an epoch, 690 SGD steps), SGD lr 0.1, cosine",
    },
    "digits-small": {
        "flags": ["--model", "snn_digits", "--dataset", "digits", "--timesteps", "2", "--epochs", "10", "--lr", "0.1",
                  "--batch-size", "32", "--limit-train-batches", "5"],
        "timesteps": 2,
        "description": "A low-budget protocol: snn_digits, T=2, 10 epochs of only 5 batches of 32 "
                       "(160 images an epoch, 50 SGD steps, 1,600 image presentations, about 1.1 passes over the "
                       "training split), SGD lr 0.1, cosine over the 50 steps",
    },
}

# method key -> (train flags, needs the ANN teacher, table label)
METHODS = {
    "none": (["--method", "none"], False, "none"),
    "tet": (["--method", "tet"], False, "tet"),
    "kd": (["--method", "kd"], True, "kd"),
    "tser": (["--method", "tser"], True, "tser"),
    "tssd": (["--method", "tssd"], False, "tssd"),
    "esd": (["--method", "esd"], False, "esd"),
    # esd trains with rate-based backprop (gradient scaled by 1/T): this row is its baseline without the branches.
    "none-rate": (["--method", "none", "--backprop", "rate"], False, "none `--backprop rate` (esd's baseline)"),
    "tser-kd": (["--method", "tser", "--ablation", "kd"], True, "tser `--ablation kd` (plain KD)"),
    "tser-ts_kl": (["--method", "tser", "--ablation", "ts_kl"], True, "tser `--ablation ts_kl` (TS on KL only)"),
    "tser-ts_ce": (["--method", "tser", "--ablation", "ts_ce"], True, "tser `--ablation ts_ce` (TS on CE only)"),
    "tser-ts_both": (["--method", "tser", "--ablation", "ts_both"], True, "tser `--ablation ts_both` (TS on both)"),
    "tser-ts_both_er": (["--method", "tser", "--ablation", "ts_both_er"], True,
                        "tser `--ablation ts_both_er` (TS on both + ER)"),
}
# Rows that are the same configuration as another row: (row, same as, why).
SAME_AS = [
    ("tser-kd", "kd", "separate_ce and separate_kl off and λ = 0 is the kd loss (a tested identity)"),
    ("tser-ts_both_er", "tser", "both separations on with λ = 0.01 are tser's defaults"),
]
# Paired differences (same seed: same initial weights and data order) that the reading needs: (a, b, what a − b isolates).
PAIRS = [
    ("tser", "kd", "tser over classical KD"),
    ("tssd", "none", "tssd's self-distillation over the plain loss"),
    ("esd", "none-rate", "esd's branches and self-distillation over rate backprop alone"),
    ("tser-ts_kl", "tser-kd", "ablation: temporal separation of the KL"),
    ("tser-ts_ce", "tser-kd", "ablation: temporal separation of the CE"),
    ("tser-ts_both", "tser-kd", "ablation: both separations"),
    ("tser-ts_both_er", "tser-ts_both", "ablation: the entropy regulariser on top"),
]
SEEDS = [0, 1, 2]
ORDER = ["digits-small", "digits"]  # cheaper protocol first
# The methods table (`report --table methods`, TSER's Table 4 layout): each method's first-seed run of
# the digits protocol, exported to Loihi 2 and simulated in fixed point on the whole test split.
TABLE_PROTOCOL = "digits"
TABLE_METHODS = ["none", "tet", "kd", "tser", "tssd", "esd", "none-rate"]
TABLE_PROFILES = ["cmos45-fp32", "cmos45-int8", "loihi", "loihi2"]
TABLE_DIR = RESULTS / "methods_table"


def cli() -> list[str]:
    """The console script next to this interpreter (the project's .venv), else `python -m neurodistill`."""
    exe = Path(sys.executable).parent / "neurodistill"
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "neurodistill"]


def git_state() -> dict:
    def git(*a: str) -> str:
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    return {"commit": git("rev-parse", "HEAD"), "uncommitted_changes_in_neurodistill": bool(git("status", "--porcelain", "neurodistill"))}


def esd_available() -> bool:
    res = subprocess.run(cli() + ["train", "--help"], cwd=ROOT, capture_output=True, text=True)
    # the option's own entry (its text may wrap), not the usage examples above the options
    m = re.search(r"^\s+--method\s+TEXT(.*?)(?=^\s+-)", res.stdout, re.S | re.M)
    return bool(m and re.search(r"\besd\b", m.group(1)))


def teacher_dir(seed: int) -> Path:
    return RUNS / "teachers" / f"seed{seed}"


def run_dir(protocol: str, method: str, seed: int) -> Path:
    return RUNS / protocol / method / f"seed{seed}"


def teacher_args(seed: int) -> list[str]:
    return ["train", *TEACHER_FLAGS, "--seed", str(seed), "--out", str(teacher_dir(seed)), "--overwrite"]


def student_args(protocol: str, method: str, seed: int) -> list[str]:
    flags, needs_teacher, _ = METHODS[method]
    args = ["train", *PROTOCOLS[protocol]["flags"], *flags]
    if needs_teacher:
        args += ["--teacher", str(teacher_dir(seed) / "best.pt")]
    return args + ["--seed", str(seed), "--out", str(run_dir(protocol, method, seed)), "--overwrite"]


def shown(args: list[str]) -> str:
    return shlex.join(["neurodistill", *args])


def train(args: list[str], out: Path, fresh: bool, label: str) -> dict:
    """Run `neurodistill ARGS` unless OUT already holds its finished run; the run's record."""
    d = ROOT / out
    marker, summary = d / "compare.json", d / "summary.json"
    if not fresh and summary.is_file() and marker.is_file():
        rec = json.loads(marker.read_text())
        if rec.get("args") == args:
            print(f"  {label}: done before ({out})", flush=True)
            return {**rec, "summary": json.loads(summary.read_text()), "status": "ok", "reused": True}
        print(f"  {label}: {out} holds a run of another command; training again", flush=True)
    for stale in (marker, summary):
        stale.unlink(missing_ok=True)  # a half-finished rerun must not leave the old result behind
    print(f"  {label}: {shown(args)}", flush=True)
    env = {**os.environ, "CI": "1"}  # one log line per epoch, no progress bar
    t0 = time.perf_counter()
    res = subprocess.run(cli() + args, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    d.mkdir(parents=True, exist_ok=True)
    (d / "compare.log").write_text(res.stdout + res.stderr)
    rec = {"args": args, "command": shown(args), "wall_seconds": round(wall, 2), "returncode": res.returncode}
    if res.returncode != 0 or not summary.is_file():
        err = (res.stderr.strip() or res.stdout.strip()).splitlines()
        rec.update(status="failed", error=err[-1] if err else f"exit status {res.returncode}")
        print(f"    FAILED ({res.returncode}): {rec['error']}", flush=True)
        return rec
    marker.write_text(json.dumps(rec, indent=2) + "\n")
    s = json.loads(summary.read_text())
    print(f"    test acc {s['test_acc']:.4f}, {s['train_seconds']:.1f} s of training, {wall:.1f} s wall", flush=True)
    return {**rec, "summary": s, "status": "ok", "reused": False}


def row(rec: dict, protocol: str | None, method: str, seed: int) -> dict:
    out = {"protocol": protocol, "method": method, "seed": seed, "status": rec["status"],
           "command": rec.get("command"), "wall_seconds": rec.get("wall_seconds")}
    if rec["status"] != "ok":
        return {**out, "error": rec.get("error")}
    s = rec["summary"]
    return {**out, "run_dir": str(Path(rec["args"][rec["args"].index("--out") + 1])),
            "test_acc": s["test_acc"], "best_test_acc": s.get("best_test_acc"), "best_epoch": s.get("best_epoch"),
            "train_seconds": s.get("train_seconds"), "backprop": s.get("backprop"),
            "test_acc_per_timestep": s.get("test_acc_per_timestep"), "reused": rec.get("reused", False)}


def mean_std(xs: list[float]) -> tuple[float | None, float | None]:
    if not xs:
        return None, None
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else None)


def pct(m: float | None, s: float | None = None, signed: bool = False) -> str:
    if m is None:
        return "—"
    f = "{:+.2f}" if signed else "{:.2f}"
    return f.format(100 * m) + ("" if s is None else f" ± {100 * s:.2f}")


def summarise(rows: list[dict], protocols: list[str], methods: list[str], seeds: list[int]) -> dict:
    ok = {(r["protocol"], r["method"], r["seed"]): r for r in rows if r["status"] == "ok" and r["protocol"]}
    out: dict = {}
    for p in protocols:
        out[p] = {}
        for m in methods:
            rs = [ok[(p, m, s)] for s in seeds if (p, m, s) in ok]
            accs = [r["test_acc"] for r in rs]
            mean, std = mean_std(accs)
            base = [(ok[(p, m, s)]["test_acc"] - ok[(p, "none", s)]["test_acc"]) for s in seeds
                    if (p, m, s) in ok and (p, "none", s) in ok]
            dm, ds = mean_std(base) if m != "none" else (None, None)
            T = PROTOCOLS[p]["timesteps"]
            alone = [mean_std([r["test_acc_per_timestep"][t]["alone"] for r in rs
                               if r.get("test_acc_per_timestep") and len(r["test_acc_per_timestep"]) == T])[0]
                     for t in range(T)]
            missing = [r for r in rows if r["protocol"] == p and r["method"] == m and r["status"] != "ok"]
            out[p][m] = {"n": len(rs), "mean": mean, "std": std, "per_seed": {r["seed"]: r["test_acc"] for r in rs},
                         "delta_vs_none_paired": {"mean": dm, "std": ds, "n": len(base)},
                         "alone_per_step_mean": alone if rs else None,
                         "train_seconds_mean": mean_std([r["train_seconds"] for r in rs])[0],
                         "not_ok": [{"seed": r["seed"], "status": r["status"], "error": r.get("error")} for r in missing]}
    return out


def table(summary: dict, protocol: str, methods: list[str], seeds: list[int]) -> list[str]:
    T = PROTOCOLS[protocol]["timesteps"]
    lines = [f"| method | test acc % (mean ± std) | seeds {' / '.join(map(str, seeds))} | Δ vs none, paired by seed "
             f"| each step alone, t = 1..{T} (mean) | train s (mean) |",
             "|---|---|---|---|---|---|"]
    for m in methods:
        s = summary[protocol][m]
        label = METHODS[m][2]
        if s["n"] == 0:
            why = s["not_ok"][0]["status"] if s["not_ok"] else "not run"
            if why == "unavailable":
                why = "not run: this CLI has no `--method esd` yet"
            elif why == "failed":
                why = f"failed: {s['not_ok'][0]['error']}"
            lines.append(f"| {label} | {why} | | | | |")
            continue
        per_seed = " / ".join(pct(s["per_seed"][sd]) if sd in s["per_seed"] else "—" for sd in seeds)
        d = s["delta_vs_none_paired"]
        alone = " / ".join(pct(a) for a in s["alone_per_step_mean"])
        n_note = "" if s["n"] == len(seeds) else f" (n = {s['n']})"
        lines.append(f"| {label} | **{pct(s['mean'], s['std'])}**{n_note} | {per_seed} | "
                     f"{'' if m == 'none' else pct(d['mean'], d['std'], signed=True)} | {alone} | "
                     f"{s['train_seconds_mean']:.1f} |")
    return lines


def same_as_notes(summary: dict, protocols: list[str], methods: list[str]) -> list[str]:
    notes = []
    for a, b, why in SAME_AS:
        if a not in methods or b not in methods:
            continue
        for p in protocols:
            sa, sb = summary[p][a]["per_seed"], summary[p][b]["per_seed"]
            common = sorted(set(sa) & set(sb))
            if not common:
                continue
            diff = max(abs(sa[s] - sb[s]) for s in common)
            verdict = "the same test accuracy on every seed" if diff == 0 else \
                f"test accuracies differ by up to {100 * diff:.2f} points (floating-point order of the two code paths)"
            notes.append(f"- {p}: the row `{' '.join(METHODS[a][0])}` is the `{b}` configuration ({why}): {verdict}.")
    return notes


def paired_notes(summary: dict, protocols: list[str], methods: list[str], seeds: list[int]) -> tuple[list[str], dict]:
    lines, data = [], {}
    for p in protocols:
        cells = []
        for a, b, what in PAIRS:
            if a not in methods or b not in methods:
                continue
            sa, sb = summary[p][a]["per_seed"], summary[p][b]["per_seed"]
            d = [sa[s] - sb[s] for s in seeds if s in sa and s in sb]
            if not d:
                continue
            m, sd = mean_std(d)
            data.setdefault(p, {})[f"{a} - {b}"] = {"per_seed": d, "mean": m, "std": sd}
            cells.append(f"| {a} − {b} | {what} | {pct(m, sd, signed=True)} | {' / '.join(pct(x, signed=True) for x in d)} |")
        if cells:
            lines += [f"Paired differences, {p} (points; mean ± std over seeds of the same-seed difference):", "",
                      "| difference | isolates | mean ± std | per seed |", "|---|---|---|---|", *cells, ""]
    return lines, data


def markdown(summary: dict, teachers: list[dict], protocols: list[str], methods: list[str], seeds: list[int],
             info: dict) -> str:
    out = [f"Command: `{SCRIPT_COMMAND}` (date {time.strftime('%Y-%m-%d')}; machine: {info['cpu']}, "
           f"{info['cores']} cores, torch {info['torch']}, {info['torch_threads']} torch threads). "
           f"Seeds {', '.join(map(str, seeds))}; mean ± sample standard deviation (n − 1) over the seeds, in percent "
           "of the 360 digits test images (one image = 0.28 points). Δ vs none: the mean ± std over seeds of the "
           "difference to `none` with the same seed (same initial weights and data order). Train s: the trainer's "
           "own seconds (`train_seconds`), on a machine other jobs may share: compare them only roughly.", ""]
    tacc = [t["test_acc"] for t in teachers if t["status"] == "ok"]
    if tacc:
        m, s = mean_std(tacc)
        out += [f"ANN teachers (`{shown(['train', *TEACHER_FLAGS])} --seed S`), one per seed, used by kd, tser and the "
                f"ablation rows of both protocols: {pct(m, s)} (seeds: {' / '.join(pct(a) for a in tacc)}).", ""]
    for p in protocols:
        out += [f"### {p}", "", f"{PROTOCOLS[p]['description']}. Flags: `{' '.join(PROTOCOLS[p]['flags'])}`.", ""]
        out += table(summary, p, methods, seeds) + [""]
    out += paired_notes(summary, protocols, methods, seeds)[0]
    notes = same_as_notes(summary, protocols, methods)
    if notes:
        out += ["Duplicate rows (each is run anyway, as the ablation's own row):", *notes, ""]
    return "\n".join(out) + "\n"


def neurodistill(*args: str) -> None:
    res = subprocess.run(cli() + list(args), cwd=ROOT, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"{shown(list(args))} failed:\n{res.stderr[-2000:]}")


def methods_table(protocols: list[str], methods: list[str], seeds: list[int], rows: list[dict]) -> dict | None:
    """Export and simulate (fxp, all 360 test images) each table method's first-seed run, then
    `neurodistill report --table methods` into benchmarks/results/methods_table/."""
    if TABLE_PROTOCOL not in protocols:
        return None
    seed = seeds[0]
    ok = {r["method"] for r in rows if r["protocol"] == TABLE_PROTOCOL and r["seed"] == seed and r["status"] == "ok"}
    chosen = [m for m in TABLE_METHODS if m in methods and m in ok]
    if not chosen:
        return None
    print(f"methods table: {', '.join(chosen)} (seed {seed}): export, simulate, report", flush=True)
    sims = []
    for m in chosen:
        run = run_dir(TABLE_PROTOCOL, m, seed)
        bundle, sim = run.parent / f"seed{seed}.bundle", run.parent / f"seed{seed}.sim"
        neurodistill("export", str(run / "last.pt"), "--target", "loihi2", "--out", str(bundle), "--overwrite")
        if sim.exists():
            shutil.rmtree(sim)
        neurodistill("simulate", str(bundle), "--backend", "fxp", "--samples", "360", "--out", str(sim))
        sims.append(str(sim))
    if TABLE_DIR.exists():
        shutil.rmtree(TABLE_DIR)
    neurodistill("report", *sims, "--table", "methods", *[x for p in TABLE_PROFILES for x in ("--profile", p)],
                 "--out", str(TABLE_DIR))
    print((TABLE_DIR / "methods.md").read_text())
    return {"protocol": TABLE_PROTOCOL, "seed": seed, "methods": chosen, "profiles": TABLE_PROFILES,
            "checkpoint": "last.pt", "simulation": "fxp, 360 test samples", "dir": str(TABLE_DIR.relative_to(ROOT))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--protocols", nargs="+", choices=list(PROTOCOLS), default=ORDER)
    ap.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    ap.add_argument("--seeds", nargs="+", type=int, default=SEEDS)
    ap.add_argument("--fresh", action="store_true", help="train every selected run again, teachers included")
    ap.add_argument("--wait-esd", type=float, default=0.0, metavar="MINUTES",
                    help="if the CLI has no --method esd yet, poll its --help for up to this long before giving up")
    ap.add_argument("--poll", type=float, default=180.0, metavar="SECONDS", help="seconds between --wait-esd polls")
    ap.add_argument("--write", action="store_true",
                    help="write the results files for a partial selection too (the full default selection always does)")
    ap.add_argument("--no-table", action="store_true", help="skip the methods table (export, simulate, report)")
    args = ap.parse_args()
    protocols = [p for p in ORDER if p in args.protocols]
    methods = [m for m in METHODS if m in args.methods]
    seeds = args.seeds
    t_start = time.perf_counter()
    waited = 0.0  # seconds spent waiting for esd to appear in the CLI

    teachers: list[dict] = []
    if any(METHODS[m][1] for m in methods):
        print("teachers", flush=True)
        for s in seeds:
            rec = train(teacher_args(s), teacher_dir(s), args.fresh, f"ann_digits seed {s}")
            teachers.append(row(rec, None, "teacher", s))
            if rec["status"] != "ok":
                sys.exit(f"teacher of seed {s} failed: {rec['error']}")

    rows: list[dict] = []
    for p in protocols:
        print(f"protocol {p}", flush=True)
        for m in methods:
            if m == "esd":
                continue  # last: it may not be in the CLI yet
            for s in seeds:
                rows.append(row(train(student_args(p, m, s), run_dir(p, m, s), args.fresh, f"{m} seed {s}"), p, m, s))

    if "esd" in methods:
        have = esd_available()
        deadline = time.monotonic() + 60 * args.wait_esd
        while not have and time.monotonic() < deadline:
            print(f"esd: not in `neurodistill train --help` yet; checking again in {args.poll:.0f} s", flush=True)
            t_wait = time.perf_counter()
            time.sleep(args.poll)
            waited += time.perf_counter() - t_wait
            have = esd_available()
        for p in protocols:
            print(f"protocol {p}, esd", flush=True)
            for s in seeds:
                if have:
                    rec = train(student_args(p, "esd", s), run_dir(p, "esd", s), args.fresh, f"esd seed {s}")
                else:
                    rec = {"status": "unavailable", "command": shown(student_args(p, "esd", s)),
                           "error": "neurodistill train --help lists no method esd"}
                rows.append(row(rec, p, "esd", s))
        if not have:
            print("esd: the CLI has no --method esd; its rows are left empty (run this script again once it has)")

    table = methods_table(protocols, methods, seeds, rows) if not args.no_table else None

    wall = time.perf_counter() - t_start
    summary = summarise(rows, protocols, methods, seeds)
    info = machine()
    md = markdown(summary, teachers, protocols, methods, seeds, info)
    print()
    print(md)
    all_runs = teachers + rows
    run_wall = sum(r["wall_seconds"] or 0 for r in all_runs if r["status"] == "ok")
    print(f"this invocation: {wall:.0f} s wall ({waited:.0f} s of it waiting for esd); the {sum(r['status'] == 'ok' for r in all_runs)} runs it reports "
          f"took {run_wall:.0f} s of wall time when they were trained")
    full = (protocols == ORDER and methods == list(METHODS) and seeds == SEEDS)
    if full or args.write:
        payload = {"benchmark": "compare_methods", "command": SCRIPT_COMMAND, "argv": sys.argv[1:],
                   "machine": info, "git": git_state(), "std": "sample standard deviation (n - 1 in the denominator) over seeds",
                   "protocols": {p: PROTOCOLS[p] for p in protocols}, "methods": {m: METHODS[m][0] for m in methods},
                   "seeds": seeds, "teachers": teachers, "runs": rows, "summary": summary,
                   "paired_differences": paired_notes(summary, protocols, methods, seeds)[1],
                   "timing_note": "invocation_wall_seconds is this invocation only (runs reused from runs/compare cost "
                                  "nothing); sum_of_run_wall_seconds is the wall time of every reported run when it was "
                                  "trained, i.e. the cost of the whole comparison from scratch",
                   "invocation_wall_seconds": round(wall, 1), "waited_for_esd_seconds": round(waited, 1),
                   "sum_of_run_wall_seconds": round(run_wall, 1)}
        payload["methods_table"] = table
        write_result("compare_methods.json", payload)
        (RESULTS / "compare_methods.md").write_text(md)
        print(f"wrote {RESULTS / 'compare_methods.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
