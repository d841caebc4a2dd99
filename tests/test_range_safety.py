"""Range safety of the Loihi 2 export (docs/loihi2.md#limits-of-the-24-bit-state): the worst-case bounds
against hand-computed ones, a hidden layer built to wrap u, a T=40 readout that fired, and the demo-sized
model at its T. The readout's firing is checked in Lava itself where it matters.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from spikingjelly.activation_based import layer, neuron
from torch import nn

from neurodistill.core.capture import capture
from neurodistill.core.fxp import run_populations
from neurodistill.core.loihi2 import encoding_bias, encoding_current, quantize_graph
from neurodistill.core.ranges import READOUT_LIMIT, population_range, safe_scale, u_bound
from neurodistill.export.bundle import export_module_loihi2
from neurodistill.formats.deploy_h5 import read_graph
from neurodistill.formats.manifest import read_manifest
from neurodistill.formats.netx.writer import write_netx
from neurodistill.models.base import Net
from neurodistill.sim.run import _lava_spikes

from .test_lava_residual import trained_like

M = 2**23


# ---- the bounds, by hand ---------------------------------------------------------------------
def test_u_bound_is_the_geometric_sum_of_the_current():
    assert u_bound(10, 4096) == 640  # no memory: a << 6
    assert u_bound(10, 1024) == 2560  # u <= a 64 / (1 - 3/4)
    assert u_bound(0, 0) == 0 and u_bound(1, 0) == float("inf")


def test_dense_readout_bound_by_hand():
    w = np.array([[2, -4, 6], [-8, 0, 2]])
    r = population_range("r", [("dense", w)], np.array([3, -5]), 4096, readout_steps=10)
    # per step, neuron 0 up: (2 + 6 + 3) 64 = 704; neuron 1 down: (8 + 5) 64 = 832; over 10 steps 8320
    assert r.v == 8320 and r.u == 8 * 64 and r.accumulation == 0 and r.fits
    assert r.bound == 8320 and r.limit == (2**17 - 1) * 64


def test_conv_bound_by_hand_with_current_decay():
    w = np.array([[[[1, 2], [3, -4]]], [[[-5, -6], [0, 0]]]])  # (2, 1, 2, 2)
    r = population_range("c", [("conv", w)], np.zeros((2, 3, 3)), 1024)
    # channel 0: up 6, down 4; channel 1: down 11 -> |a| <= 11, u <= 11 * 64 * 4 = 2816
    assert r.accumulation == 11 and r.u == 2816 and r.v is None and r.fits
    big = population_range("c", [("conv", np.full((1, 1024, 1, 1), 128))], np.zeros(1), 4096)
    assert big.u == 1024 * 128 * 64 == M and not big.fits  # 2^23 already wraps Lava's 24-bit u


def test_safe_scale_halves_until_the_bound_fits():
    w = np.full((1, 1024), 1.0)
    s, r = safe_scale("h", [("dense", w)], np.zeros(1), 128.0, 8, 4096)
    # scale 128: weights 128, u = 1024 128 64 = 2^23 (wraps); scale 64: weights 64, u = 2^22
    assert s == 64 and r.u == 2**22
    ro = np.full((3, 8), 0.5)
    s, r = safe_scale("r", [("dense", ro)], np.ones(3), 512.0, 8, 4096, readout_steps=400)
    # weights 0.5 s rounded to the even grid (254 at most), bias s: 512 -> 254/512, 256 -> 128/256,
    # 128 -> 64/128: 400 64 (8 64 + 128) = 16,384,000 > 8,388,544; 64 -> 32/64: 400 64 (8 32 + 64) = 8,192,000
    assert s == 64 and r.v == 8_192_000 <= READOUT_LIMIT


# ---- export ----------------------------------------------------------------------------------
def wide_net() -> Net:
    """A hidden layer of 600 equal positive inputs: at the weight grid's scale its u passes 2^23."""
    torch.manual_seed(0)
    body = nn.Sequential(layer.Linear(16, 600), neuron.LIFNode(tau=2.0, v_threshold=0.3),
                         layer.Linear(600, 4), neuron.IFNode(v_threshold=1.0), layer.Linear(4, 3))
    with torch.no_grad():
        body[2].weight.fill_(254 / 256)
        body[2].bias.zero_()
    return Net(body, spiking=True).eval()


def _export(model, shape, tmp_path, T, n=8, y=None, **kw):
    x = torch.rand(n, *shape, generator=torch.Generator().manual_seed(1))
    y = torch.zeros(n, dtype=torch.long) if y is None else y
    m = export_module_loihi2(model, shape, x, y, tmp_path / "b", timesteps=T, **kw)
    return m, x


def _rec(m, name):
    return next(r for r in m["range_safety"]["layers"] if r["name"] == name)


