"""`report DIR... --table methods`: one row per training run, the comparison table of distillation papers.

The row of TSER's Table 4 (per method: OPs, ACs, MACs, energy, training time per batch, firing
rate), with the accuracy of the float network, of the deployed one and of each time step.
A row joins two stages:

- the run directory (`train --out RUN`: `summary.json`): method, model, T, float test
  accuracy and its per-step accuracies, training time per batch;
- a simulation of its export (`simulate BUNDLE --out SIM`: `simulation.json`): deployed
  accuracy, operations and firing rate per inference, priced per profile.

A simulation directory finds its run through the bundle's manifest (`source` is the
checkpoint, whose directory is the run); a run directory given alone has no deployed columns.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import CheckpointError, ConfigError, NeurodistillError
from ..formats.manifest import read_manifest
from ..io.files import read_json
from .pairing import float_accuracy

NONE = "-"


def _read_summary(run: Path) -> dict:
    data = read_json(run / "summary.json")
    if not isinstance(data, dict) or "test_acc" not in data or "method" not in data:
        raise CheckpointError(f"{str(run / 'summary.json')!r} is not a neurodistill training summary "
                              "(needs method and test_acc)")
    return data


def _source_of(sim: dict) -> Path | None:
    """The checkpoint a simulation's bundle was exported from, when the bundle and its run exist."""
    try:
        source = Path(read_manifest(Path(sim["bundle"]))["source"])
    except (KeyError, TypeError, NeurodistillError):
        return None
    return source if (source.parent / "summary.json").is_file() else None


def read_entry(path: Path) -> dict:
    """`{"path", "run", "summary", "sim", "checkpoint"}` for a run directory or a simulation
    directory (`checkpoint`: the file name of the bundle's source in its run, None for a run alone)."""
    from .report import read_simulation

    if (path / "simulation.json").is_file():
        sim = read_simulation(path)
        source = _source_of(sim)
        run = None if source is None else source.parent
        return {"path": str(path), "run": None if run is None else str(run),
                "summary": None if run is None else _read_summary(run), "sim": sim,
                "checkpoint": None if source is None else source.name}
    if (path / "summary.json").is_file():
        return {"path": str(path), "run": str(path), "summary": _read_summary(path), "sim": None, "checkpoint": None}
    raise CheckpointError(f"{str(path)!r} holds neither summary.json (a training run) nor simulation.json "
                          "(a simulation); give run or simulation directories")


def method_label(summary: dict) -> str:
    """The method as a paper's row names it: ablations and rate-based backprop are part of it."""
    label = str(summary["method"])
    ablation = (summary.get("method_info") or {}).get("ablation") if isinstance(summary.get("method_info"), dict) else None
    if ablation:
        label += f" [{ablation}]"
    if summary.get("backprop") == "rate" and summary["method"] != "esd":  # esd always trains with rate backprop
        label += " (rate)"
    return label


def profile_keys(profile_args: list[str]) -> list[str]:
    """Profile names (as report columns are named) for names or .toml paths, checked."""
    from .profiles import load_profile

    if not profile_args:
        raise ConfigError("give at least one --profile (see 'neurodistill profiles list')")
    return [load_profile(a).name for a in profile_args]


