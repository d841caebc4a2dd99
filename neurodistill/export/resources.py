"""Resource mapping of a deployment graph onto a neuromorphic chip, from a limits table (TOML).

Per population: its neurons and the synapses that end on them; memory for the weights it
stores (dense: one weight per connection; conv: the kernels, stored once, as Loihi 2's conv
compression does; an estimate, since the encoding is not public); cores =
max(neurons / neurons per core, weight memory / memory per core), at least 1. Host-side
(encoding) synapses use no chip resources.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from importlib import resources as ir
from pathlib import Path

import numpy as np

from ..core.graph import DeployGraph
from ..errors import ConfigError, HardwareConstraintError


@dataclass(frozen=True)
class Limit:
    value: float
    source: str
    estimate: bool


def load_limits(target: str | Path = "loihi2") -> dict[str, Limit]:
    path = Path(target)
    if path.suffix != ".toml":
        path = Path(str(ir.files("neurodistill.export") / "targets" / f"{target}.toml"))
    if not path.is_file():
        raise ConfigError(f"limits table {str(path)!r} does not exist; shipped targets: loihi2")
    data = tomllib.loads(path.read_text())
    return {k: Limit(float(v["value"]), v["source"], bool(v.get("estimate", False))) for k, v in data.items() if isinstance(v, dict)}


def connections(syn) -> int:
    """Synaptic connections (fan-in summed over target neurons), padding-aware for conv."""
    if syn.kind == "dense":
        return int(np.count_nonzero(syn.weight_int if syn.weight_int is not None else syn.weight))
    c_out, c_in_g, kh, kw = syn.weight.shape
    _, h, w = syn.in_shape
    oh, ow = syn.out_shape[1:]

    def taps(n_in, n_out, k, s, p):  # number of (output, kernel) pairs that land inside the input
        return sum(1 for o in range(n_out) for i in range(k) if 0 <= o * s - p + i < n_in)

    return int(c_out * c_in_g * taps(h, oh, kh, syn.stride[0], syn.padding[0]) * taps(w, ow, kw, syn.stride[1], syn.padding[1]))


def map_resources(graph: DeployGraph, limits: dict[str, Limit] | None = None, chips: int = 1) -> dict:
    """Cores, neurons and synapses per population; whether the network fits `chips` chips."""
    limits = limits or load_limits()
    per_core, mem_core = limits["neurons_per_core"].value, limits["synapse_memory_bytes_per_core"].value
    bytes_per_weight = limits["weight_bits"].value / 8
    layers, total_cores, total_neurons, total_syn, total_stored = [], 0, 0, 0, 0
    for p in graph.populations:
        chip_in = [s for s in graph.incoming(p.name) if not s.host]
        syn = sum(connections(s) for s in chip_in)
        stored = sum(s.weight.size if s.kind == "conv" else connections(s) for s in chip_in)
        cores_n = math.ceil(p.size / per_core)
        # Output channels are split across cores; a core stores the kernels of its own channels
        # (conv) or the rows of its own neurons (dense). One channel's kernel must fit one core.
        conv_bytes = sum(s.weight.size for s in chip_in if s.kind == "conv") * bytes_per_weight
        dense_bytes = sum(connections(s) for s in chip_in if s.kind == "dense") * bytes_per_weight
        per_channel = max((s.weight[0].size * bytes_per_weight for s in chip_in if s.kind == "conv"), default=0)
        if per_channel > mem_core:
            raise HardwareConstraintError(
                f"layer {p.name}: one output channel's kernels need {per_channel:.0f} bytes, more than the "
                f"{mem_core:.0f} bytes of synapse memory of a core (estimate)")
        cores = max(1, cores_n, math.ceil((conv_bytes + dense_bytes) / mem_core))
        layers.append({"name": p.name, "neurons": p.size, "synapses": syn, "weights_stored": int(stored), "cores": cores,
                       "neuron_utilisation": p.size / (cores * per_core),
                       "memory_utilisation": (conv_bytes + dense_bytes) / (cores * mem_core)})
        total_cores += cores
        total_neurons += p.size
        total_syn += syn
        total_stored += int(stored)
    cap = {k: limits[k].value * chips for k in ("cores_per_chip", "neurons_per_chip", "synapses_per_chip")}
    # The chip's synapse figure counts stored synapses: a conv kernel is stored once, however
    # many connections it makes.
    used = {"cores_per_chip": total_cores, "neurons_per_chip": total_neurons, "synapses_per_chip": total_stored}
    over = [k for k in cap if used[k] > cap[k]]
    return {
        "target": "loihi2", "layers": layers, "cores": total_cores, "neurons": total_neurons, "synapses": total_syn,
        "weights_stored": total_stored,
        "chips": chips, "fits": not over, "over": over,
        "limits": {k: {"value": v.value, "source": v.source, "estimate": v.estimate} for k, v in limits.items()},
    }


def require_fit(res: dict) -> None:
    """A HardwareConstraintError naming the largest layer and the numbers, unless it fits."""
    if res["fits"]:
        return
    totals = {"cores_per_chip": res["cores"], "neurons_per_chip": res["neurons"], "synapses_per_chip": res["weights_stored"]}
    n = res["chips"]
    parts = ", ".join(f"{k.split('_')[0]} {totals[k]} > {res['limits'][k]['value'] * n:.0f}" for k in res["over"])
    worst = max(res["layers"], key=lambda layer: layer["cores"])
    raise HardwareConstraintError(
        f"the network does not fit {n} Loihi 2 chip{'s' if n > 1 else ''} ({parts}); the largest layer is {worst['name']} "
        f"({worst['neurons']} neurons, {worst['synapses']} synapses, {worst['cores']} cores); "
        "try --chips N to plan several chips, or a smaller input or model")
