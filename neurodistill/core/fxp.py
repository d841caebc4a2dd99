"""Loihi 2 fixed-point simulation of a quantized deployment graph, batched (docs/loihi2.md#fixed-point-neuron-update).

Integer arithmetic exactly as Lava's `PyLifModelBitAcc`, `PyDenseModelBitAcc` and
`PyConvModelFixed` compute it: decays with round toward zero, u wrapped and v saturated to 24
bits, `v > vth << 6`, reset of v to 0, one step of latency per synapse layer (plus any
path-matching delay), conv output wrapped to 24 bits. Population k is reset (u = v = 0) at step
`depth + 1`, before its update, as netx's `reset_interval` staggers it, so biases do not
integrate before the first input arrives; a run of `T + latency` steps then shows every input
step at the readout.

Time-batched: the graph is feed-forward, so each population can be run over all steps once its
sources have been (their spikes at step t reach it at step t + 1 + delay). A synapse layer then
convolves every step of its source in one call, and the neuron update runs in place in float32
where every value is an integer float32 holds exactly, float64 otherwise (`state_dtype`). The
result is the step-by-step integer run's, bit for bit (tests/test_fxp_engine.py, and Lava).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .graph import INPUT, DeployGraph, Synapse
from .quantize import UV_MAX
from .ranges import acc_bound, u_bound


def wrap_u(u: torch.Tensor) -> torch.Tensor:
    # Lava's own wrap: one correction of 2^24 either way (it is not a full modulo)
    w = torch.where(u > UV_MAX, u - 2 * UV_MAX, u)
    return torch.where(w <= -UV_MAX, u + 2 * UV_MAX, w)


def wrap24(x: torch.Tensor) -> torch.Tensor:
    """Two's-complement wrap to signed 24 bits (Lava's conv `signed_clamp`)."""
    return torch.remainder(x + UV_MAX, 2 * UV_MAX) - UV_MAX


def exact_dtype(w_int) -> torch.dtype:
    """float32 when every partial sum of binary inputs is an integer below 2^24 (exact), else float64."""
    import numpy as np

    fan_in = int(np.prod(w_int.shape[1:]))
    return torch.float32 if int(np.abs(w_int).max(initial=0)) * fan_in < 2**24 else torch.float64


def _pow2_or_zero(q: int) -> bool:
    return q == 0 or (q & (q - 1)) == 0


def state_dtype(i_decay: int, v_decay: int, a_max: float) -> torch.dtype:
    """float32 when every value of a population's update is an integer float32 holds exactly, else float64.

    Exact in float32: decays whose factor `(4096 - d) / 4096` is a power of two (tau = 2, IF, no
    current memory: the product only moves the exponent), and synaptic input with
    `|a| << 6 < 2^23`, so `u` never wraps and `u + bias` stays below 2^24. A sum above 2^24 is
    only inexact beyond the 24-bit saturation bound, which it is then clamped to either way.
    float64 holds every 24-bit state and 36-bit product exactly.
    """
    ok = _pow2_or_zero(4096 - i_decay) and _pow2_or_zero(4096 - v_decay) and a_max * 64 < UV_MAX
    return torch.float32 if ok else torch.float64


def _trunc_decay_(x: torch.Tensor, d: int) -> torch.Tensor:
    """In place: x * (4096 - d) / 4096 rounded toward zero; exact for integer floats (see state_dtype)."""
    if d == 4096:
        return x.zero_()
    if d:
        x.mul_((4096 - d) / 4096).trunc_()
    return x


def synapse_int(syn: Synapse, s: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Integer accumulation of one synapse layer over binary spikes `s (N, *in_shape)`.

    `w` is float32 or float64 as `exact_dtype` chose: either way the sums are exact integers, in
    `w`'s dtype; a conv accumulation that can pass 24 bits is wrapped (then float64).
    """
    if w.is_cuda:
        # cuDNN may choose Winograd or FFT convolutions (fractional transforms) and TF32 for float32:
        # neither sums integers exactly. In float64 (no TF32) their error stays far below 0.5, so
        # rounding gives the exact sums, returned in w's dtype (exact_dtype made that exact too).
        acc = _accumulate(syn, s.double(), w.double()).round_().to(w.dtype)
    else:
        acc = _accumulate(syn, s.to(w.dtype), w)
    if syn.kind == "dense":
        return acc
    if acc_bound(syn.weight_int) >= UV_MAX:
        lo, hi = torch.aminmax(acc)
        if float(lo) < -UV_MAX or float(hi) >= UV_MAX:
            acc = wrap24(acc.double().round().long()).double()
    return acc


