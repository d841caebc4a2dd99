"""Loihi 2 fixed-point simulation of a quantized deployment graph, batched (spec/loihi2.md §B).

Integer arithmetic exactly as Lava's `PyLifModelBitAcc`, `PyDenseModelBitAcc` and
`PyConvModelFixed` compute it: decays with round toward zero, u wrapped and v saturated to 24
bits, `v > vth << 6`, reset of v to 0, one step of latency per synapse layer (plus any
path-matching delay), conv output wrapped to 24 bits. Population k is reset (u = v = 0) at step
`depth + 1`, before its update, as netx's `reset_interval` staggers it, so biases do not
integrate before the first input arrives; a run of `T + latency` steps then shows every input
step at the readout.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..export.graph import DeployGraph, Synapse

UV_MAX = 2**23  # 24-bit u and v


def decay(x: torch.Tensor, d: int) -> torch.Tensor:
    """x * (4096 - d) / 4096, rounded toward zero (Lava: sign(p) * (|p| >> 12))."""
    if d == 0:
        return x
    if d == 4096:
        return torch.zeros_like(x)
    return torch.div(x * (4096 - d), 4096, rounding_mode="trunc")


def wrap_u(u: torch.Tensor) -> torch.Tensor:
    # Lava's own wrap: one correction of 2^24 either way (it is not a full modulo)
    w = torch.where(u > UV_MAX, u - 2 * UV_MAX, u)
    return torch.where(w <= -UV_MAX, u + 2 * UV_MAX, w)


def wrap24(x: torch.Tensor) -> torch.Tensor:
    """Two's-complement wrap to signed 24 bits (Lava's conv `signed_clamp`)."""
    return torch.remainder(x + UV_MAX, 2 * UV_MAX) - UV_MAX


def lif_step(u, v, a, bias, i_decay: int, v_decay: int, v_th: int, bias_is_shifted: bool = False):
    """One Loihi CUBA LIF update (netx units: du = iDecay - 1 plus Lava's offset 1 = iDecay).

    Returns (u, v, spikes); all int64 tensors of one shape, `a` the synaptic input (or None for
    none). `bias_is_shifted`: `bias` already holds `bias_mant << 6` (hoisted out of the step loop).
    """
    if a is None:
        a = torch.zeros_like(v)
    u = a << 6 if i_decay == 4096 else decay(u, i_decay) + (a << 6)  # iDecay 4096: no current memory
    if bool(u.abs().max() >= UV_MAX) if u.numel() else False:
        u = wrap_u(u)
    v = decay(v, v_decay) + u + (bias if bias_is_shifted else bias << 6)
    v.clamp_(-(UV_MAX - 1), UV_MAX - 1)
    s = v > (v_th << 6)
    return u, v.masked_fill_(s, 0), s


def exact_dtype(w_int) -> torch.dtype:
    """float32 when every partial sum of binary inputs is an integer below 2^24 (exact), else float64."""
    import numpy as np

    fan_in = int(np.prod(w_int.shape[1:]))
    return torch.float32 if int(np.abs(w_int).max(initial=0)) * fan_in < 2**24 else torch.float64


def synapse_int(syn: Synapse, s: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Integer accumulation of one synapse layer over binary spikes `s (B, *in_shape)`.

    `w` is float32 or float64 as `exact_dtype` chose: either way the sums are exact integers.
    """
    if syn.kind == "dense":
        return (s.reshape(s.shape[0], -1).to(w.dtype) @ w.T).round().long().reshape(s.shape[0], *syn.out_shape)
    acc = F.conv2d(s.to(w.dtype), w, stride=syn.stride, padding=syn.padding, groups=syn.groups)
    return wrap24(acc.round().long())


@torch.no_grad()
def run_fxp(graph: DeployGraph, enc_bias: torch.Tensor, timesteps: int, record: bool = True) -> dict:
    """Run the quantized graph for `timesteps + latency` steps.

    Shape:
        enc_bias: `(B, *encoding_population.shape)` int bias mantissas (the host's encoding output).
        Returns `v_readout (B, K)` after the last step, `v_readout_steps (steps, B, K)`, and with
        `record` the spikes of every firing population, `spikes[pop] (steps, B, *shape)` (bool).
    """
    B = enc_bias.shape[0]
    steps = timesteps + graph.latency_steps
    enc_pop = graph.encoding[0].target
    chip = [s for s in graph.synapses if not s.host]
    w = {s.name: torch.as_tensor(s.weight_int, dtype=exact_dtype(s.weight_int)) for s in chip}
    # bias << 6 once, not every step
    bias = {p.name: (enc_bias.long() if p.name == enc_pop else torch.as_tensor(p.bias_mant).long()) << 6
            for p in graph.populations}
    u = {p.name: torch.zeros(B, *p.shape, dtype=torch.long) for p in graph.populations}
    v = {p.name: torch.zeros(B, *p.shape, dtype=torch.long) for p in graph.populations}
    queue = {s.name: [torch.zeros(B, *s.out_shape, dtype=torch.long) for _ in range(1 + s.delay)] for s in chip}
    spikes = {p.name: [] for p in graph.populations if p.neuron.kind != "readout"}
    v_out = []
    for t in range(1, steps + 1):
        a: dict[str, torch.Tensor] = {}
        for s in chip:
            acc = queue[s.name].pop(0)
            a[s.target] = acc if s.target not in a else a[s.target] + acc
        out = {}
        for p in graph.populations:
            if t == p.depth + 1:
                u[p.name].zero_()
                v[p.name].zero_()
            u[p.name], v[p.name], out[p.name] = lif_step(u[p.name], v[p.name], a.get(p.name), bias[p.name],
                                                         p.i_decay, p.v_decay, p.v_th_mant, bias_is_shifted=True)
            if p.name in spikes and record:
                spikes[p.name].append(out[p.name])
        for s in chip:
            src = out[s.source]
            # a silent source sends nothing: skip the convolution (deep layers before their window)
            acc = synapse_int(s, src, w[s.name]) if src.any() else torch.zeros(B, *s.out_shape, dtype=torch.long)
            queue[s.name].append(acc)
        v_out.append(v[graph.readout.name].clone())
    res = {"v_readout": v[graph.readout.name], "v_readout_steps": torch.stack(v_out), "steps": steps}
    if record:
        res["spikes"] = {k: torch.stack(x) for k, x in spikes.items()}
    return res
