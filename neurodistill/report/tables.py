"""Report tables: Markdown, LaTeX (booktabs, conventions in the caption) and flat CSV."""

from __future__ import annotations

import csv
import io
import re


def si_number(x: float | None) -> str:
    if x is None:
        return "-"
    for unit, f in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= f:
            return f"{x / f:.3g}{unit}"
    return f"{x:.3g}"


def energy_cell(j: float | None) -> str:
    if j is None:
        return "-"
    for unit, f in (("mJ", 1e-3), ("uJ", 1e-6), ("nJ", 1e-9)):
        if abs(j) >= f:
            return f"{j / f:.3g} {unit}"
    return f"{j / 1e-12:.3g} pJ"


def summary_rows(models: list[dict], profiles: list[str]) -> tuple[list[str], list[list[str]]]:
    """Accuracy, firing rates and operations per inference: one row per model."""
    head = ["model", "acc", "T", "FR (neuron-w.)", "FR (layer mean)", "ACs", "MACs", "syn. events"]
    rows = []
    for m in models:
        t = m["totals"]
        b = m["samples"]
        acc = "-" if m.get("accuracy") is None else f"{m['accuracy']:.4f}"
        rows.append([m["label"], acc, str(m["timesteps"]), f"{m['firing_rate_neuron_weighted']:.4f}",
                     f"{m['firing_rate_mean_of_layers']:.4f}", si_number(t["acs"] / b), si_number(t["macs"] / b),
                     si_number(t["synaptic_events"] / b)])
    return head, rows


def energy_rows(models: list[dict], profiles: list[str]) -> tuple[list[str], list[list[str]]]:
    """Energy per inference, one column per profile, the ANN/SNN ratio in parentheses."""
    rows = []
    for m in models:
        row = [m["label"]]
        for p in profiles:
            e = energy_cell(m["energy"][p]["per_inference_j"])
            r = m["ann_over_snn"].get(p)
            row.append(e if r is None else f"{e} ({r:.2f}x)")
        rows.append(row)
    return ["model"] + list(profiles), rows


NEUROBENCH_COLUMNS = ("Footprint", "ConnectionSparsity", "ActivationSparsity", "Effective_MACs", "Effective_ACs",
                      "Dense", "MembraneUpdates")


def _neurobench_values(nb: dict) -> list:
    ops = nb["SynapticOperations"]
    return [nb["Footprint"], nb["ConnectionSparsity"], nb["ActivationSparsity"], ops["Effective_MACs"],
            ops["Effective_ACs"], ops["Dense"], nb["MembraneUpdates"]]


def neurobench_rows(models: list[dict]) -> tuple[list[str], list[list[str]]]:
    """NeuroBench's metrics under NeuroBench's names, one row per model that has them."""
    rows = []
    for m in models:
        if m.get("neurobench"):
            fp, cs, act, *rest = _neurobench_values(m["neurobench"])
            rows.append([m["label"], si_number(fp), f"{cs:.4f}", f"{act:.4f}"] + [si_number(v) for v in rest])
    return ["model", "Footprint (B)", *NEUROBENCH_COLUMNS[1:]], rows


def neurobench_csv(models: list[dict]) -> str:
    """One row per model with NeuroBench's metrics, unrounded (MembraneUpdates empty where not recorded)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["model", "neurobench_version", *NEUROBENCH_COLUMNS])
    for m in models:
        if m.get("neurobench"):
            w.writerow([m["label"], m["neurobench"]["version"], *_neurobench_values(m["neurobench"])])
    return buf.getvalue()


def layer_rows(m: dict, profiles: list[str]) -> tuple[list[str], list[list[str]]]:
    head = ["layer", "neurons", "FR", "ACs", "MACs", "syn. events"] + [f"share {p}" for p in profiles]
    b = m["samples"]
    rows = []
    for x in m["layers"]:
        rows.append([x["name"], str(x["neurons"]), "-" if x["firing_rate"] is None else f"{x['firing_rate']:.4f}",
                     si_number(x["acs"] / b), si_number(x["macs"] / b), si_number(x["synaptic_events"] / b)]
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


def _tex_cell(s: str) -> str:
    s = _tex_escape(s)
    s = re.sub(r"(?<=\d)x(?=\)|$)", r"$\\times$", s)  # 1.92x -> 1.92 times sign
    return re.sub(r"(?<=\d) uJ\b", r" $\\mu$J", s)


def latex(head: list[str], rows: list[list[str]], caption: str, label: str, notes: str = "") -> str:
    """A booktabs table (needs `\\usepackage{booktabs}` and `graphicx`): shrunk to the line width
    only when it is wider (a table of many profiles or columns), never enlarged."""
    cols = "l" + "r" * (len(head) - 1)
    body = [rf"\begin{{tabular}}{{{cols}}}", r"\toprule", " & ".join(_tex_escape(h) for h in head) + r" \\",
            r"\midrule"]
    body += [" & ".join(_tex_cell(c) for c in r) + r" \\" for r in rows]
    body += [r"\bottomrule", r"\end{tabular}"]
    body = [r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%"] + body + ["}"]
    out = [r"\begin{table}[t]", r"\centering", r"\small", rf"\caption{{{_tex_escape(caption)}}}", rf"\label{{{label}}}"]
    out += body
    if notes:
        out += [r"\par\smallskip", rf"\parbox{{\linewidth}}{{\footnotesize {_tex_escape(notes)}}}"]
    out += [r"\end{table}"]
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


def latex_figure(pdf: str, caption: str) -> str:
    """A figure environment for a PDF written beside the .tex file (\\input from that directory)."""
    label = "fig:" + pdf.rsplit(".", 1)[0].replace("_", "-")
    return "\n".join([r"\begin{figure}[t]", r"  \centering", rf"  \includegraphics[width=\linewidth]{{{pdf}}}",
                      rf"  \caption{{{_tex_escape(caption)}}}", rf"  \label{{{label}}}", r"\end{figure}"])
