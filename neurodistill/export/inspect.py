"""`neurodistill inspect BUNDLE`: a bundle's manifest as tables for a terminal."""

from __future__ import annotations

import json
from pathlib import Path

from ..formats.manifest import check_bundle_files, read_manifest


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render(bundle: Path) -> str:
    m = read_manifest(bundle)
    check_bundle_files(bundle)
    head = [f"bundle {bundle}  target {m['target']}  model {m.get('model', '?')}  T={m.get('timesteps')}  dt={m.get('dt', '-')}",
            (f"source {m.get('source')} (sha256 {m['source_sha256'][:12]}...)" if m.get("source_sha256")
             else f"source {m.get('source') or '(a model exported from Python, no checkpoint file)'}")]
    if m["target"] != "loihi2":
        return "\n".join(head + [json.dumps({k: v for k, v in m.items() if k not in ("source", "source_sha256")}, indent=2)])
    res = {layer["name"]: layer for layer in m["resources"]["layers"]}
    rows = [["layer", "kind", "shape", "depth", "scale", "iDecay", "vDecay", "vThMant", "bias range", "clip w", "clip b", "cores", "synapses"]]
    for layer in m["layers"]:
        n, r = layer["neuron_loihi"], res[layer["name"]]
        rows.append([layer["name"], layer["kind"], "x".join(map(str, layer["shape"])), str(layer["depth"]),
                     f"{layer['scale']:g}", str(n["iDecay"]), str(n["vDecay"]), str(n["vThMant"]),
                     "host input" if layer["depth"] == 0 and layer["kind"] != "source" else f"{n['bias_mant_range'][0]}..{n['bias_mant_range'][1]}",
                     f"{layer['clipped_fraction']['weights']:.2%}", f"{layer['clipped_fraction']['bias']:.2%}",
                     str(r["cores"]), str(r["synapses"])])
    rr = m["resources"]
    est = [k for k, v in rr["limits"].items() if v["estimate"]]
    tail = [
        f"latency {m['latency_steps']} steps; {m['steps_per_sample']} steps per sample on chip"
        + ("; readout: spike counts of the last layer (argmax, ties to the lowest class)"
           if m.get("readout") == "spikes" else ""),
        _resources_line(rr, est),
        f"accuracy on {m['calibration_samples']} calibration samples: float {m['accuracy_float']:.4f}, "
        f"quantized (Loihi fixed point) {m['accuracy_quantized']:.4f}",
        "files: " + ", ".join(sorted(m["files"].values())) + "".join(
            f"  (no {f}: {m[k]['reason']})" for k, f in (("netx", "network.net"), ("nir", "network.nir")) if m.get(k)),
    ]
    return "\n".join(head + ["", _table(rows), ""] + tail + _qat_lines(m.get("qat")))


def _qat_lines(q: dict | None) -> list[str]:
    """A `train --deploy` checkpoint's per-layer weight quantization, at the start of QAT
    (post-training quantization of its initial weights) and at the end."""
    if not q or not q.get("after"):
        return []
    before = {r["name"]: r for r in q.get("before") or []}
    rows = [["layer", "weights", "scale before", "clip before", "error before", "scale after", "clip after", "error after"]]
    for a in q["after"]:
        b = before.get(a["name"])
        rows.append([a["name"], str(a["weights"]),
                     *((f"{b['scale']:g}", f"{b['clipped']:.2%}", f"{b['error']:.2%}") if b else ("-", "-", "-")),
                     f"{a['scale']:g}", f"{a['clipped']:.2%}", f"{a['error']:.2%}"])
    return ["", f"quantization-aware training ({q['weight_bits']}-bit weights, the scales it trained with): weights "
                "clipped to the grid and the error ||Q/s - W|| / ||W||, before (its initial weights) and after", "",
            _table(rows)]


def _resources_line(rr: dict, est: list[str]) -> str:
    """Usage against the chips the export planned (`--chips`), not against one chip."""
    chips = int(rr.get("chips", 1))
    cores = rr["limits"]["cores_per_chip"]["value"] * chips
    plan = "one chip" if chips == 1 else f"{chips} chips"
    return (f"resources: {rr['cores']} of {cores:.0f} cores ({plan}), {rr['neurons']} neurons, {rr['synapses']} synapses; "
            f"fits {plan}: {'yes' if rr['fits'] else 'NO'} (estimated limits: {', '.join(est)})")