def rows(entries: list[dict], profile_args: list[str]) -> list[dict]:
    """One plain row per entry: numbers per inference, energies in joules (keyed by profile
    name), None where unknown."""
    from .report import build

    if not entries:
        raise ConfigError("give at least one run or simulation directory")
    profile_names = profile_keys(profile_args)
    out = []
    for e in entries:
        s, sim = e["summary"], e["sim"]
        row: dict = {"path": e["path"], "run": e["run"], "checkpoint": e.get("checkpoint") or (
                         "last.pt" if s is not None else None), "method": NONE, "model": NONE, "timesteps": None,
                     "accuracy_float": None, "accuracy_per_timestep": None, "accuracy_per_timestep_source": None,
                     "train_seconds_per_batch": None, "batch_size": None, "accuracy_deployed": None, "backend": None,
                     "samples": None, "ops": None, "acs": None, "macs": None, "synaptic_events": None,
                     "firing_rate": None, "energy_j": {p: None for p in profile_names}}
        if s is not None:
            acc_float, per = float_accuracy(s, row["checkpoint"])
            row |= {"method": method_label(s), "model": s.get("model", NONE), "timesteps": s.get("timesteps"),
                    "accuracy_float": acc_float, "train_seconds_per_batch": s.get("train_seconds_per_batch"),
                    "batch_size": s.get("batch_size")}
            if per is not None:
                row["accuracy_per_timestep"] = [p["alone"] for p in per]
                row["accuracy_per_timestep_source"] = "float, training's test evaluation"
        if sim is not None:
            m = build([sim], list(profile_args))["models"][0]
            b, t = sim["samples"], sim["totals"]
            row |= {"accuracy_deployed": sim["accuracy"], "backend": sim["backend"], "samples": b,
                    "acs": t["acs"] / b, "macs": t["macs"] / b, "ops": (t["acs"] + t["macs"]) / b,
                    "synaptic_events": t["synaptic_events"] / b, "firing_rate": sim["firing_rate_neuron_weighted"],
                    "energy_j": {p: m["energy"][p]["per_inference_j"] for p in profile_names}}
            if row["timesteps"] is None:
                row["timesteps"] = sim["timesteps"]
            if row["model"] == NONE:
                row["model"] = sim.get("model") or NONE
            per = sim.get("accuracy_per_timestep")
            if isinstance(per, list) and per:  # the deployed network's own per-step accuracy wins
                row["accuracy_per_timestep"] = [p["alone"] if isinstance(p, dict) else p for p in per]
                row["accuracy_per_timestep_source"] = f"deployed ({sim['backend']}, {b} samples)"
        out.append(row)
    return out


def table(rows_: list[dict], profile_names: list[str]) -> tuple[list[str], list[list[str]]]:
    from .tables import energy_cell, si_number

    def acc(v):
        return NONE if v is None else f"{100 * v:.2f}"

    head = ["method", "model", "T", "acc. float (%)", "acc. deployed (%)", "acc. per step (%)", "OPs", "ACs", "MACs",
            *[f"E {p}" for p in profile_names], "train ms/batch", "FR"]
    body = []
    for r in rows_:
        per = NONE if r["accuracy_per_timestep"] is None else " / ".join(f"{100 * a:.1f}" for a in r["accuracy_per_timestep"])
        body.append([
            r["method"], str(r["model"]), NONE if r["timesteps"] is None else str(r["timesteps"]),
            acc(r["accuracy_float"]), acc(r["accuracy_deployed"]), per,
            NONE if r["ops"] is None else si_number(r["ops"]), NONE if r["acs"] is None else si_number(r["acs"]),
            NONE if r["macs"] is None else si_number(r["macs"]),
            *[NONE if r["energy_j"][p] is None else energy_cell(r["energy_j"][p]) for p in profile_names],
            NONE if r["train_seconds_per_batch"] is None else f"{1000 * r['train_seconds_per_batch']:.1f}",
            NONE if r["firing_rate"] is None else f"{r['firing_rate']:.4f}",
        ])
    return head, body


