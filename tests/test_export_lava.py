"""Exported `.net` files run in Lava (fixed_pt) spike for spike as an independent integer reference.

The reference below is written from the equations of docs/loihi2.md#fixed-point-neuron-update alone, one sample
at a time in numpy, and shares no code with neurodistill's simulator. Required in CI.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
import torch
from spikingjelly.activation_based import layer, neuron
from torch import nn

from neurodistill.core.capture import capture
from neurodistill.core.fxp import run_fxp
from neurodistill.core.loihi2 import encoding_bias, encoding_current, quantize_graph
from neurodistill.formats.netx.writer import write_netx
from neurodistill.models.base import Net

from .conftest import ROOT

pytestmark = pytest.mark.lava
RUNNER = ROOT / "neurodistill" / "sim" / "lava_scripts" / "run_netx.py"
M = 2**23


# ---- independent reference: Lava's fixed-point LIF, Dense and Conv, one sample ---------------
def ref_decay(x, d):
    p = x.astype(np.int64) * (4096 - d)
    return np.sign(p) * (np.abs(p) >> 12)


def ref_conv(s, w, stride, pad):
    """Cross-correlation of (C_in, H, W) with OIHW weights, integer, by explicit windows."""
    s = np.pad(s, ((0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    o, _, kh, kw = w.shape
    ho, wo = (s.shape[1] - kh) // stride[0] + 1, (s.shape[2] - kw) // stride[1] + 1
    out = np.zeros((o, ho, wo), np.int64)
    for y in range(ho):
        for x in range(wo):
            win = s[:, y * stride[0]: y * stride[0] + kh, x * stride[1]: x * stride[1] + kw]
            out[:, y, x] = np.tensordot(w, win, axes=([1, 2, 3], [0, 1, 2]))
    return (out + M) % (2 * M) - M  # conv a_out: signed 24-bit


def reference(graph, bias0, steps):
    """(spikes per population [steps, *shape], readout v [steps, K]) for one sample."""
    pops = graph.populations
    u = [np.zeros(p.shape, np.int64) for p in pops]
    v = [np.zeros(p.shape, np.int64) for p in pops]
    buf = [np.zeros(p.shape, np.int64) for p in pops]  # accumulation sent at the next step
    spikes = [[] for _ in pops]
    vout = []
    for t in range(1, steps + 1):
        a = [np.zeros(pops[0].shape, np.int64)] + buf[1:]
        new = []
        for k, p in enumerate(pops):
            if t == k + 1:  # staggered reset: layer k at step k+1
                u[k][:], v[k][:] = 0, 0
            uu = ref_decay(u[k], p.i_decay) + (a[k] << 6)
            uu = np.where(uu > M, uu - 2 * M, uu)
            u[k] = np.where(uu <= -M, uu + 2 * M, uu)
            b = bias0 if k == 0 else p.bias_mant
            vv = np.clip(ref_decay(v[k], p.v_decay) + u[k] + (b << 6), -(M - 1), M - 1)
            s = vv > (p.v_th_mant << 6)
            v[k] = np.where(s, 0, vv)
            spikes[k].append(s)
            new.append(s.astype(np.int64))
        for k in range(1, len(pops)):
            syn = graph.incoming(pops[k].name)[0]
            w = syn.weight_int
            buf[k] = (w @ new[k - 1].reshape(-1)).reshape(pops[k].shape) if syn.kind == "dense" \
                else ref_conv(new[k - 1], w, syn.stride, syn.padding)
        vout.append(v[-1].copy())
    return [np.stack(s) for s in spikes[:-1]], np.stack(vout)


# ---- networks --------------------------------------------------------------------------------
def dense_net():
    body = nn.Sequential(layer.Linear(16, 32), neuron.LIFNode(tau=2.0, v_threshold=0.5),
                         layer.Linear(32, 24), neuron.LIFNode(tau=4.0, decay_input=False, v_threshold=0.8),
                         layer.Linear(24, 5))
    return Net(body, spiking=True), (16,)


def conv_net():
    """Stride and padding on a non-square input, an IF layer, flatten into a dense readout."""
    body = nn.Sequential(layer.Conv2d(2, 4, 3, stride=(1, 2), padding=(1, 0)), layer.BatchNorm2d(4),
                         neuron.LIFNode(tau=2.0, v_threshold=0.6),
                         layer.Conv2d(4, 6, 3, stride=2, padding=1, bias=False), layer.BatchNorm2d(6),
                         neuron.IFNode(v_threshold=0.7),
                         layer.Flatten(1), layer.Linear(6 * 4 * 2, 3))
    with torch.no_grad():  # BatchNorm statistics as after training: both conv layers active
        for bn in (body[1], body[4]):
            bn.running_mean.uniform_(-0.1, 0.1)
            bn.running_var.uniform_(0.2, 0.5)
            bn.weight.uniform_(1.5, 3.0)
            bn.bias.uniform_(0.0, 0.3)
    return Net(body, spiking=True), (2, 7, 10)


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory):
    """A digits SNN trained for 3 epochs, once for every weight width."""
    from neurodistill.config import resolve
    from neurodistill.train import train
    from neurodistill.train.checkpoint import load_checkpoint
    from neurodistill.train.loop import model_from_checkpoint

    out = tmp_path_factory.mktemp("digits-snn")
    train(resolve({"model": "snn_digits", "epochs": 3, "out": str(out)}, {}))
    return model_from_checkpoint(load_checkpoint(out / "last.pt"), out)


def _inputs(shape, n, seed):
    if shape == (1, 8, 8):
        from neurodistill.data.digits import digits_arrays

        return digits_arrays()[2][:n].numpy()
    return np.random.default_rng(seed).uniform(0, 1.5, (n, *shape))


@pytest.mark.parametrize("weight_bits", [8, 4])
@pytest.mark.parametrize("which", ["dense", "conv", "digits"])
def test_netx_bundle_runs_in_lava_spike_for_spike(which, weight_bits, lava_py, tmp_path, request):
    """Also at 4-bit weights (`--weight-bits 4`): multiples of 32, which Lava's Dense must keep as they are."""
    torch.manual_seed(3)
    if which == "digits":
        model, shape = request.getfixturevalue("digits_model"), (1, 8, 8)
    else:
        model, shape = {"dense": dense_net, "conv": conv_net}[which]()
    model.eval()
    T, n = 4, 20
    graph = capture(model, shape, timesteps=T)
    calib = _inputs(shape, 64, 1)
    quantize_graph(graph, weight_bits, encoding_max=float(np.abs(encoding_current(graph, calib)).max()))
    step = 2 ** (9 - weight_bits)  # 2 for 8 bits, 32 for 4 bits (spec §B.3: the top `bits` bits of 8 kept)
    for s in (s for s in graph.synapses if not s.host):
        assert np.all(s.weight_int % step == 0) and s.weight_int.min() >= -256 and s.weight_int.max() <= 256 - step
    net = tmp_path / "network.net"
    write_netx(graph, net)
    x = _inputs(shape, n, 2)
    bias, _ = encoding_bias(graph, encoding_current(graph, x))
    steps = T + graph.latency_steps
    np.savez(tmp_path / "in.npz", bias=bias, steps=steps)
    res = subprocess.run([lava_py, str(RUNNER), str(net), str(tmp_path / "in.npz"), str(tmp_path / "out.npz")],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    lava = np.load(tmp_path / "out.npz")
    ours = run_fxp(graph, torch.as_tensor(bias), T)
    total = 0
    for i in range(n):
        ref_spikes, ref_v = reference(graph, bias[i], steps)
        for k, p in enumerate(graph.populations[:-1]):
            assert np.array_equal(lava[f"spikes_{k}"][i], ref_spikes[k]), (which, i, p.name)
            assert np.array_equal(ours["spikes"][p.name][:, i].numpy(), ref_spikes[k]), (which, i, p.name)
            total += int(ref_spikes[k].sum())
        assert np.array_equal(lava["v_readout"][i], ref_v.reshape(steps, -1))
        assert np.array_equal(ours["v_readout_steps"][:, i].numpy(), ref_v.reshape(steps, -1))
    assert total > 0 and all(lava[f"spikes_{k}"].any() for k in range(len(graph.populations) - 1)), \
        "every layer must spike for the comparison to mean something"
