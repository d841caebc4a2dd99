"""The time-batched fixed-point engine against a step-by-step integer reference, at the edges.

`run_fxp` computes one population after another over all steps in float32/float64 where that
is exact (fxp.state_dtype). The reference below runs Lava's equations (docs/loihi2.md#fixed-point-neuron-update) one
step at a time in numpy int64 for any graph (several synapses into one population, delays), and
shares no code with it. The graphs are built to reach what trained networks rarely do: u
wrapping past 24 bits, v saturating, decays whose factor is not a power of two, no current
memory and full current memory, negative and large biases.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurodistill.core.fxp import run_fxp, windows_suffice
from neurodistill.core.fxp_spikes import run_fxp_spike_input
from neurodistill.core.graph import INPUT, DeployGraph, Neuron, Population, Synapse

M = 2**23


def ref_decay(x, d):
    p = x * (4096 - d)
    return np.sign(p) * (np.abs(p) >> 12)


def ref_conv(s, w, stride, pad):
    b = s.shape[0]
    s = np.pad(s, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    o, _, kh, kw = w.shape
    ho, wo = (s.shape[2] - kh) // stride[0] + 1, (s.shape[3] - kw) // stride[1] + 1
    out = np.zeros((b, o, ho, wo), np.int64)
    for y in range(ho):
        for x in range(wo):
            win = s[:, :, y * stride[0]: y * stride[0] + kh, x * stride[1]: x * stride[1] + kw]
            out[:, :, y, x] = np.tensordot(win, w, axes=([1, 2, 3], [1, 2, 3]))
    return (out + M) % (2 * M) - M


def reference(graph: DeployGraph, bias: dict, steps: int, reset: bool, in_spikes=None):
    pops = graph.populations
    B = max(b.shape[0] for b in bias.values()) if in_spikes is None else in_spikes.shape[1]
    u = {p.name: np.zeros((B, *p.shape), np.int64) for p in pops}
    v = {p.name: np.zeros((B, *p.shape), np.int64) for p in pops}
    chip = [s for s in graph.synapses if not (s.host and in_spikes is None)]
    queue = {s.name: [np.zeros((B, *s.out_shape), np.int64) for _ in range(1 + s.delay)] for s in chip}
    spikes = {p.name: [] for p in pops}
    vout, edges = [], {"wrap": False, "saturate": False}
    for t in range(1, steps + 1):
        a = {p.name: np.zeros((B, *p.shape), np.int64) for p in pops}
        for s in chip:
            a[s.target] += queue[s.name].pop(0)
        out = {}
        for p in pops:
            if reset and t == p.depth + 1:
                u[p.name][:], v[p.name][:] = 0, 0
            uu = ref_decay(u[p.name], p.i_decay) + (a[p.name] << 6)
            edges["wrap"] |= bool((np.abs(uu) >= M).any())
            w = np.where(uu > M, uu - 2 * M, uu)
            u[p.name] = np.where(w <= -M, uu + 2 * M, w)
            vv = ref_decay(v[p.name], p.v_decay) + u[p.name] + (bias[p.name] << 6)
            edges["saturate"] |= bool((np.abs(vv) >= M).any())
            vv = np.clip(vv, -(M - 1), M - 1)
            s = vv > (p.v_th_mant << 6)
            v[p.name] = np.where(s, 0, vv)
            out[p.name] = s.astype(np.int64)
            spikes[p.name].append(s)
        for s in chip:
            src = in_spikes[t - 1].astype(np.int64) if s.source == INPUT else out[s.source]
            acc = (src.reshape(B, -1) @ s.weight_int.T).reshape(B, *s.out_shape) if s.kind == "dense" \
                else ref_conv(src, s.weight_int, s.stride, s.padding)
            queue[s.name].append(acc)
        vout.append(v[pops[-1].name].copy())
    return {k: np.stack(x) for k, x in spikes.items()}, np.stack(vout), edges


def pop(name, shape, depth, i_decay, v_decay, th, bias):
    return Population(name, shape, Neuron("lif"), depth=depth, i_decay=i_decay, v_decay=v_decay, v_th_mant=th,
                      bias_mant=np.broadcast_to(bias, shape).astype(np.int64).copy())


def conv(name, src, dst, w, in_shape, out_shape, stride=(1, 1), pad=(1, 1), delay=0, groups=1):
    return Synapse(name, "conv", src, dst, w.astype(np.float64), in_shape, out_shape, stride, pad, groups, delay,
                   weight_int=w.astype(np.int64))


def dense(name, src, dst, w, in_shape, delay=0):
    return Synapse(name, "dense", src, dst, w.astype(np.float64), in_shape, (w.shape[0],), delay=delay,
                   weight_int=w.astype(np.int64))


DECAYS = [(4096, 2048), (4096, 0), (1000, 300), (0, 4096), (2048, 1), (3000, 2048)]


@pytest.mark.parametrize("i_decay, v_decay", DECAYS)
@pytest.mark.parametrize("seed", [0, 1])
def test_engine_equals_stepwise_reference_at_the_edges(i_decay, v_decay, seed):
    rng = np.random.default_rng(seed)
    T, B = 5, 6
    enc = pop("enc", (64, 5, 6), 0, 4096, 2048, 200, 0)
    # p1: conv 3x3 over 64 channels, weights up to +-254: |a| passes 2^17, so a << 6 wraps u past 24 bits
    p1 = pop("p1", (8, 5, 6), 1, i_decay, v_decay, int(rng.integers(1000, 40000)), rng.integers(-4000, 4000, (8, 1, 1)))
    # p2: a residual sum of a conv from p1 and a delayed strided conv from enc; IF-like saturation
    p2 = pop("p2", (6, 3, 3), 2, i_decay, v_decay, int(rng.integers(10, 2000)), rng.integers(-500, 500, (6, 1, 1)))
    out = pop("readout", (4,), 3, 4096, 0, 2**17 - 1, rng.integers(-100, 100, 4))
    w1 = (2 * rng.integers(-127, 128, (8, 64, 3, 3))).clip(-256, 254)
    w1[:4] = 254  # all-excitatory channels: wrap and saturation for sure
    w2 = 2 * rng.integers(-127, 128, (6, 8, 3, 3))
    w3 = 2 * rng.integers(-127, 128, (6, 64, 1, 1))
    w4 = 2 * rng.integers(-127, 128, (4, 54))
    syns = [
        Synapse("enc_in", "conv", INPUT, "enc", np.ones((64, 1, 1, 1)), (64, 5, 6), (64, 5, 6), groups=64),
        conv("c1", "enc", "p1", w1, (64, 5, 6), (8, 5, 6)),
        conv("c2", "p1", "p2", w2, (8, 5, 6), (6, 3, 3), stride=(2, 2)),
        conv("c3", "enc", "p2", w3, (64, 5, 6), (6, 3, 3), stride=(2, 2), pad=(0, 0), delay=1),
        dense("d4", "p2", "readout", w4, (6, 3, 3)),
    ]
    g = DeployGraph((64, 5, 6), [enc, p1, p2, out], syns, timesteps=T)
    enc_bias = rng.integers(-50, 4000, (B, 64, 5, 6))
    ours = run_fxp(g, torch.as_tensor(enc_bias), T)
    bias = {p.name: (enc_bias if p.name == "enc" else p.bias_mant[None]) for p in g.populations}
    spikes, v, edges = reference(g, bias, T + g.latency_steps, reset=True)
    for p in g.populations[:-1]:
        assert np.array_equal(ours["spikes"][p.name].numpy(), spikes[p.name]), p.name
    assert np.array_equal(ours["v_readout_steps"].numpy(), v)
    # windows only: the same spikes in every population's T-step window, the same readout
    win = run_fxp(g, torch.as_tensor(enc_bias), T, windows_only=True)
    assert win["windows_only"] and torch.equal(win["v_readout"], ours["v_readout"])
    for p in g.populations[:-1]:
        assert torch.equal(win["spikes"][p.name], ours["spikes"][p.name][p.depth: p.depth + T]), p.name
    assert torch.equal(win["v_readout_steps"], ours["v_readout_steps"][-T:])
    # the edges were reached: every layer spiked, the big input wrapped u (and v saturated)
    assert spikes["p1"].any() and spikes["p2"].any() and edges["wrap"]
    if v_decay <= 300:  # slow or no leak: v integrates into saturation
        assert edges["saturate"]


@pytest.mark.parametrize("i_decay, v_decay", DECAYS[:3])
def test_spike_input_engine_equals_reference_without_reset(i_decay, v_decay):
    rng = np.random.default_rng(7)
    steps, B = 9, 4
    p1 = pop("p1", (700,), 1, i_decay, v_decay, 3000, rng.integers(-300, 300, 700))
    p2 = pop("p2", (5,), 2, i_decay, v_decay, 2**17 - 1, 0)
    w1 = 2 * rng.integers(-60, 128, (700, 600))
    g = DeployGraph((600,), [p1, p2], [dense("d1", INPUT, "p1", w1, (600,), delay=2),
                                        dense("d2", "p1", "p2", 2 * rng.integers(-127, 128, (5, 700)), (700,))],
                    notes=["input: spikes"])
    x = rng.random((steps, B, 600)) < 0.9
    ours = run_fxp_spike_input(g, torch.as_tensor(x), steps)
    spikes, v, _ = reference(g, {p.name: p.bias_mant[None] for p in g.populations}, steps, reset=False, in_spikes=x)
    for p in g.populations:
        assert np.array_equal(ours["spikes"][p.name].numpy(), spikes[p.name]), p.name
    assert np.array_equal(ours["v_readout_steps"].numpy(), v)


def test_windows_need_path_matched_delays():
    enc = pop("enc", (3,), 0, 4096, 2048, 100, 0)
    a, b = pop("a", (3,), 1, 4096, 2048, 100, 0), pop("b", (3,), 2, 4096, 0, 2**17 - 1, 0)
    eye = np.eye(3, dtype=np.int64) * 2
    syns = [Synapse("in", "dense", INPUT, "enc", np.eye(3), (3,), (3,)), dense("ab", "a", "b", eye, (3,)),
            dense("ea", "enc", "a", eye, (3,)), dense("eb", "enc", "b", eye, (3,), delay=1)]
    assert windows_suffice(DeployGraph((3,), [enc, a, b], syns))
    syns[-1] = dense("eb", "enc", "b", eye, (3,))  # a shortcut one step short: its window reads pipeline fill
    g = DeployGraph((3,), [enc, a, b], syns, timesteps=2)
    assert not windows_suffice(g)
    assert not run_fxp(g, torch.full((1, 3), 300), 2, windows_only=True)["windows_only"]  # falls back to every step