def notes(rows_: list[dict], profile_args: list[str]) -> str:
    from .profiles import load_profile

    profiles = {p.name: p for p in map(load_profile, profile_args)}
    backends = sorted({f"{r['backend']} on {r['samples']} test samples" for r in rows_ if r["backend"]})
    sources = sorted({r["accuracy_per_timestep_source"] for r in rows_ if r["accuracy_per_timestep_source"]})
    checkpoints = sorted({r["checkpoint"] for r in rows_ if r["checkpoint"]}) or ["none"]
    conv = "; ".join(f"{name}: {p.convention}" for name, p in profiles.items())
    return (f"Accuracy float: the test accuracy of the checkpoint that was deployed ({', '.join(checkpoints)}; "
            f"best.pt's from its epoch's evaluation, last.pt's from train's final one), so that float and deployed "
            f"differ by export alone. Deployed: "
            f"{', '.join(backends) or 'not simulated'}. Per step: accuracy of each step's output alone "
            f"({'; '.join(sources) or 'none'}). OPs = ACs + MACs, per inference; E: energy per inference ({conv}). "
            "Train ms/batch: optimisation steps only (data loading included, evaluation excluded), at the run's "
            "batch size and device. FR: neuron-weighted firing rate of the deployed network.")


def _csv(rows_: list[dict], keys: list[str]) -> str:
    import csv
    import io

    f = io.StringIO()
    w = csv.writer(f)
    cols = ["method", "model", "timesteps", "accuracy_float", "accuracy_deployed", "backend", "samples", "ops", "acs",
            "macs", "synaptic_events", "firing_rate", "train_seconds_per_batch", "batch_size"]
    T = max((len(r["accuracy_per_timestep"] or []) for r in rows_), default=0)
    w.writerow(cols + [f"energy_j_{k}" for k in keys] + [f"accuracy_t{t + 1}" for t in range(T)] + ["checkpoint", "run", "path"])
    for r in rows_:
        per = list(r["accuracy_per_timestep"] or [])
        w.writerow([r[c] for c in cols] + [r["energy_j"][k] for k in keys] + per + [None] * (T - len(per))
                   + [r["checkpoint"], r["run"], r["path"]])
    return f.getvalue()


def write(dirs: list[Path], profile_args: list[str], out: Path, overwrite: bool = False) -> dict:
    """Read every directory, then write methods.{json,csv,md,tex} and the figures into `out`
    (all or nothing). Returns `{"rows", "files", "profiles"}`."""
    from . import method_figures, tables
    from .staging import write_staged

    table_rows = rows([read_entry(Path(d)) for d in dirs], profile_args)
    keys = profile_keys(profile_args)
    head, body = table(table_rows, keys)
    note = notes(table_rows, profile_args)

    def fill(stage: Path) -> list[str]:
        (stage / "methods.json").write_text(json.dumps({"profiles": keys, "notes": note, "rows": table_rows}, indent=2) + "\n")
        (stage / "methods.csv").write_text(_csv(table_rows, keys))
        figs = method_figures.accuracy_per_step(table_rows, stage) + method_figures.accuracy_vs_timesteps(table_rows, stage)
        md = ["# Methods", "", tables.markdown(head, body), "", note, ""] + [f"![{f}]({f})" for f in figs if f.endswith(".png")]
        (stage / "methods.md").write_text("\n".join(md) + "\n")
        tex = [r"% neurodistill methods table: \input{methods.tex} in a document with \usepackage{booktabs}"
               r" and \usepackage{graphicx}",
               tables.latex(head, body, "Methods compared: accuracy, operations and energy per inference, "
                            "training time per batch, firing rate.", "tab:neurodistill-methods", notes=note)]
        tex += [figure_snippet(f) for f in figs if f.endswith(".pdf")]
        (stage / "methods.tex").write_text("\n\n".join(tex) + "\n")
        return ["methods.json", "methods.csv", "methods.md", "methods.tex", *figs]

    files = write_staged(out, fill, method_figures.ALL_FILES, overwrite=overwrite)
    return {"rows": table_rows, "files": files, "profiles": keys}


FIGURE_CAPTIONS = {"accuracy_per_step_by_run.pdf": "Accuracy of each time step's output alone, per run.",
                   "accuracy_vs_timesteps.pdf": "Float and deployed accuracy against the number of time steps T."}


def figure_snippet(pdf: str) -> str:
    from .tables import latex_figure

    return latex_figure(pdf, FIGURE_CAPTIONS[pdf])