def test_a_layer_that_would_wrap_is_scaled_down(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        m, _ = _export(wide_net(), (16,), tmp_path, 4)
    r = _rec(m, "body.3")
    # scale 256: weights 254, 600 254 64 = 9,753,600 > 2^23; scale 128: 0.9921875 128 / 2 = 63.5 rounds
    # (half to even) to 64, weights 128: 600 128 64 = 4,915,200
    assert (r["scale_before"], r["bound_before"]) == (256, 9_753_600)
    assert (r["scale"], r["bound"], r["guaranteed"], r["action"]) == (128, 4_915_200, True, "scaled down")
    assert m["range_safety"]["warnings"] == [] and not [x for x in caplog.records if "body.3" in x.getMessage()]
    assert read_manifest(tmp_path / "b")["range_safety"] == m["range_safety"]
    assert int(np.abs(read_graph(tmp_path / "b" / "deploy.h5").incoming("body.3")[0].weight_int).max()) == 128


def test_a_trained_scale_that_would_wrap_is_one_warning_and_a_manifest_note(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        m, _ = _export(wide_net(), (16,), tmp_path, 4, scales={"body.3": 256.0})
    r = _rec(m, "body.3")
    assert (r["scale"], r["bound"], r["limit"], r["guaranteed"]) == (256, 9_753_600, M, False)
    lines = [x.getMessage() for x in caplog.records if "body.3" in x.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0] and "9753600" in lines[0] and str(M) in lines[0]
    assert m["range_safety"]["warnings"] == lines


def wide_conv_net() -> Net:
    """64 always-firing channels into a 3x3 conv of equal positive weights: fan-in 576 inside the border."""
    body = nn.Sequential(layer.Conv2d(2, 64, 1), neuron.LIFNode(tau=2.0, v_threshold=0.5),
                         layer.Conv2d(64, 4, 3, padding=1), neuron.IFNode(v_threshold=1.0),
                         layer.Flatten(1), layer.Linear(4 * 25, 3))
    with torch.no_grad():
        body[0].weight.zero_()
        body[0].bias.fill_(1.0)
        body[2].weight.fill_(254 / 256)
        body[2].bias.zero_()
    return Net(body, spiking=True).eval()


def test_a_conv_that_would_wrap_fires_after_export(tmp_path):
    T, shape = 4, (2, 5, 5)
    m, x = _export(wide_conv_net(), shape, tmp_path, T)
    r = _rec(m, "body.3")
    # 576 254 64 = 9,363,456 wraps to -7,413,760 at scale 256; at 128: 576 128 64 = 4,718,592
    assert (r["bound_before"], r["bound"], r["scale"]) == (9_363_456, 4_718_592, 128)
    g0 = capture(wide_conv_net(), shape, timesteps=T)
    quantize_graph(g0, 8, float(np.abs(encoding_current(g0, x.numpy())).max()))
    before = run_populations(g0, T + g0.latency_steps, len(x), bias=_biases(g0, _bias(g0, x)), staggered_reset=True)
    g = read_graph(tmp_path / "b" / "deploy.h5")
    after = run_populations(g, T + g.latency_steps, len(x), bias=_biases(g, _bias(g, x)), staggered_reset=True)
    # the input channels all fire together, so an inner neuron gets 576 weights of 254/256 at once, a
    # corner 256: in float both cross the threshold of 1
    inner = before["spikes"]["body.3"][:, :, :, 1:4, 1:4]
    assert not inner.any() and before["spikes"]["body.3"].any()  # the wrapped sum is negative
    assert after["spikes"]["body.3"][:, :, :, 1:4, 1:4].any(0).all()  # every inner neuron of every sample


def firing_readout_net() -> Net:
    """Every hidden neuron fires at every step; class 0's readout weights are all positive."""
    torch.manual_seed(0)
    body = nn.Sequential(layer.Linear(16, 32), neuron.LIFNode(tau=2.0, v_threshold=0.5), layer.Linear(32, 3))
    with torch.no_grad():
        body[0].weight.mul_(0.1)
        body[0].bias.fill_(1.0)
        body[2].weight.uniform_(-0.2, 0.2)
        body[2].weight[0].uniform_(0.5, 1.0)
        body[2].bias.zero_()
    return Net(body, spiking=True).eval()


def two_feature_net() -> Net:
    """Hidden neuron 0 fires at every step when input 0 is on, neuron 1 when it is off, neurons 2..63
    never; the readout tells the classes apart by a 1/32 difference on features 0 and 1, on top of
    weights 1 from every feature: the worst case (all 64 active) is far above what calibration sees."""
    body = nn.Sequential(layer.Linear(16, 64), neuron.LIFNode(tau=2.0, v_threshold=0.5), layer.Linear(64, 2))
    with torch.no_grad():
        body[0].weight.zero_()
        body[0].weight[0, 0], body[0].weight[1, 0] = 1.0, -1.0
        body[0].bias.fill_(-1.0)
        body[0].bias[0], body[0].bias[1] = 0.0, 1.5
        body[2].weight.fill_(1.0)
        body[2].weight[0, 1] = body[2].weight[1, 0] = 1 - 1 / 32
        body[2].bias.zero_()
    return Net(body, spiking=True).eval()


def test_readout_kept_at_its_calibrated_scale_when_more_accurate_is_one_warning(tmp_path, caplog):
    T, x = 40, torch.zeros(8, 16)
    x[:4, 0] = 1.5
    y = torch.tensor([0] * 4 + [1] * 4)
    with caplog.at_level(logging.WARNING):
        m = export_module_loihi2(two_feature_net(), (16,), x, y, tmp_path / "b", timesteps=T)
    r = _rec(m, "readout")
    # scale 128 (weights 1 -> 128, 31/32 -> 124): per step 63 128 + 124 = 8188 on either class,
    # 40 64 8188 = 20,961,280; halving to 32 (weights 32, 31/32 -> 15.5 -> 16 -> 32) makes the classes
    # equal (accuracy 1/2); the calibration peak at 128 is one feature: 40 64 128 = 327,680
    assert (r["bound_before"], r["scale_before"]) == (20_961_280, 128)
    assert r["calibrated_alternative"] == {"scale": 128, "accuracy": 1.0, "accuracy_at_safe_scale": 0.5}
    assert (r["scale"], r["action"], r["guaranteed"], r["calibration_peak"]) == (128, "calibrated scale", False, 327_680)
    assert m["accuracy_quantized"] == 1.0
    lines = [x.getMessage() for x in caplog.records if "readout layer" in x.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0] and "20961280" in lines[0] and m["range_safety"]["warnings"] == lines


def _bias(graph, x):
    return encoding_bias(graph, encoding_current(graph, x.numpy()))[0]


@pytest.mark.lava
def test_t40_readout_no_longer_fires_and_fxp_is_lava(lava_py, tmp_path):
    T, model = 40, firing_readout_net()
    m, x = _export(model, (16,), tmp_path, T)
    # before: the grid scale alone, as export chose it without the range check
    g0 = capture(model, (16,), timesteps=T)
    quantize_graph(g0, 8, float(np.abs(encoding_current(g0, x.numpy())).max()))
    (tmp_path / "before").mkdir()
    write_netx(g0, tmp_path / "before" / "network.net")
    b0 = _bias(g0, x)
    lava0 = _lava_spikes(tmp_path / "before", g0, b0, T + g0.latency_steps, lava_py)
    v0 = lava0["v_readout_steps"][:, :, 0].long()
    # class 0 only ever gains (positive weights, all inputs active), so a drop in Lava is a spike
    fired = (v0[1:] < v0[:-1]).any(0)
    assert int(fired.sum()) == len(x)
    r = _rec(m, "readout")
    assert r["bound_before"] > READOUT_LIMIT and r["guaranteed"] and r["bound"] <= READOUT_LIMIT
    g = read_graph(tmp_path / "b" / "deploy.h5")
    b = _bias(g, x)
    lava = _lava_spikes(tmp_path / "b", g, b, T + g.latency_steps, lava_py)
    ours = run_populations(g, T + g.latency_steps, len(x), bias=_biases(g, b), staggered_reset=True)
    assert torch.equal(lava["v_readout_steps"].long(), ours["v_readout_steps"].long())
    for name, s in lava["spikes"].items():
        assert torch.equal(s, ours["spikes"][name])
    v = lava["v_readout_steps"][:, :, 0].long()
    assert not ours["spikes"]["readout"].any() and bool((v[1:] >= v[:-1]).all())
    assert int(v.max()) == r["calibration_peak"] <= READOUT_LIMIT


def _biases(g, b):
    return {p.name: torch.as_tensor(b if p.name == g.encoding[0].target else p.bias_mant) for p in g.populations}


@pytest.mark.parametrize("T", [4, 40])
def test_demo_model_readout_never_fires(T, tmp_path):
    from neurodistill.data.digits import digits_arrays
    from neurodistill.models.registry import create_model

    model = trained_like(create_model("snn_digits", 10, 1).body)
    x, y = digits_arrays()[0][:64], digits_arrays()[1][:64]
    m = export_module_loihi2(model, (1, 8, 8), x, y, tmp_path / "b", timesteps=T)
    r = _rec(m, "readout")
    assert r["guaranteed"] and r["bound"] <= READOUT_LIMIT
    assert m["range_safety"]["warnings"] == [] and all(x["guaranteed"] for x in m["range_safety"]["layers"])
    g = read_graph(tmp_path / "b" / "deploy.h5")
    ours = run_populations(g, T + g.latency_steps, len(x), bias=_biases(g, _bias(g, x)), staggered_reset=True)
    assert not ours["spikes"]["readout"].any()
    assert json.loads((tmp_path / "b" / "manifest.json").read_text())["range_safety"] == m["range_safety"]
