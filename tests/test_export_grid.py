"""Export over a grid of ordinary convolutions (issue 22, items 2-4): kernels with h != w,
groups (up to 128, which netx cannot run), strides, paddings, all-zero and all-negative layers,
2..8 weight bits, chains and residual nets. Every network exports without a crash (a typed
refusal is allowed), and where it exports the bundle runs in Lava (netx when the bundle has a
`network.net`, else the `deploy.h5` runner, as `simulate --backend lava` picks) spike for spike
and voltage for voltage like `--backend fxp`. A `network.nir` it writes is read by `nir.read`
and neurodistill's checked reader.
"""

from __future__ import annotations

import json

import nir
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from spikingjelly.activation_based import layer, neuron
from torch import nn

from neurodistill.core.fxp import run_fxp
from neurodistill.core.graph import Synapse
from neurodistill.core.loihi2 import encoding_bias, encoding_current
from neurodistill.errors import NeurodistillError
from neurodistill.export.bundle import export_module_loihi2
from neurodistill.formats.deploy_h5 import read_graph
from neurodistill.formats.nir.deploy import _nir_conv_weight
from neurodistill.formats.nir.file import read_nir_file
from neurodistill.models.base import Net
from neurodistill.models.resnet import BasicBlock
from neurodistill.sim.run import _lava_spikes

from .test_lava_residual import trained_like

SHAPE = (2, 7, 9)  # odd, non-square input
T = 4


def _lif():
    return neuron.LIFNode(tau=2.0, v_threshold=0.3)


def _conv(cin, cout, k, stride=1, padding=0, groups=1):
    return layer.Conv2d(cin, cout, k, stride=stride, padding=padding, groups=groups)


def _out(h, w, k, stride, padding):
    return (h + 2 * padding[0] - k[0]) // stride + 1, (w + 2 * padding[1] - k[1]) // stride + 1


def chain(rng: np.random.Generator, zero: str | None = None) -> tuple[Net, tuple[int, ...]]:
    """Stem conv, a grouped conv with a random (kh, kw) kernel, stride and padding, a dense layer, the readout."""
    kh, kw = (int(v) for v in rng.choice([1, 2, 3, 5], 2))
    stride, padding = int(rng.integers(1, 3)), (int(rng.integers(0, 2)), int(rng.integers(0, 3)))
    groups = int(rng.choice([1, 2, 4]))
    h, w = _out(*SHAPE[1:], (3, 3), 1, (1, 1))
    h, w = _out(h, w, (kh, kw), stride, padding)
    body = nn.Sequential(_conv(2, 4, 3, padding=1), _lif(), _conv(4, 8, (kh, kw), stride, padding, groups), _lif(),
                         layer.Flatten(1), layer.Linear(8 * h * w, 6), _lif(), layer.Linear(6, 3))
    with torch.no_grad():
        body[2].weight.abs_().mul_(2.0)  # a grouped conv with few inputs per neuron still fires
        if zero == "dense":
            body[5].weight.zero_()  # pruned: netx's optimize_weight_bits fails on it
        elif zero == "negative":
            body[5].weight.copy_(-body[5].weight.abs())
    return Net(body, spiking=True).eval(), SHAPE


def depthwise_128() -> tuple[Net, tuple[int, ...]]:
    """A (1, 3) depthwise conv with groups=128: netx's 8-bit groups would zero its input in Lava."""
    body = nn.Sequential(_conv(2, 128, 3, padding=1), _lif(), _conv(128, 128, (1, 3), padding=(0, 1), groups=128),
                         _lif(), layer.Flatten(1), layer.Linear(128 * 3 * 3, 3))
    with torch.no_grad():
        body[2].weight.abs_().mul_(3.0)
    return Net(body, spiking=True).eval(), (2, 3, 3)


