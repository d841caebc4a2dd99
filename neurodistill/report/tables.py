"""Report tables: Markdown, LaTeX (booktabs, conventions in the caption) and flat CSV."""

from __future__ import annotations

import csv
import io


def _si(x: float | None) -> str:
    if x is None:
        return "-"
    for unit, f in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= f:
            return f"{x / f:.3g}{unit}"
    return f"{x:.3g}"


def _energy(j: float | None) -> str:
    if j is None:
        return "-"
    for unit, f in (("mJ", 1e-3), ("uJ", 1e-6), ("nJ", 1e-9)):
        if abs(j) >= f:
            return f"{j / f:.3g} {unit}"
    return f"{j / 1e-12:.3g} pJ"


def summary_rows(models: list[dict], profiles: list[str]) -> tuple[list[str], list[list[str]]]:
    head = ["model", "acc", "T", "FR (neuron-w.)", "FR (layer mean)", "ACs", "MACs", "syn. events"]
    head += [f"E {p}" for p in profiles] + [f"ANN/SNN {p}" for p in profiles]
    rows = []
    for m in models:
        t = m["totals"]
        b = m["samples"]
        row = [m["label"], f"{m['accuracy']:.4f}", str(m["timesteps"]), f"{m['firing_rate_neuron_weighted']:.4f}",
               f"{m['firing_rate_mean_of_layers']:.4f}", _si(t["acs"] / b), _si(t["macs"] / b), _si(t["synaptic_events"] / b)]
        row += [_energy(m["energy"][p]["per_inference_j"]) for p in profiles]
        row += ["-" if m["ann_over_snn"].get(p) is None else f"{m['ann_over_snn'][p]:.2f}x" for p in profiles]
        rows.append(row)
    return head, rows


def layer_rows(m: dict, profiles: list[str]) -> tuple[list[str], list[list[str]]]:
    head = ["layer", "neurons", "FR", "ACs", "MACs", "syn. events"] + [f"share {p}" for p in profiles]
    b = m["samples"]
    rows = []
    for x in m["layers"]:
        rows.append([x["name"], str(x["neurons"]), "-" if x["firing_rate"] is None else f"{x['firing_rate']:.4f}",
                     _si(x["acs"] / b), _si(x["macs"] / b), _si(x["synaptic_events"] / b)]
                    + [f"{x['energy_share'][p]:.1%}" for p in profiles])
    return head, rows


def markdown(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _tex_escape(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"), ("$", r"\$")):
        s = s.replace(a, b)
    return s


def latex(head: list[str], rows: list[list[str]], caption: str, label: str) -> str:
    cols = "l" + "r" * (len(head) - 1)
    out = [r"\begin{table}[t]", r"\centering", r"\small", rf"\caption{{{_tex_escape(caption)}}}", rf"\label{{{label}}}",
           rf"\begin{{tabular}}{{{cols}}}", r"\toprule", " & ".join(_tex_escape(h) for h in head) + r" \\", r"\midrule"]
    out += [" & ".join(_tex_escape(c) for c in r) + r" \\" for r in rows]
    out += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(out)


def flat_csv(models: list[dict], profiles: list[str]) -> str:
    """One row per layer per model (and per profile's energy), every number unrounded."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["model", "layer", "neurons", "spikes", "firing_rate", "synaptic_events", "dense_ops", "acs", "macs",
                "neuron_updates", "samples", "timesteps"] + [f"energy_j_{p}" for p in profiles])
    for m in models:
        for x in m["layers"]:
            w.writerow([m["label"], x["name"], x["neurons"], x["spikes"], x["firing_rate"], x["synaptic_events"],
                        x["dense_ops"], x["acs"], x["macs"], x["neuron_updates"], m["samples"], m["timesteps"]]
                       + [x["energy_j"][p] for p in profiles])
    return buf.getvalue()
