"""NeuroBench's static and workload metrics, by the definitions of neurobench 2.3.0, from the
deployment graph and a simulation's spikes. Pure functions; docs/simulate.md#neurobench-metrics.

NeuroBench measures a torch model through hooks: its *connection layers* are the `nn.Linear` and
`nn.Conv*` modules, its *activation layers* the neuron modules. Here a connection layer is a
synapse layer of the graph that stands for one conv/linear of the trained model (`dense_ops > 0`:
identity shortcuts and the extra copies of a SEW sum are no layers of the torch model), and an
activation layer is a firing population (the readout is the last linear's output, no neuron).
Workload numbers are per sample (totals over the samples divided by their number), as
NeuroBench's accumulated metrics give them.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import ConfigError
from .counters import fanout_map
from .float_graph import neuron_step, synapse_forward
from .graph import INPUT, DeployGraph, Synapse

NEUROBENCH_VERSION = "2.3.0"  # whose definitions these are (tests run that release)
FLOAT_BYTES = 4  # the float network is float32, as trained and as NeuroBench is given it

CONVENTIONS = {
    "Footprint": "bytes of the folded float32 network's parameters and buffers: every conv/linear's weights of the "
                 "original layer plus one bias per output channel (BatchNorm folding gives each one); no buffers",
    "ConnectionSparsity": "zero weights / all weights of the conv/linear layers (biases not counted), unrounded "
                          "(NeuroBench rounds to 4 decimals); zeros of the weights the backend ran",
    "ActivationSparsity": "1 - spikes / (neurons x T x samples) over the spiking layers (readout excluded)",
    "SynapticOperations": "per sample: Effective_ACs (layers fed by binary inputs) and Effective_MACs (fed by any "
                          "other value, decided per batch) count (nonzero input, nonzero weight) pairs with the "
                          "output in bounds, every step; Dense counts every in-bounds (input, weight) pair every step",
    "MembraneUpdates": "per sample: per spiking neuron, 1 for the first step and 1 for each later step whose "
                       "membrane potential after the step differs from the one before (float backend only)",
}


def connection_layers(graph: DeployGraph) -> list[Synapse]:
    """The synapse layers that are conv/linear modules of the trained model."""
    return [s for s in graph.synapses if s.dense_ops > 0]


def _original_weights(syn: Synapse) -> int:
    # dense_ops counts the original layer per step (before average-pool folding widened it):
    # a conv's weights times its output positions, a linear's weights
    return syn.dense_ops // int(np.prod(syn.out_shape[1:])) if syn.kind == "conv" else syn.dense_ops


def ran_weights(syn: Synapse, backend: str) -> np.ndarray:
    """The weights the backend computed with: float ones for `float` and the host's encoding
    layer, the integer mantissas on chip for `fxp` and `lava`."""
    if backend == "float" or syn.source == INPUT or syn.weight_int is None:
        return np.asarray(syn.weight)
    return np.asarray(syn.weight_int)


def footprint(graph: DeployGraph) -> int:
    """NeuroBench's Footprint: bytes of all parameters and buffers of the model given to it.

    For the folded float network (what `--backend float` runs): float32 weights of every
    conv/linear and one bias per output channel; spikingjelly's neurons hold no buffers.
    """
    return FLOAT_BYTES * sum(_original_weights(s) + int(s.out_shape[0]) for s in connection_layers(graph))


def connection_sparsity(graph: DeployGraph, backend: str = "float") -> float:
    """NeuroBench's ConnectionSparsity: the fraction of zero weights over the conv/linear layers.

    Unrounded (NeuroBench rounds to 4 decimals). A layer widened by average-pool folding repeats
    each original weight, so its zero fraction is the original layer's.
    """
    layers = connection_layers(graph)
    total = sum(_original_weights(s) for s in layers)
    if total == 0:
        raise ConfigError("the graph has no conv or linear layer; NeuroBench's ConnectionSparsity needs one")
    zeros = sum(float(np.mean(ran_weights(s, backend) == 0)) * _original_weights(s) for s in layers)
    return zeros / total


def _ops(syn: Synapse, counts: torch.Tensor, weight: torch.Tensor) -> float:
    # sum over calls of conv(binary input, binary weight) == conv(per-position count of nonzero inputs):
    # the layer is linear, so one call gives every (nonzero input, nonzero weight, in-bounds output) triple
    return float(synapse_forward(syn, counts.unsqueeze(0), weight).sum())


def batch_metrics(graph: DeployGraph, x: torch.Tensor, windows: dict[str, torch.Tensor], timesteps: int,
                  backend: str, membrane: bool = False) -> dict:
    """One batch's NeuroBench counts (totals over its samples).

    Shape:
        x: `(B, *input_shape)`, the static input, presented every step (direct encoding);
        windows[pop]: `(T, B, *shape)`, each firing population's spikes in its T-step window.

    NeuroBench decides per call whether a layer's input is spiking (every value in {-1, 0, 1}):
    spike-fed layers always are, the encoding layer is when the batch's inputs are.
    `membrane`: also count MembraneUpdates, replaying the float neuron dynamics (float backend).
    """
    T, B = timesteps, int(x.shape[0])
    xd = x.detach().cpu().double()
    out = {"samples": B, "Effective_MACs": 0.0, "Effective_ACs": 0.0, "Dense": 0.0, "spikes": 0.0, "activations": 0}
    for syn in connection_layers(graph):
        w = torch.as_tensor(ran_weights(syn, backend) != 0, dtype=torch.float64)
        if syn.source == INPUT:
            spiking = bool(((xd == 0) | (xd == 1) | (xd == -1)).all())
            nonzero = T * (xd != 0).sum(0).double()
        else:
            spiking, nonzero = True, (windows[syn.source][:T] != 0).sum((0, 1)).double()
        out["Effective_ACs" if spiking else "Effective_MACs"] += _ops(syn, nonzero, w)
        out["Dense"] += T * B * float(fanout_map(syn).sum())
    for p in graph.populations:
        if p.neuron.kind != "readout":
            out["spikes"] += float(windows[p.name][:T].double().sum())
            out["activations"] += p.size * T * B
    out["MembraneUpdates"] = membrane_updates(graph, x, windows, T) if membrane else None
    return out


@torch.no_grad()
def membrane_updates(graph: DeployGraph, x: torch.Tensor, windows: dict[str, torch.Tensor], timesteps: int) -> float:
    """NeuroBench's MembraneUpdates (totals over the batch) of the float network.

    NeuroBench compares each neuron's membrane potential before and after every step (after
    the reset): the first step counts every neuron, a later one the neurons whose potential
    changed. The potentials are recomputed here with the float backend's own arithmetic
    (`float_graph`, same dtype, sources from the recorded spikes), so they are its potentials.
    """
    dt = x.dtype if x.dtype.is_floating_point else torch.float32
    xs, B = x.detach().cpu().to(dt), int(x.shape[0])
    total = 0
    for p in graph.populations:
        if p.neuron.kind == "readout":
            continue
        v = torch.full((B, *p.shape), 0.0 if p.neuron.v_reset is None else p.neuron.v_reset, dtype=dt)
        bias = torch.as_tensor(graph.biases[p.name], dtype=dt).expand(B, *p.shape)
        incoming = [(s, torch.as_tensor(s.weight, dtype=dt)) for s in graph.incoming(p.name)]
        for t in range(timesteps):
            cur = bias.clone()
            for syn, w in incoming:
                cur += synapse_forward(syn, xs if syn.source == INPUT else windows[syn.source][t].to(dt), w)
            _, v_new = neuron_step(p.neuron, v, cur)
            total += v_new.numel() if t == 0 else int(torch.count_nonzero(v_new - v))
            v = v_new
    return float(total)


def summarize(graph: DeployGraph, parts: list[dict], backend: str) -> dict:
    """simulation.json's `neurobench` block from the batches' counts."""
    n = sum(p["samples"] for p in parts)
    activations = sum(p["activations"] for p in parts)
    mu = [p["MembraneUpdates"] for p in parts]
    return {
        "version": NEUROBENCH_VERSION,
        "model": "folded float network" if backend == "float" else f"folded network, {backend} spikes and weights",
        "Footprint": footprint(graph),
        "ConnectionSparsity": connection_sparsity(graph, backend),
        "ActivationSparsity": 1.0 - sum(p["spikes"] for p in parts) / activations if activations else 0.0,
        "SynapticOperations": {k: sum(p[k] for p in parts) / n for k in ("Effective_MACs", "Effective_ACs", "Dense")},
        "MembraneUpdates": None if any(m is None for m in mu) else sum(mu) / n,
        "conventions": dict(CONVENTIONS),
    }
