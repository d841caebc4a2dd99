"""`neurodistill report SIMDIR... --profile NAME... --out DIR`: price simulations, write a paper's files.

Writes `report.json` (complete), `report.csv` (one row per layer), `report.md`, `report.tex`
(booktabs) and figures (PNG, PDF and the CSV of each). Every number carries its convention and
every constant its source (a provenance block).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from .. import __version__
from ..errors import CheckpointError, ConfigError, NeurodistillError
from ..formats.manifest import read_manifest
from ..io.files import file_sha256, inside, kind_of, read_json
from ..io.limits import MAX_LAYERS, MAX_TIMESTEPS
from . import figures, tables

FIGURE_CAPTIONS = {
    "firing_rate_by_layer.pdf": "Firing rate per layer (spikes per neuron per step).",
    "firing_rate_by_step.pdf": "Firing rate per time step (neuron-weighted).",
    "accuracy_by_step.pdf": "Accuracy of each time step alone and of the mean of steps 1..t, from the simulated readout.",
    "energy_by_layer.pdf": "Energy per inference of each layer, by hardware profile (log scale; zero marked).",
    "energy_by_profile.pdf": "Energy per inference by hardware profile (log scale).",
}
LAYER_COUNTS = ("spikes", "acs", "macs", "synaptic_events", "neuron_updates", "dense_ops")


def read_simulation(simdir: Path) -> dict:
    """A `simulation.json` (or the directory holding one), checked.

    Refused with a `CheckpointError` naming the file and the key: a file that is not JSON or
    lacks (or mistypes) a key the report reads, and a stale simulation: its recorded bundle
    still exists but its manifest has changed since (`bundle_manifest_sha256` differs; for a
    `.net` simulation, `net_sha256`), so the counts describe another export. Simulations of
    different bundles may be compared in one report; a simulation whose bundle is gone (or
    unrecorded) is taken as it is.
    """
    path = inside(simdir, "simulation.json", "simulation file") if simdir.is_dir() else simdir
    if not path.is_file():
        raise CheckpointError(f"{str(simdir)!r} holds no simulation.json; run 'neurodistill simulate' first")
    sim = read_json(path)
    if not isinstance(sim, dict):
        raise CheckpointError(f"{str(path)!r} is not a neurodistill simulation (a JSON {type(sim).__name__}, not an object)")
    missing = [k for k in SIM_REQUIRED if k not in sim]
    if missing:
        raise CheckpointError(f"{str(path)!r} is not a neurodistill simulation (missing {', '.join(missing)})")
    _check_simulation(sim, str(path))
    bundle, net = sim.get("bundle"), sim.get("net")
    for what, source, file, recorded in (
            ("bundle", bundle, Path(bundle) / "manifest.json" if isinstance(bundle, str) and bundle else None,
             sim.get("bundle_manifest_sha256")),
            (".net file", net, Path(net) if isinstance(net, str) and net.endswith(".net") else None, sim.get("net_sha256"))):
        # the files a simulation names are read only to hash them, and only if they are what they say
        if file is None or not recorded or kind_of(file) != "a file":
            continue
        try:
            now = file_sha256(file)
        except OSError as e:
            raise CheckpointError(f"{str(path)!r}: its {what}'s file {str(file)!r} cannot be read ({e.strerror or e})") from None
        if now != recorded:
            raise CheckpointError(f"{str(path)!r} was simulated from another version of {what} {source!r} "
                                  f"(it changed since: {'bundle_manifest_sha256' if what == 'bundle' else 'net_sha256'} "
                                  "differs); simulate it again")
    return sim


SIM_REQUIRED = ("backend", "samples", "timesteps", "accuracy", "layers", "totals")


def _is_count(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v >= 0


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_simulation(sim: dict, where: str) -> None:
    """Every key `build`, the tables and the figures read is present and of its type."""

    def need(obj: dict, key: str, ok, allowed: str, at: str = "", optional: bool = False):
        if key not in obj:
            if optional:
                return None
            raise CheckpointError(f"{where!r}: key {at + key!r} is missing")
        if not ok(obj[key]):
            text = repr(obj[key]) if len(repr(obj[key])) <= 60 else repr(obj[key])[:57] + "..."
            raise CheckpointError(f"{where!r}: {at + key} = {text} is not allowed; allowed: {allowed}")
        return obj[key]

    need(sim, "backend", lambda v: isinstance(v, str) and v != "", "a backend name")
    need(sim, "samples", lambda v: _is_int(v) and v >= 1, "an integer >= 1")
    T = need(sim, "timesteps", lambda v: _is_int(v) and 1 <= v <= MAX_TIMESTEPS, f"an integer from 1 to {MAX_TIMESTEPS:,}")
    need(sim, "accuracy", lambda v: v is None or (_is_count(v) and v <= 1), "null or a number in [0, 1]")
    for key in ("firing_rate_neuron_weighted", "firing_rate_mean_of_layers"):
        need(sim, key, _is_count, "a finite number >= 0")
    for key in ("bundle", "model", "bundle_manifest_sha256", "net", "net_sha256"):
        need(sim, key, lambda v: v is None or isinstance(v, str), "null or a string", optional=True)
    need(sim, "conventions", lambda v: isinstance(v, dict), "an object", optional=True)
    totals = need(sim, "totals", lambda v: isinstance(v, dict), "an object")
    for key in LAYER_COUNTS:
        need(totals, key, _is_count, "a finite count >= 0", "totals.")
    nb = need(sim, "neurobench", lambda v: isinstance(v, dict), "an object", optional=True)
    if nb is not None:
        need(nb, "version", lambda v: isinstance(v, str), "a string", "neurobench.")
        for key in ("Footprint", "ConnectionSparsity", "ActivationSparsity"):
            need(nb, key, _is_count, "a finite number >= 0", "neurobench.")
        ops = need(nb, "SynapticOperations", lambda v: isinstance(v, dict), "an object", "neurobench.")
        for key in ("Effective_MACs", "Effective_ACs", "Dense"):
            need(ops, key, _is_count, "a finite count >= 0", "neurobench.SynapticOperations.")
        need(nb, "MembraneUpdates", lambda v: v is None or _is_count(v), "null or a finite count >= 0", "neurobench.")
    layers = need(sim, "layers", lambda v: isinstance(v, list) and 0 < len(v) <= MAX_LAYERS
                  and all(isinstance(x, dict) for x in v), f"a list of 1 to {MAX_LAYERS:,} layer objects")
    for i, x in enumerate(layers):
        at = f"layers[{i}]."
        need(x, "name", lambda v: isinstance(v, str), "a string", at)
        need(x, "neurons", lambda v: _is_int(v) and v >= 1, "an integer >= 1", at)
        for key in LAYER_COUNTS:
            need(x, key, _is_count, "a finite count >= 0", at)
        need(x, "firing_rate", lambda v: v is None or _is_count(v), "null or a finite number >= 0", at)
        need(x, "spikes_per_step", lambda v: isinstance(v, list) and len(v) == T and all(map(_is_count, v)),
             f"a list of {T} counts (one per time step)", at)
    need(sim, "accuracy_per_timestep", lambda v: v is None or isinstance(v, list) and len(v) == T and all(
        isinstance(p, dict) and all(_is_count(p.get(k)) for k in ("t", "alone", "running_mean")) for p in v),
        f"null or a list of {T} objects with t, alone, running_mean", optional=True)


def _training_summary(sim: dict) -> dict | None:
    """The student's training summary (accuracy per time step), when the bundle's source has one,
    with the accuracies of the exported checkpoint (best.pt's, not last.pt's, for a bundle of best.pt).

    Optional: a summary that is missing or unreadable is left out of the report, not an error."""
    from .pairing import float_accuracy

    try:
        source = Path(read_manifest(Path(sim["bundle"]))["source"])
        summary = source.parent / "summary.json"
        data = read_json(summary, "training summary") if kind_of(summary) == "a file" else None
    except (KeyError, TypeError, NeurodistillError):
        return None
    if not isinstance(data, dict):
        return None
    acc, per = float_accuracy(data, source.name)
    ok = isinstance(per, list) and all(
        isinstance(p, dict) and all(_is_count(p.get(k)) for k in ("t", "alone", "running_mean")) for p in per)
    return {"test_acc_per_timestep": per if ok else None, "test_acc": acc if _is_count(acc) else None}


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
    profiles: dict = {}
    for arg in profile_names:  # keyed by the profile's own name: a path's column reads 'mychip', not './mychip.toml'
        prof = load_profile(arg)
        if prof.name in profiles:
            raise ConfigError(f"--profile {arg!r}: a profile named {prof.name!r} is already given; each column needs its own name")
        profiles[prof.name] = prof
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
            # the simulation's own per-step accuracy; a training summary's (float, training-time) only
            # for simulations written before simulate recorded it, and labelled so
            "accuracy_per_timestep": sim.get("accuracy_per_timestep") or (summary or {}).get("test_acc_per_timestep"),
            "accuracy_per_timestep_source": (f"{sim['backend']}, {b} test samples" if sim.get("accuracy_per_timestep")
                                             else "float, training's test evaluation"
                                             if (summary or {}).get("test_acc_per_timestep") else None),
            "training_test_acc": (summary or {}).get("test_acc"),
            "neurobench": sim.get("neurobench"),
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


def write(report: dict, out: Path, overwrite: bool = False) -> list[str]:
    """Write every report file into a staging directory beside `out`, then move them in: a failure
    leaves `out` as it was. With `overwrite`, files an earlier report left in `out` and this one has
    not (e.g. no accuracy per step) are removed, so the directory never mixes two reports."""
    from .staging import write_staged

    return write_staged(out, lambda stage: _write_files(report, stage), (*figures.ALL_FILES, "neurobench.csv"),
                        overwrite=overwrite)


def _write_files(report: dict, out: Path) -> list[str]:
    models, profiles = report["models"], report["profiles"]
    files = ["report.json", "report.csv", "report.md", "report.tex"]
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.csv").write_text(tables.flat_csv(models, profiles))
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
    nh, nr = tables.neurobench_rows(models)
    if nr:
        version = next(m["neurobench"]["version"] for m in models if m.get("neurobench"))
        nb_notes = (f"NeuroBench {version}'s metrics by its definitions, per sample: Footprint in bytes of the float32 "
                    "network, ConnectionSparsity unrounded, Effective_MACs/Effective_ACs/Dense synaptic operations, "
                    "MembraneUpdates ('-': the backend records no membrane potentials).")
        md += ["## NeuroBench metrics\n", tables.markdown(nh, nr), "", nb_notes, ""]
        (out / "neurobench.csv").write_text(tables.neurobench_csv(models))
        files.append("neurobench.csv")
    for m in models:
        lh, lr = tables.layer_rows(m, profiles)
        md += [f"## Layers: {m['label']}\n", tables.markdown(lh, lr), ""]
        tex.append(tables.latex(lh, lr, f"Per-layer activity and energy share of {m['label']} "
                                f"({m['samples']} samples, T={m['timesteps']}).", f"tab:layers-{len(tex) - 2}"))
    if nr:  # after the layer tables, whose labels count from the summary's
        tex.append(tables.latex(nh, nr, "NeuroBench metrics per inference.", "tab:neurodistill-neurobench", notes=nb_notes))
    md += ["## Conventions\n"] + [f"- **{k}**: {v}" for k, v in conv.items() if isinstance(v, str)]
    md += ["", "## Constants\n"]
    for p in profiles:
        for name, c in conv["energy"][p]["constants"].items():
            md.append(f"- {p} `{name}` = {c['value']} {c['unit']} ({c['kind']}): {c['source']}")
    md += ["", "## Figures\n"]
    figs = figures.firing_rate_by_layer(models, out) + figures.firing_rate_by_step(models, out)
    estimates = {p for p in profiles if conv["energy"][p].get("estimate")}
    figs += figures.accuracy_by_step(models, out) + figures.energy_by_layer(models, profiles, out, estimates)
    figs += figures.energy_by_profile(models, profiles, out, estimates)
    md += [f"![{f}]({f})" for f in figs if f.endswith(".png")]
    tex += [tables.latex_figure(f, FIGURE_CAPTIONS[f]) for f in figs if f.endswith(".pdf")]
    (out / "report.md").write_text("\n".join(md) + "\n")
    (out / "report.tex").write_text("\n\n".join(tex) + "\n")
    return files + figs