def residual(rng: np.random.Generator) -> tuple[Net, tuple[int, ...]]:
    """Stem, then a strided block whose first conv is grouped with a (1, 3) or (3, 1) kernel."""
    k = [(1, 3), (3, 1), (3, 5)][int(rng.integers(0, 3))]
    stride = int(rng.integers(1, 3))
    block = BasicBlock(4, 6, stride, _lif)
    block.conv1 = _conv(4, 6, k, stride, (k[0] // 2, k[1] // 2), groups=2)
    h, w = _out(*SHAPE[1:], (3, 3), stride, (1, 1))
    body = nn.Sequential(_conv(2, 4, 3, padding=1), layer.BatchNorm2d(4), _lif(), block, layer.Flatten(1),
                         layer.Linear(6 * h * w, 3))
    return trained_like(body), SHAPE


# (network, seed, weight bits): a seeded handful that covers the grid, each a Lava run
CASES = [("chain", 0, 8), ("chain", 1, 2), ("chain", 2, 5), ("chain", 3, 7), ("zero-dense", 4, 8),
         ("negative-dense", 5, 6), ("depthwise-128", 6, 8), ("residual", 7, 8), ("residual", 8, 3)]


def _build(kind: str, seed: int):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    if kind == "depthwise-128":
        return depthwise_128()
    if kind == "residual":
        return residual(rng)
    return chain(rng, {"zero-dense": "dense", "negative-dense": "negative"}.get(kind))


@pytest.mark.lava
@pytest.mark.parametrize("kind,seed,bits", CASES)
def test_export_grid_runs_in_lava_as_fxp(kind, seed, bits, lava_py, tmp_path):
    model, shape = _build(kind, seed)
    x = torch.rand(24, *shape, generator=torch.Generator().manual_seed(seed)) * 1.5
    y = torch.randint(0, 3, (24,), generator=torch.Generator().manual_seed(seed))
    try:
        m = export_module_loihi2(model, shape, x, y, tmp_path / "b", timesteps=T, weight_bits=bits)
    except NeurodistillError as e:  # a typed, one-line refusal is allowed; a crash is not
        assert "\n" not in str(e)
        return
    bundle = tmp_path / "b"
    assert json.loads((bundle / "manifest.json").read_text()) == m
    if kind in ("zero-dense", "negative-dense", "depthwise-128"):
        assert not (bundle / "network.net").exists() and "network.net" not in m["files"].values()
        assert {"zero-dense": "all 0", "negative-dense": "no positive weight", "depthwise-128": "groups=128"}[kind] \
            in m["netx"]["reason"]
    if kind.startswith("chain"):
        assert (bundle / "network.net").is_file() and m["netx"] is None
    if (bundle / "network.nir").is_file():
        assert m["nir"] is None and "network.nir" in m["files"].values()
        nir.read(bundle / "network.nir")
        read_nir_file(bundle / "network.nir")
    else:
        assert "network.nir" not in m["files"].values() and m["nir"]["reason"]
    graph = read_graph(bundle / "deploy.h5")
    xs = x[:8].numpy()
    bias, _ = encoding_bias(graph, encoding_current(graph, xs))
    ours = run_fxp(graph, torch.as_tensor(bias), T)
    lava = _lava_spikes(bundle, graph, bias, T + graph.latency_steps, lava_py)
    for name, s in lava["spikes"].items():
        assert torch.equal(s, ours["spikes"][name]), (kind, seed, name, int((s != ours["spikes"][name]).sum()))
    assert torch.equal(lava["v_readout_steps"].to(ours["v_readout_steps"].dtype), ours["v_readout_steps"])
    assert any(s.any() for s in ours["spikes"].values()), "some layer must spike for the comparison to mean something"


@pytest.mark.parametrize("k,groups,stride,padding", [((3, 5), 1, 1, (1, 2)), ((1, 3), 2, 2, (0, 1)), ((5, 1), 4, 1, (2, 0)),
                                                     ((3, 3), 8, 2, (1, 1)), ((2, 4), 2, 1, (0, 1))])
def test_nir_conv_weight_is_the_same_map(k, groups, stride, padding):
    """The groups=1, square-kernel conv written into network.nir computes what the graph's conv does."""
    torch.manual_seed(0)
    w = torch.randn(8, 8 // groups, *k)
    s = Synapse("c", "conv", "a", "b", w.numpy(), (8, 9, 11), (8, 1, 1), (stride, stride), padding, groups)
    full, pad = _nir_conv_weight(s)
    x = torch.randn(2, 8, 9, 11)
    ref = F.conv2d(x, w, stride=stride, padding=padding, groups=groups)
    got = F.conv2d(x, torch.from_numpy(full), stride=stride, padding=pad)
    assert full.shape[2] == full.shape[3] and full.shape[1] == 8
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    node = nir.Conv2d(input_shape=(9, 11), weight=full, stride=stride, padding=pad, dilation=1, groups=1, bias=np.zeros(8))
    assert list(node.output_type["output"]) == list(ref.shape[1:])


def test_nir_conv_of_different_parity_is_refused():
    s = Synapse("c", "conv", "a", "b", np.ones((2, 2, 1, 2), np.float32), (2, 5, 5), (2, 5, 4))
    with pytest.raises(NeurodistillError, match="different parity"):
        _nir_conv_weight(s)


def test_bundle_without_nir_warns_once_and_simulates(tmp_path, caplog):
    """A (2, 3) kernel has no NIR 1.0 form: the bundle leaves network.nir out with one warning
    line and a manifest note; inspect says why and simulate runs the rest of the bundle."""
    from neurodistill.export.inspect import render
    from neurodistill.sim.run import simulate

    model, shape = _build("chain", 1)
    assert model.body[2].weight.shape[2:] == (2, 3)
    x, y = torch.rand(16, *shape), torch.randint(0, 3, (16,))
    with caplog.at_level("WARNING"):
        m = export_module_loihi2(model, shape, x, y, tmp_path / "b", timesteps=T, weight_bits=8)
    left_out = [r for r in caplog.records if "network.nir" in r.getMessage()]
    assert len(left_out) == 1 and "\n" not in left_out[0].getMessage() and "2x3" in left_out[0].getMessage()
    assert not (tmp_path / "b" / "network.nir").exists() and "different parity" in m["nir"]["reason"]
    assert "network.nir" not in m["files"].values() and (tmp_path / "b" / "network.net").is_file()
    assert "(no network.nir: conv 'body.2'" in render(tmp_path / "b")
    np.savez(tmp_path / "in.npz", x=x[:4].numpy(), y=y[:4].numpy())
    sim = simulate(tmp_path / "b", tmp_path / "sim", backend="fxp", samples=4, inputs=tmp_path / "in.npz")
    assert sim["samples"] == 4
