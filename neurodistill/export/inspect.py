"""`neurodistill inspect BUNDLE`: a bundle's manifest as tables for a terminal."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import CheckpointError


def read_manifest(bundle: Path) -> dict:
    path = bundle / "manifest.json"
    if not path.is_file():
        raise CheckpointError(f"{str(bundle)!r} is not an export bundle (no manifest.json)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{str(path)!r} is not valid JSON ({e})") from None


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render(bundle: Path) -> str:
    m = read_manifest(bundle)
    head = [f"bundle {bundle}  target {m['target']}  model {m.get('model', '?')}  T={m.get('timesteps')}  dt={m.get('dt', '-')}",
            f"source {m.get('source')} (sha256 {str(m.get('source_sha256', ''))[:12]}...)"]
    if m["target"] != "loihi2":
        return "\n".join(head + [json.dumps({k: v for k, v in m.items() if k not in ("source", "source_sha256")}, indent=2)])
    res = {layer["name"]: layer for layer in m["resources"]["layers"]}
    rows = [["layer", "kind", "shape", "depth", "scale", "vDecay", "vThMant", "bias range", "clip w", "clip b", "cores", "synapses"]]
    for layer in m["layers"]:
        n, r = layer["neuron_loihi"], res[layer["name"]]
        rows.append([layer["name"], layer["kind"], "x".join(map(str, layer["shape"])), str(layer["depth"]),
                     f"{layer['scale']:g}", str(n["vDecay"]), str(n["vThMant"]),
                     "host input" if layer["depth"] == 0 else f"{n['bias_mant_range'][0]}..{n['bias_mant_range'][1]}",
                     f"{layer['clipped_fraction']['weights']:.2%}", f"{layer['clipped_fraction']['bias']:.2%}",
                     str(r["cores"]), str(r["synapses"])])
    rr = m["resources"]
    est = [k for k, v in rr["limits"].items() if v["estimate"]]
    tail = [
        f"latency {m['latency_steps']} steps; {m['steps_per_sample']} steps per sample on chip",
        f"resources: {rr['cores']} of {rr['limits']['cores_per_chip']['value']:.0f} cores, {rr['neurons']} neurons, "
        f"{rr['synapses']} synapses; fits one chip: {'yes' if rr['fits'] else 'NO'} (estimated limits: {', '.join(est)})",
        f"accuracy on {m['calibration_samples']} calibration samples: float {m['accuracy_float']:.4f}, "
        f"quantized (Loihi fixed point) {m['accuracy_quantized']:.4f}",
        "files: " + ", ".join(sorted(m["files"].values())) + ("" if m.get("netx") is None else f"  (no network.net: {m['netx']['reason']})"),
    ]
    return "\n".join(head + ["", _table(rows), ""] + tail)
