"""Counts per layer and time step, by the conventions of docs/simulate.md#counting-conventions. Pure functions.

Spikes come from a simulation of the deployment graph, `spikes[pop]: (steps, B, *shape)` over
the whole on-chip run of `T + latency` steps. A population at depth d handles input step t at
chip step d + t, so its T-step window is `[d, d + T)`; steps outside it are pipeline fill (the
staggered reset discards them) and are reported apart as `pipeline_spikes`.

- synaptic_events (exact): sum over input spikes of that input's actual fan-out into the layer
  (padding-aware for conv; `out_features` for dense);
- dense_ops (paper convention, per step): of the original conv/linear layers, before folding;
- ACs = sum over synapse layers fed by spikes of `fr_in * T * dense_ops`, per sample;
- MACs = dense_ops of layers fed by analog values (the encoding layer), per step (T times per
  sample) or, with `encoding_once`, once per sample;
- neuron_updates = neurons * T * samples.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .graph import INPUT, DeployGraph, Synapse


def fanout_map(syn: Synapse) -> torch.Tensor:
    """How many synapses each input neuron drives in this layer.

    Shape:
        returns `syn.in_shape`.
    """
    if syn.kind == "dense":
        return torch.full(syn.in_shape, float(syn.weight.shape[0]), dtype=torch.float64)
    c_out, c_in_g, kh, kw = syn.weight.shape
    _, h_in, w_in = syn.in_shape
    ho, wo = syn.out_shape[1:]
    (sh, sw), (ph, pw) = syn.stride, syn.padding
    # the transpose of the connectivity: per input position, the number of (output, tap) pairs;
    # output_padding restores rows and columns that a stride leaves past the last window
    extra = (h_in - ((ho - 1) * sh - 2 * ph + kh), w_in - ((wo - 1) * sw - 2 * pw + kw))
    fan = F.conv_transpose2d(torch.ones(1, c_out, ho, wo, dtype=torch.float64),
                             torch.ones(c_out, c_in_g, kh, kw, dtype=torch.float64),
                             stride=syn.stride, padding=syn.padding, groups=syn.groups, output_padding=extra)
    return fan[0]


def windows(graph: DeployGraph, spikes: dict[str, torch.Tensor], timesteps: int,
            pipelined: bool = True) -> dict[str, torch.Tensor]:
    """Each population's spikes in its own T-step window: `(T, B, *shape)` (latency-free runs: the first T)."""
    return {p.name: spikes[p.name][(p.depth if pipelined else 0):][:timesteps] for p in graph.populations if p.name in spikes}