def _accumulate(syn: Synapse, s: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    if syn.kind == "dense":
        return (s.reshape(s.shape[0], -1) @ w.T).reshape(s.shape[0], *syn.out_shape)
    return F.conv2d(s, w, stride=syn.stride, padding=syn.padding, groups=syn.groups)


def synaptic_input(graph: DeployGraph, pop, span: tuple[int, int], spikes: dict, weights: dict, batch: int,
                   input_spikes: torch.Tensor | None) -> torch.Tensor | None:
    """The synaptic input of `pop` at steps `span = [first, last)`, `(last - first, B, *shape)`, or None.

    Exact integers in float32 when every incoming accumulation together stays below 2^23 (no wrap,
    exact sums), else float64. Time-batched: each synapse layer convolves all the needed steps of
    its source at once (the source population was computed before: the graph is a DAG in
    topological order). Spikes sent at step t arrive at step t + 1 + delay. `spikes[name]` is
    `(offset, tensor)`: the source's spikes at steps offset, offset + 1, ...
    """
    first, last = span
    incoming = [s for s in graph.incoming(pop.name) if not (s.host and input_spikes is None)]
    if not incoming:
        return None
    exact32 = all(weights[s.name].dtype == torch.float32 for s in incoming) and \
        sum(acc_bound(s.weight_int) for s in incoming) < UV_MAX
    total = None
    for syn in incoming:
        lag = 1 + syn.delay
        off, src = (0, input_spikes) if syn.source == INPUT else spikes[syn.source]
        # source steps that arrive inside the span: [first - lag, last - lag), as stored
        lo, hi = max(first - lag, off), min(last - lag, off + src.shape[0])
        if lo >= hi:
            continue
        part = src[lo - off: hi - off]
        active = part.reshape(part.shape[0], -1).any(1).nonzero()
        if active.numel() == 0:
            continue  # a silent source sends nothing
        t0, t1 = lo + int(active[0]), lo + int(active[-1]) + 1
        x = src[t0 - off: t1 - off].reshape((t1 - t0) * batch, *syn.in_shape)
        acc = synapse_int(syn, x, weights[syn.name]).reshape(t1 - t0, batch, *syn.out_shape)
        if total is None:
            dt = torch.float32 if exact32 else torch.float64
            total = torch.zeros(last - first, batch, *pop.shape, dtype=dt, device=acc.device)
        total[t0 + lag - first: t1 + lag - first] += acc
    return total


def windows_suffice(graph: DeployGraph) -> bool:
    """Whether each population's T-step window depends on its sources' windows only.

    True when every on-chip synapse spans exactly its path length (target depth = source depth
    + 1 + delay), as capture's path-matching delays make it: with the staggered reset, the
    steps before and after a window (pipeline fill) then never reach another window.
    """
    depth = {p.name: p.depth for p in graph.populations}
    return all(depth[s.target] == depth[s.source] + 1 + s.delay for s in graph.synapses if not s.host)


def run_populations(graph: DeployGraph, steps: int, batch: int, *, bias: dict[str, torch.Tensor],
                    staggered_reset: bool, input_spikes: torch.Tensor | None = None, window: int | None = None) -> dict:
    """The engine of `run_fxp` and `fxp_spikes.run_fxp_spike_input`: one population after another,
    each over all its steps, bit-exact with Lava's step-by-step execution.

    `bias[pop]`: bias mantissas `(B or 1, *shape)`; `staggered_reset`: population at depth d is
    reset (u = v = 0) at step d + 1 before its update (netx reset_interval), else never.
    `window`: with the staggered reset and `windows_suffice`, run population d only in its steps
    `[d, d + window)` (its reset makes the first of them start from rest).
    Returns `spikes[pop]` bool for every population (the readout's too) and `v_readout_steps`
    int64: `(steps, B, *shape)`, or with `window` `(window, B, *shape)` each population's own
    window; `v_readout` (the last value) and `steps`.
    """
    if window is not None and not (staggered_reset and windows_suffice(graph)):
        raise ValueError("window needs the staggered reset and path-matched delays (windows_suffice)")
    chip = [s for s in graph.synapses if not (s.host and input_spikes is None)]
    dev = next(iter(bias.values())).device if input_spikes is None else input_spikes.device
    weights = {s.name: torch.as_tensor(s.weight_int, dtype=exact_dtype(s.weight_int), device=dev) for s in chip}
    spikes: dict[str, tuple[int, torch.Tensor]] = {}
    v_steps = None
    for p in graph.populations:
        first, last = (p.depth, min(p.depth + window, steps)) if window is not None else (0, steps)
        n = last - first
        a = synaptic_input(graph, p, (first, last), spikes, weights, batch, input_spikes)
        if a is not None:
            lo, hi = torch.aminmax(a)
            a_max = max(-float(lo), float(hi))
        else:
            a_max = 0.0
        dt = state_dtype(p.i_decay, p.v_decay, a_max)
        b = (bias[p.name].to(dev, dt) * 64).expand(batch, *p.shape)
        # static bounds: wrapping and clamping are skipped where they cannot happen
        b_max = float(bias[p.name].abs().max()) * 64 if bias[p.name].numel() else 0.0
        u_raw = u_bound(a_max, p.i_decay)  # until it wraps
        wrap = u_raw >= UV_MAX
        clamp = p.v_decay == 0 or (min(u_raw, UV_MAX) + b_max) * 4096 / p.v_decay >= UV_MAX - 1
        if a is not None:
            a = a.to(dt).mul_(64)  # a << 6 (in place when already of dtype dt)
        # the current entering v each step when the current has no memory (i_decay 4096): a << 6 plus bias
        if p.i_decay == 4096:
            if a is None:
                c = b.unsqueeze(0).expand(n, *b.shape)
            else:
                c = wrap_u(a) if wrap else a
                c += b
        u = torch.zeros(batch, *p.shape, dtype=dt, device=dev)
        v = torch.zeros(batch, *p.shape, dtype=dt, device=dev)
        th = float(p.v_th_mant << 6)
        s_out = torch.empty(n, batch, *p.shape, dtype=torch.bool, device=dev)
        readout = p is graph.readout
        if readout:
            v_steps = torch.empty(n, batch, *p.shape, dtype=torch.long, device=dev)
        reset_at = p.depth if staggered_reset else -1
        for i, t in enumerate(range(first, last)):
            if t == reset_at:
                u.zero_()
                v.zero_()
            if p.i_decay == 4096:
                ct = c[i]
            else:
                _trunc_decay_(u, p.i_decay)
                if a is not None:
                    u += a[i]
                    if wrap:
                        u = wrap_u(u)
                ct = u + b
            _trunc_decay_(v, p.v_decay).add_(ct)
            if clamp:
                v.clamp_(-(UV_MAX - 1), UV_MAX - 1)
            s = torch.gt(v, th, out=s_out[i])
            v.masked_fill_(s, 0)
            if readout:
                v_steps[i] = v
        spikes[p.name] = (first, s_out)
    return {"spikes": {k: x for k, (_, x) in spikes.items()}, "v_readout_steps": v_steps, "v_readout": v_steps[-1],
            "steps": steps}


@torch.no_grad()
def run_fxp(graph: DeployGraph, enc_bias: torch.Tensor, timesteps: int, record: bool = True,
            windows_only: bool = False) -> dict:
    """Run the quantized graph for `timesteps + latency` steps.

    `windows_only`: compute each population in its own T-step window only (where
    `windows_suffice`; else every step, and `windows_only` is False in the result): the same
    readout and window spikes, faster for deep graphs; `spikes[pop]` is then `(T, B, *shape)`,
    the population's window, and `v_readout_steps` the readout's window.

    Shape:
        enc_bias: `(B, *encoding_population.shape)` int bias mantissas (the host's encoding output).
        Returns `v_readout (B, K)` after the last step, `v_readout_steps (steps, B, K)`, and with
        `record` the spikes of every firing population, `spikes[pop] (steps, B, *shape)` (bool), a
        spike readout's output included (its voltage is then `v_readout`, after its own resets).
    """
    B = enc_bias.shape[0]
    steps = timesteps + graph.latency_steps
    enc_pop = graph.encoding[0].target
    # everything runs where enc_bias lives (CPU or CUDA)
    bias = {p.name: torch.as_tensor(enc_bias if p.name == enc_pop else p.bias_mant, device=enc_bias.device)
            for p in graph.populations}
    window = timesteps if windows_only and windows_suffice(graph) else None
    res = run_populations(graph, steps, B, bias=bias, staggered_reset=True, window=window)
    res["windows_only"] = window is not None
    if record:
        # a voltage readout never fires; a spike readout's spikes are its output
        res["spikes"] = {k: x for k, x in res["spikes"].items() if graph.population(k).neuron.kind != "readout"}
    else:
        del res["spikes"]
    return res
