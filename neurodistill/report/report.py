"""`neurodistill report SIMDIR... --profile NAME... --out DIR`: price simulations, write a paper's files.

Writes `report.json` (complete), `report.csv` (one row per layer), `report.md`, `report.tex`
(booktabs) and figures (PNG, PDF and the CSV of each). Every number carries its convention and
every constant its source (a provenance block).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from .. import __version__
from ..errors import CheckpointError, ConfigError
from ..train.checkpoint import atomic_write
from . import figures, tables

LAYER_COUNTS = ("spikes", "acs", "macs", "synaptic_events", "neuron_updates", "dense_ops")


def read_simulation(simdir: Path) -> dict:
    path = simdir / "simulation.json" if simdir.is_dir() else simdir
    if not path.is_file():
        raise CheckpointError(f"{str(simdir)!r} holds no simulation.json; run 'neurodistill simulate' first")
    try:
        sim = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{str(path)!r} is not valid JSON ({e})") from None
    missing = [k for k in ("backend", "samples", "timesteps", "accuracy", "layers", "totals") if k not in sim]
    if missing:
        raise CheckpointError(f"{str(path)!r} is not a neurodistill simulation (missing {', '.join(missing)})")
    bundle = Path(sim.get("bundle", ""))
    if (bundle / "manifest.json").is_file() and sim.get("bundle_manifest_sha256"):
        now = hashlib.sha256((bundle / "manifest.json").read_bytes()).hexdigest()
        if now != sim["bundle_manifest_sha256"]:
            raise CheckpointError(f"{str(path)!r} was simulated from another version of bundle {str(bundle)!r} "
                                  "(its manifest changed); simulate it again")
    return sim


def _training_summary(sim: dict) -> dict | None:
    """The student's training summary (accuracy per time step), when the bundle's source has one."""
    try:
        manifest = json.loads((Path(sim["bundle"]) / "manifest.json").read_text())
        summary = Path(manifest["source"]).parent / "summary.json"
        return json.loads(summary.read_text()) if summary.is_file() else None
    except (KeyError, OSError, json.JSONDecodeError, TypeError):
        return None


def _label(sim: dict, used: set[str]) -> str:
    base = f"{sim.get('model', 'model')} ({sim['backend']})"
    label, i = base, 2
    while label in used:
        label, i = f"{base} #{i}", i + 1
    used.add(label)
    return label


def build(sims: list[dict], profile_names: list[str], encoding_once: bool = False) -> dict:
    from .pricing import ann_energy, ann_snn_ratio, price
    from .profiles import load_profile

    if not profile_names:
        raise ConfigError("give at least one --profile (see 'neurodistill profiles list')")
    profiles = {name: load_profile(name) for name in profile_names}
    keys = list(profiles)
    used: set[str] = set()
    models = []
    for sim in sims:
        b = sim["samples"]
        layers = []
        for x in sim["layers"]:
            counts = {k: x[k] for k in LAYER_COUNTS}
            layers.append({**x, "energy_j": {p: price(counts, prof)["total_j"] for p, prof in profiles.items()}})
        energy = {}
        for p, prof in profiles.items():
            priced = price({k: sim["totals"][k] for k in LAYER_COUNTS if k in sim["totals"]}, prof)
            energy[p] = {**priced, "per_inference_j": priced["total_j"] / b}
            for x in layers:
                x.setdefault("energy_share", {})[p] = x["energy_j"][p] / priced["total_j"] if priced["total_j"] else 0.0
        ops_per_inference = sum(x["dense_ops"] for x in sim["layers"])
        ann = {p: ann_energy(ops_per_inference, prof) for p, prof in profiles.items()}
        ratio = {p: ann_snn_ratio(ann[p], energy[p]["per_inference_j"]) for p in keys}
        summary = _training_summary(sim)
        models.append({
            "label": _label(sim, used), "simulation": sim.get("bundle"), "backend": sim["backend"], "samples": b,
            "timesteps": sim["timesteps"], "accuracy": sim["accuracy"],
            "firing_rate_neuron_weighted": sim["firing_rate_neuron_weighted"],
            "firing_rate_mean_of_layers": sim["firing_rate_mean_of_layers"],
            "totals": sim["totals"], "energy": energy, "ann_energy_j": ann,
            "ann_over_snn": ratio,
            "layers": layers, "bundle_manifest_sha256": sim.get("bundle_manifest_sha256"),
            "accuracy_per_timestep": (summary or {}).get("test_acc_per_timestep"),
            "training_test_acc": (summary or {}).get("test_acc"),
        })
    return {
        "neurodistill_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "profiles": keys,
        "models": models,
        "conventions": {
            **sims[0].get("conventions", {}),
            "energy": {p: prof_info(profiles[p]) for p in keys},
            "per_inference": "totals divided by the number of simulated samples",
            "ann": "E_MAC x the dense operations of one inference of the same graph (compute-only)",
        },
        "provenance": {
            "neurodistill_version": __version__,
            "simulations": [{"bundle": s.get("bundle"), "bundle_manifest_sha256": s.get("bundle_manifest_sha256"),
                             "backend": s["backend"], "samples": s["samples"]} for s in sims],
            "constants": {p: prof_info(profiles[p]) for p in keys},
        },
    }


def prof_info(profile) -> dict:
    return profile.to_dict()


def write(report: dict, out: Path) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    models, profiles = report["models"], report["profiles"]
    files = ["report.json", "report.csv", "report.md", "report.tex"]
    atomic_write(out / "report.json", lambda tmp: Path(tmp).write_text(json.dumps(report, indent=2) + "\n"))
    atomic_write(out / "report.csv", lambda tmp: Path(tmp).write_text(tables.flat_csv(models, profiles)))
    head, rows = tables.summary_rows(models, profiles)
    eh, er = tables.energy_rows(models, profiles)
    conv = report["conventions"]
    ops_notes = (f"FR: firing rate ({conv.get('firing_rate', 'spikes / (neurons x T x samples)')}). ACs: "
                 f"{conv.get('acs', '')}; MACs: {conv.get('macs', '')}; syn. events: {conv.get('synaptic_events', '')}. "
                 "Per inference: totals divided by the samples.")
    energy_notes = "In parentheses: energy of the ANN of the same graph over the SNN's (ANN/SNN). " + "; ".join(
        f"{p}: {conv['energy'][p]['convention']}" for p in profiles) + "."
    md = [f"# neurodistill report\n\nneurodistill {report['neurodistill_version']}, {report['created']}\n",
          "## Models\n", tables.markdown(head, rows), "", ops_notes, "",
          "## Energy per inference\n", tables.markdown(eh, er), "", energy_notes, ""]
    tex = [f"% neurodistill {report['neurodistill_version']} report tables: \\input{{report.tex}} in a document "
           "with \\usepackage{booktabs} and \\usepackage{graphicx}",
           tables.latex(head, rows, "Accuracy, firing rates (FR) and operations per inference.",
                        "tab:neurodistill-summary", notes=ops_notes),
           tables.latex(eh, er, "Energy per inference by hardware profile (ANN/SNN ratio in parentheses).",
                        "tab:neurodistill-energy", notes=energy_notes)]
    for m in models:
        lh, lr = tables.layer_rows(m, profiles)
        md += [f"## Layers: {m['label']}\n", tables.markdown(lh, lr), ""]
        tex.append(tables.latex(lh, lr, f"Per-layer activity and energy share of {m['label']} "
                                f"({m['samples']} samples, T={m['timesteps']}).", f"tab:layers-{len(tex) - 2}"))
    md += ["## Conventions\n"] + [f"- **{k}**: {v}" for k, v in conv.items() if isinstance(v, str)]
    md += ["", "## Constants\n"]
    for p in profiles:
        for name, c in conv["energy"][p]["constants"].items():
            md.append(f"- {p} `{name}` = {c['value']} {c['unit']} ({c['kind']}): {c['source']}")
    md += ["", "## Figures\n"]
    figs = figures.firing_rate_by_layer(models, out) + figures.firing_rate_by_step(models, out)
    figs += figures.accuracy_by_step(models, out) + figures.energy_by_layer(models, profiles, out)
    figs += figures.energy_by_profile(models, profiles, out)
    md += [f"![{f}]({f})" for f in figs if f.endswith(".png")]
    atomic_write(out / "report.md", lambda tmp: Path(tmp).write_text("\n".join(md) + "\n"))
    atomic_write(out / "report.tex", lambda tmp: Path(tmp).write_text("\n\n".join(tex) + "\n"))
    return files + figs