def count(graph: DeployGraph, spikes: dict[str, torch.Tensor], timesteps: int, encoding_once: bool = False,
          pipelined: bool = True, input_spikes: torch.Tensor | None = None, pipeline_known: bool = True,
          chip_steps: int | None = None) -> dict:
    """Counts per layer (graph order) and the global firing rates (both conventions).

    `pipelined`: spikes come from a Loihi-timed run (fixed point, Lava); False for the float run.
    `pipeline_known`: False when the run computed each layer's window only (`pipeline_spikes` None).
    `chip_steps`: the steps the chip runs per sample (T + latency), or None (a latency-free float run).
    `input_spikes (steps, B, *input_shape)`: binary input spikes of a graph whose `INPUT` synapse
    is on chip (lava-dl `.net` files without an input neuron); that synapse is then spike-fed
    (events and ACs) instead of the host's analog encoding layer (MACs).
    """
    T = timesteps
    win = windows(graph, spikes, T, pipelined)
    any_sp = next(iter(spikes.values()))
    B = any_sp.shape[1]
    layers = []
    for p in graph.populations:
        s = win.get(p.name)
        per_step = s.reshape(T, -1).sum(1).double() if s is not None else torch.zeros(T, dtype=torch.float64)
        n_spikes = float(per_step.sum())
        incoming = graph.incoming(p.name)
        events = acs = macs = 0.0
        dense = float(sum(x.dense_ops for x in incoming))
        for syn in incoming:
            if syn.source == INPUT and input_spikes is None:
                macs += syn.dense_ops * (1 if encoding_once else T) * B
                continue
            src = (input_spikes[:T] if syn.source == INPUT else win[syn.source]).double()  # (T, B, *in_shape)
            events += float((src.sum((0, 1)) * fanout_map(syn)).sum())
            fr_in = float(src.sum()) / (src[0, 0].numel() * T * B)
            acs += fr_in * T * syn.dense_ops * B
        total_spikes = float(spikes[p.name].sum()) if p.name in spikes else 0.0
        chip_events = _chip_run_events(graph, p, spikes, input_spikes) if pipeline_known else None
        layers.append({
            "name": p.name, "kind": p.neuron.kind, "neurons": p.size, "spikes": n_spikes,
            "spikes_per_step": per_step.tolist(),
            "firing_rate": n_spikes / (p.size * T * B) if p.neuron.kind != "readout" else None,
            "synaptic_events": events, "dense_ops": dense, "acs": acs, "macs": macs,
            "neuron_updates": p.size * T * B,
            "pipeline_spikes": total_spikes - n_spikes if pipeline_known else None,
            # the whole chip run (T + latency steps, pipeline fill included): what the chip executes
            "chip_run_synaptic_events": chip_events,
            "chip_run_neuron_updates": p.size * chip_steps * B if chip_steps is not None else None,
        })
    firing = [x for x in layers if x["firing_rate"] is not None]
    n_weighted = sum(x["spikes"] for x in firing) / max(sum(x["neurons"] * T * B for x in firing), 1)
    mean_of_layers = sum(x["firing_rate"] for x in firing) / max(len(firing), 1)
    totals = {k: sum(x[k] for x in layers) for k in ("spikes", "synaptic_events", "dense_ops", "acs", "macs", "neuron_updates")}
    totals.update(_chip_totals(layers))
    return {
        "samples": B, "timesteps": T, "layers": layers,
        "firing_rate_neuron_weighted": n_weighted, "firing_rate_mean_of_layers": mean_of_layers,
        "totals": {**totals, "ops": totals["acs"] + totals["macs"]},
        "conventions": {
            "dense_ops": "k_h*k_w*C_in/groups*C_out*H_out*W_out (conv) or f_in*f_out (linear), per step, original layers",
            "acs": "sum over spike-fed layers of fr_in * T * dense_ops, summed over samples",
            "macs": f"encoding layer dense_ops x {'1 (once per inference)' if encoding_once else 'T (every step)'}, summed over samples",
            "synaptic_events": "exact: each input spike times its padding-aware fan-out",
            "window": "each layer's T steps after its latency; pipeline-fill spikes reported apart",
            "priced": "the window counts (spikes, synaptic_events, neuron_updates of each layer's T steps)",
            "chip_run": "chip_run_*: every step the chip runs per sample (T + latency), pipeline fill included; "
                        "null where the run computed windows only (fxp without --all-steps: events) or has no "
                        "pipeline (float)",
        },
    }


def _chip_run_events(graph: DeployGraph, p, spikes: dict[str, torch.Tensor], input_spikes) -> float:
    """Synaptic events into `p` over every step run: each spike any source sent, times its fan-out."""
    events = 0.0
    for syn in graph.incoming(p.name):
        if syn.source == INPUT and input_spikes is None:
            continue  # the host's analog encoding layer: MACs, not events
        src = (input_spikes if syn.source == INPUT else spikes[syn.source]).double()
        events += float((src.sum((0, 1)) * fanout_map(syn)).sum())
    return events


CHIP_KEYS = ("chip_run_synaptic_events", "chip_run_neuron_updates")


def _chip_totals(layers: list[dict]) -> dict:
    return {k: None if any(x[k] is None for x in layers) else sum(x[k] for x in layers) for k in CHIP_KEYS}


SUMMED = ("spikes", "synaptic_events", "acs", "macs", "neuron_updates", "pipeline_spikes", *CHIP_KEYS)


def merge_counts(parts: list[dict]) -> dict:
    """The counts of several batches of samples as one (sums; rates recomputed)."""
    first = parts[0]
    T = first["timesteps"]
    B = sum(p["samples"] for p in parts)
    layers = []
    for i, layer in enumerate(first["layers"]):
        merged = dict(layer)
        for k in SUMMED:
            vals = [p["layers"][i][k] for p in parts]
            merged[k] = None if any(v is None for v in vals) else sum(vals)
        merged["spikes_per_step"] = [sum(p["layers"][i]["spikes_per_step"][t] for p in parts) for t in range(T)]
        if layer["firing_rate"] is not None:
            merged["firing_rate"] = merged["spikes"] / (layer["neurons"] * T * B)
        layers.append(merged)
    firing = [x for x in layers if x["firing_rate"] is not None]
    totals = {k: sum(x[k] for x in layers) for k in ("spikes", "synaptic_events", "dense_ops", "acs", "macs", "neuron_updates")}
    totals.update(_chip_totals(layers))
    return {
        **first, "samples": B, "layers": layers,
        "firing_rate_neuron_weighted": sum(x["spikes"] for x in firing) / max(sum(x["neurons"] * T * B for x in firing), 1),
        "firing_rate_mean_of_layers": sum(x["firing_rate"] for x in firing) / max(len(firing), 1),
        "totals": {**totals, "ops": totals["acs"] + totals["macs"]},
    }
