"""The deployment graph run in floating point with spikingjelly's semantics and no latency.

This is the float network after folding: it must give the trained model's outputs (the
folding test), and it is the reference the quantized network is compared with.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .graph import INPUT, DeployGraph, Neuron, Synapse


def synapse_forward(syn: Synapse, s: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """One synapse layer on a batch of source activity.

    Shape:
        s: `(B, *syn.in_shape)`; returns `(B, *syn.out_shape)`.
    """
    if syn.kind == "dense":
        return (s.reshape(s.shape[0], -1) @ weight.T).reshape(s.shape[0], *syn.out_shape)
    return F.conv2d(s, weight, stride=syn.stride, padding=syn.padding, groups=syn.groups)


def neuron_step(n: Neuron, v: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """spikingjelly's charge, fire (H >= threshold) and reset; returns (spikes, new v).

    For `cuba`, x is the synaptic current (`current_step`'s), and v leaks toward 0, not v_reset.
    """
    vr = 0.0 if n.v_reset is None else n.v_reset
    if n.kind in ("if", "source"):  # source: input 1, threshold 1: a spike every step
        h = v + x
    elif n.kind == "cuba":
        h = v * (1 - 1 / n.tau) + x
    elif n.decay_input:
        h = v + (x - (v - vr)) / n.tau
    else:
        h = v - (v - vr) / n.tau + x
    s = (h >= n.v_threshold).to(h.dtype)
    v = h - s * n.v_threshold if n.v_reset is None else s * vr + (1 - s) * h
    return s, v


def current_step(n: Neuron, c: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """CUBALIFNode's synaptic current: `c * c_decay + x`, c_decay = 1 - 1/tau_syn."""
    return c * (1 - 1 / n.tau_syn) + x


@torch.no_grad()
def run_float(graph: DeployGraph, x: torch.Tensor, record: bool = False) -> dict[str, torch.Tensor]:
    """Run the float graph.

    Shape:
        x: `(T, B, C, H, W)` direct-encoded input; returns `logits (T, B, K)` (the readout's
        input at each step; with a spike readout, the output population's spikes, whose
        time-mean is the model's output) and, with `record`, `spikes[pop] (T, B, *shape)` of every
        firing population (a spike readout's output included).
    """
    T, B = x.shape[:2]
    dt = x.dtype
    dev = x.device
    weights = {s.name: torch.as_tensor(s.weight, dtype=dt, device=dev) for s in graph.synapses}
    biases = {p: torch.as_tensor(b, dtype=dt, device=dev) for p, b in graph.biases.items()}
    v = {p.name: torch.full((B, *p.shape), 0.0 if p.neuron.v_reset is None else p.neuron.v_reset, dtype=dt,
                            device=dev) for p in graph.populations}
    c = {p.name: torch.zeros((B, *p.shape), dtype=dt, device=dev) for p in graph.populations if p.neuron.kind == "cuba"}
    logits, spikes = [], {p.name: [] for p in graph.populations if p.neuron.kind != "readout"}
    for t in range(T):
        act = {INPUT: x[t]}
        for p in graph.populations:
            cur = biases[p.name].expand(B, *p.shape).clone()
            for syn in graph.incoming(p.name):
                cur += synapse_forward(syn, act[syn.source], weights[syn.name])
            if p.neuron.kind == "readout":
                logits.append(cur)
                continue
            if p.name in c:
                cur = c[p.name] = current_step(p.neuron, c[p.name], cur)
            act[p.name], v[p.name] = neuron_step(p.neuron, v[p.name], cur)
            if record:
                spikes[p.name].append(act[p.name])
        if graph.readout_kind == "spikes":
            logits.append(act[graph.readout.name])
    out = {"logits": torch.stack(logits)}
    if record:
        out["spikes"] = {k: torch.stack(s) for k, s in spikes.items()}
    return out
