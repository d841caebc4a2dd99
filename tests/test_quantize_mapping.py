"""The float-to-Loihi mapping checked against hand-computed integers (docs/loihi2.md#spikingjelly-lif-to-cuba-lif)
and the resource mapper against hand-counted connections and cores (Decision 8).

Every expected number below is worked out in the comments from the spec's formulas, not by
calling the code under test a second time:

- scale s: the largest power of two with max|w| * s <= the top of the weight grid (254 for 8
  bits); for the encoding population max|current| * s <= 4095 (13-bit bias mantissa); lowered
  further when the threshold mantissa would pass 2^17 - 1;
- weights: `w * s` rounded to the grid step (2 for 8 bits: even integers in [-256, 254];
  2^(9 - bits) in general, Lava keeping the top `bits` bits of its 8-bit mixed-sign weight);
- biases: `round(b * s)`, 13-bit; iDecay 4096; vDecay `round(4096 / tau)` (0 for IF and the readout);
- threshold: theta = (V_th - V_reset), times tau for decay_input=True; IF (no leak, states are
  multiples of 64) `ceil(theta s) - 1`, LIF `round(theta s)`; the readout 2^17 - 1.
"""

from __future__ import annotations

import math
import tomllib

import numpy as np
import pytest
import torch
from spikingjelly.activation_based import layer, neuron
from torch import nn

from neurodistill.core.capture import capture
from neurodistill.core.float_graph import run_float
from neurodistill.core.fxp import run_fxp
from neurodistill.core.graph import INPUT, DeployGraph, Neuron, Population, Synapse
from neurodistill.core.loihi2 import encoding_bias, encoding_current, quantize_graph
from neurodistill.core.quantize import quantize_weights, weight_grid
from neurodistill.errors import HardwareConstraintError
from neurodistill.export.resources import connections, load_limits, map_resources
from neurodistill.models.base import Net

from .conftest import ROOT

TARGETS = ROOT / "neurodistill" / "export" / "targets"


def _dense(name, src, dst, w, n_in, n_out):
    return Synapse(name, "dense", src, dst, np.asarray(w, np.float64), (n_in,), (n_out,))


# ---- 1. the neuron and weight mapping, by hand -----------------------------------------------
def mapping_graph() -> DeployGraph:
    """input(2) -> a (LIF tau=3, decay_input) -> b (IF, v_reset=0.25) -> c (LIF tau=2, no decay_input,
    v_reset=-0.5) -> d (LIF tau=10, decay_input, v_reset=0.1) -> readout."""
    pops = [
        Population("a", (2,), Neuron("lif", tau=3.0, decay_input=True, v_threshold=0.3, v_reset=0.0)),
        Population("b", (3,), Neuron("if", v_threshold=0.75, v_reset=0.25)),
        Population("c", (2,), Neuron("lif", tau=2.0, decay_input=False, v_threshold=1.0, v_reset=-0.5)),
        Population("d", (2,), Neuron("lif", tau=10.0, decay_input=True, v_threshold=0.6, v_reset=0.1)),
        Population("r", (2,), Neuron("readout")),
    ]
    syns = [
        _dense("enc", INPUT, "a", [[1.0, 0.5], [-0.25, 2.0]], 2, 2),
        _dense("ab", "a", "b", [[0.7, -0.3], [0.05, 0.0], [-0.7, 0.11]], 2, 3),
        _dense("bc", "b", "c", [[2.0, -1.3, 0.02], [0.9, 0.0, -2.0]], 3, 2),
        _dense("cd", "c", "d", [[0.001, -0.0005], [0.0002, 0.00099]], 2, 2),
        _dense("dr", "d", "r", [[0.3, -0.1], [0.01, -0.3]], 2, 2),
    ]
    biases = {"a": np.array([0.4, -0.2]), "b": np.array([0.1, -0.02, 0.0]), "c": np.array([0.3, -0.26]),
              "d": np.array([0.0, 0.0]), "r": np.array([0.05, -0.05])}
    for i, p in enumerate(pops):
        p.depth = i
    return DeployGraph((2,), pops, syns, biases, timesteps=4)


def test_neuron_mapping_by_hand():
    g = mapping_graph()
    reports = {r.name: r for r in quantize_graph(g, 8, encoding_max=3.0)}
    a, b, c, d, r = g.populations
    # every population: no synaptic current memory
    assert [p.i_decay for p in g.populations] == [4096] * 5

    # a: encoding population. scale from the calibration current: 4095 / 3 = 1365 -> 2^10 = 1024.
    #    vDecay = round(4096 / 3) = round(1365.33) = 1365.
    #    decay_input: theta = tau (V_th - V_r) = 3 * 0.3 = 0.9; vth = round(0.9 * 1024) = round(921.6) = 922.
    #    Its bias is the per-sample current (given at run time): the stored mantissa is 0.
    assert (a.scale, a.v_decay, a.v_th_mant) == (1024.0, 1365, 922)
    assert a.bias_mant.tolist() == [0, 0]

    # b: IF. max|w| = 0.7: 254 / 0.7 = 362.9 -> 2^8 = 256. vDecay 0 (no leak).
    #    theta = 0.75 - 0.25 = 0.5 (the hard reset to 0.25 is a shift of the state);
    #    theta s = 128, no leak so vth = ceil(128) - 1 = 127 (v > 127 * 64 <=> v >= 128 * 64).
    #    weights: 0.7*256 = 179.2 -> /2 = 89.6 -> 90 -> 180; -0.3*256 = -76.8 -> -38.4 -> -38 -> -76;
    #             0.05*256 = 12.8 -> 6.4 -> 6 -> 12; 0; -180; 0.11*256 = 28.16 -> 14.08 -> 14 -> 28.
    #    bias: 0.1*256 = 25.6 -> 26; -0.02*256 = -5.12 -> -5; 0.
    assert (b.scale, b.v_decay, b.v_th_mant) == (256.0, 0, 127)
    assert g.synapses[1].weight_int.tolist() == [[180, -76], [12, 0], [-180, 28]]
    assert b.bias_mant.tolist() == [26, -5, 0]

    # c: LIF tau=2, decay_input=False. max|w| = 2.0: 254 / 2 = 127 -> 2^6 = 64. vDecay = 4096 / 2 = 2048.
    #    theta = 1.0 - (-0.5) = 1.5 (not times tau); vth = round(1.5 * 64) = 96.
    #    weights: 128; -1.3*64 = -83.2 -> -41.6 -> -42 -> -84; 0.02*64 = 1.28 -> 0.64 -> 1 -> 2;
    #             0.9*64 = 57.6 -> 28.8 -> 29 -> 58; 0; -128.
    #    bias: 0.3*64 = 19.2 -> 19; -0.26*64 = -16.64 -> -17.
    assert (c.scale, c.v_decay, c.v_th_mant) == (64.0, 2048, 96)
    assert g.synapses[2].weight_int.tolist() == [[128, -84, 2], [58, 0, -128]]
    assert c.bias_mant.tolist() == [19, -17]

    # d: LIF tau=10, decay_input. vDecay = round(409.6) = 410. theta = 10 * (0.6 - 0.1) = 5.
    #    Weights alone would give 254 / 0.001 = 254000 -> 2^17 = 131072, but then theta s = 655360
    #    passes the 17-bit threshold (131071): the scale drops to 131071 / 5 = 26214.2 -> 2^14 = 16384.
    #    vth = round(5 * 16384) = 81920.
    #    weights: 0.001*16384 = 16.384 -> 8.19 -> 8 -> 16; -0.0005*16384 = -8.192 -> -4.1 -> -4 -> -8;
    #             0.0002*16384 = 3.2768 -> 1.64 -> 2 -> 4; 0.00099*16384 = 16.22 -> 8.11 -> 8 -> 16.
    assert (d.scale, d.v_decay, d.v_th_mant) == (16384.0, 410, 81920)
    assert g.synapses[3].weight_int.tolist() == [[16, -8], [4, 16]]

    # readout: integrates (vDecay 0), never fires (vth = 2^17 - 1). max|w| = 0.3: 254 / 0.3 = 846.7 -> 512.
    #    weights: 0.3*512 = 153.6 -> 76.8 -> 77 -> 154; -0.1*512 = -51.2 -> -25.6 -> -26 -> -52;
    #             0.01*512 = 5.12 -> 2.56 -> 3 -> 6; -154.   bias: 0.05*512 = 25.6 -> 26; -26.
    assert (r.scale, r.v_decay, r.v_th_mant) == (512.0, 0, 2**17 - 1)
    assert g.synapses[4].weight_int.tolist() == [[154, -52], [6, -154]]
    assert r.bias_mant.tolist() == [26, -26]

    # the reports carry the same numbers; nothing clipped (the scale rule keeps |w s| <= 254)
    assert [(reports[n].v_th_mant, reports[n].v_decay, reports[n].weight_clipped) for n in "abcd"] == \
        [(922, 1365, 0.0), (127, 0, 0.0), (96, 2048, 0.0), (81920, 410, 0.0)]
    assert reports["b"].threshold_float == pytest.approx(0.5) and reports["d"].threshold_float == pytest.approx(5.0)


@pytest.mark.parametrize(("tau", "v_decay"), [(2.0, 2048), (3.0, 1365), (4.0, 1024), (1.5, 2731), (7.0, 585)])
def test_v_decay_is_4096_over_tau_rounded(tau, v_decay):
    # 4096/2 = 2048; 4096/3 = 1365.33; 4096/4 = 1024; 4096/1.5 = 2730.67; 4096/7 = 585.14
    g = mapping_graph()
    g.populations[2].neuron.tau = tau
    quantize_graph(g, 8, encoding_max=3.0)
    assert g.populations[2].v_decay == v_decay


def test_if_threshold_is_the_largest_integer_below_theta_s():
    """IF (no leak): every state is a multiple of 64, so `v > vth << 6` must equal `V >= V_th`:
    vth = ceil(theta s) - 1. With V_th = 0.6, V_r = 0.25: theta s = 0.35 * 256 = 89.6 -> 89
    (a state reaching 90 * 64 fires, as V s = 90 >= 89.6 does; 89 * 64 fires in neither)."""
    g = mapping_graph()
    g.populations[1].neuron.v_threshold = 0.6
    quantize_graph(g, 8, encoding_max=3.0)
    assert g.populations[1].v_th_mant == 89


def test_encoding_bias_is_the_current_at_the_encoding_scale():
    # a: scale 1024 (encoding_max 3.0). current = W x + b for x = (1, 0.5):
    #   [1*1 + 0.5*0.5 + 0.4, -0.25*1 + 2*0.5 - 0.2] = [1.65, 0.55] -> *1024 = [1689.6, 563.2] -> [1690, 563]
    #   x = (-4, 4): [-4 + 2 + 0.4, 1 + 8 - 0.2] = [-1.6, 8.8] -> [-1638.4, 9011.2] -> [-1638, 4095 (clipped)]
    g = mapping_graph()
    quantize_graph(g, 8, encoding_max=3.0)
    cur = encoding_current(g, np.array([[1.0, 0.5], [-4.0, 4.0]]))
    bias, clipped = encoding_bias(g, cur)
    assert bias.tolist() == [[1690, 563], [-1638, 4095]] and clipped == 0.25


def test_four_bit_weights_by_hand():
    """4 bits: Lava keeps the top 4 bits of an 8-bit mixed-sign weight (k = 8 - 4 + 1 = 5 low bits
    dropped, spec §B.3), so weights are multiples of 32 in [-256, 255] -> [-256, 224]."""
    assert weight_grid(4) == (32, -256, 224)
    assert weight_grid(8) == (2, -256, 254)
    # quantize_weights at scale 128: w*128 -> /32 -> round -> *32, clipped to [-256, 224]
    #  1.0 -> 128 -> 4 -> 128;  -1.0 -> -128;  0.3 -> 38.4 -> 1.2 -> 1 -> 32;  0.13 -> 16.64 -> 0.52 -> 1 -> 32
    #  0.12 -> 15.36 -> 0.48 -> 0;  -0.9 -> -115.2 -> -3.6 -> -4 -> -128;  1.9 -> 243.2 -> 7.6 -> 8 -> 256 -> 224 (clipped)
    #  -2.2 -> -281.6 -> -8.8 -> -9 -> -288 -> -256 (clipped): 2 of 8 clipped
    w = np.array([1.0, -1.0, 0.3, 0.13, 0.12, -0.9, 1.9, -2.2])
    q, clipped = quantize_weights(w, 128.0, 4)
    assert q.tolist() == [128, -128, 32, 32, 0, -128, 224, -256] and clipped == 0.25

    # through quantize_graph at 4 bits: population c (max|w| 2.0): 224 / 2 = 112 -> 2^6 = 64 (as at 8 bits)
    #  2.0 -> 128 -> 4 -> 128; -1.3 -> -83.2 -> -2.6 -> -3 -> -96; 0.02 -> 1.28 -> 0.04 -> 0;
    #  0.9 -> 57.6 -> 1.8 -> 2 -> 64; 0; -128.
    # population b (max|w| 0.7): 224 / 0.7 = 320 -> 2^8 = 256 (threshold: 0.5 * 256 = 128 -> 127)
    #  0.7 -> 179.2 -> 5.6 -> 6 -> 192; -0.3 -> -76.8 -> -2.4 -> -2 -> -64; 0.05 -> 12.8 -> 0.4 -> 0;
    #  0; -192; 0.11 -> 28.16 -> 0.88 -> 1 -> 32.
    # readout (max|w| 0.3): 224 / 0.3 = 746.7 -> 2^9 = 512:
    #  154 -> 153.6 / 32 = 4.8 -> 5 -> 160; -51.2 -> -1.6 -> -2 -> -64; 5.12 -> 0.16 -> 0; -160
    g = mapping_graph()
    reports = quantize_graph(g, 4, encoding_max=3.0)
    assert g.synapses[1].weight_int.tolist() == [[192, -64], [0, 0], [-192, 32]]
    assert g.synapses[2].weight_int.tolist() == [[128, -96, 0], [64, 0, -128]]
    assert g.synapses[4].weight_int.tolist() == [[160, -64], [0, -160]]
    assert [r.weight_bits for r in reports] == [4] * 5
    # a scale that would put the largest weight at 240 (between 224 and 256) is not chosen:
    # max|w| = 1.0 gives 224 -> 2^7 = 128, never 256
    g = mapping_graph()
    g.synapses[1].weight = np.array([[1.0, -0.3], [0.05, 0.0], [-0.7, 0.11]])
    quantize_graph(g, 4, encoding_max=3.0)
    assert g.populations[1].scale == 128.0 and g.synapses[1].weight_int.max() == 128


# ---- 1b. bit-exact against the float graph where the module docstrings claim it --------------
# loihi2.py: "without leak every state is a multiple of 64 and vth = ceil(theta) - 1 is exact; with
# leak round(theta) leaves an error only when v lands exactly on the threshold". So: with weights,
# biases and encoding currents on the fixed-point grid, IF populations match the float graph spike
# for spike, and so do tau = 2 LIF populations as long as the halving decay stays exact (the states
# are then multiples of 64 / 2^k after k steps without reset) and no state lands on the threshold.
# The fixed-point population at depth d is `d` steps late (one step per synapse layer, fxp.py).
T_EXACT = 4


def exact_model() -> tuple[Net, np.ndarray]:
    """Weights multiples of 1/16 with max |w| = 1 (scale 2^7 = 128: the grid step 2/128 = 1/64 holds
    them exactly); biases multiples of 1/128; input multiples of 1/4 into encoding weights that
    are multiples of 1/8, so the encoding current is a multiple of 1/32 (scale >= 32)."""
    rng = np.random.default_rng(0)
    body = nn.Sequential(
        layer.Linear(6, 8), neuron.IFNode(v_threshold=0.75, v_reset=-0.25),
        layer.Linear(8, 8), neuron.LIFNode(tau=2.0, decay_input=False, v_threshold=0.5 + 1 / 1024, v_reset=0.0),
        layer.Linear(8, 6), neuron.LIFNode(tau=2.0, decay_input=True, v_threshold=0.25 + 1 / 2048, v_reset=0.125),
        layer.Linear(6, 6), neuron.IFNode(v_threshold=1.0, v_reset=0.0),
        layer.Linear(6, 3))
    with torch.no_grad():
        for m, (step, hi) in zip([body[0], body[2], body[4], body[6], body[8]],
                                 [(8, 8), (16, 16), (16, 16), (16, 16), (16, 16)], strict=True):
            w = rng.integers(-hi, hi + 1, m.weight.shape) / step
            w.flat[0] = 1.0  # max |w| = 1 in every layer: scale 2^floor(log2 254) = 128
            m.weight.copy_(torch.as_tensor(w))
            m.bias.copy_(torch.as_tensor(rng.integers(-8, 9, m.bias.shape) / 128))
    x = rng.integers(0, 5, (40, 6)) / 4
    return Net(body, spiking=True).eval(), x


def test_fixed_point_equals_float_on_the_grid():
    """Thresholds: IF 0.75 - (-0.25) = 1 -> theta s = 128 -> vth 127 (no leak: exact).
    LIF (decay_input=False) theta s = (0.5 + 1/1024) * 128 = 64.125 -> vth 64; LIF (decay_input, v_reset
    0.125) theta s = 2 * (0.125 + 1/2048) * 128 = 32.125 -> vth 32. With tau = 2 and T = 4 the Loihi
    state after k steps without reset is a multiple of 64 / 2^3 = 8, so `v > 64 * 64` <=> `v >= 64 * 64 + 8`
    <=> (in float units) `V s >= 64.125`: the same decision as spikingjelly's `H >= V_th`."""
    model, x = exact_model()
    g = capture(model, (6,), timesteps=T_EXACT)
    cur = encoding_current(g, x)
    quantize_graph(g, 8, encoding_max=float(np.abs(cur).max()))
    # the grid premise (checked, not assumed): every value is an exact integer in Loihi units
    assert [p.scale for p in g.populations[1:]] == [128.0] * 4
    # the encoding scale, from the current computed here with numpy: 2^floor(log2(4095 / peak));
    # the encoding IF's theta is 1, so its vth is that scale minus 1
    w0, b0 = model.body[0].weight.detach().double().numpy(), model.body[0].bias.detach().double().numpy()
    s_enc = 2.0 ** math.floor(math.log2(4095 / np.abs(x @ w0.T + b0).max()))
    assert g.populations[0].scale == s_enc >= 32
    assert [p.v_th_mant for p in g.populations] == [s_enc - 1, 64, 32, 127, 2**17 - 1]
    for s in g.synapses[1:]:
        assert np.array_equal(s.weight_int, s.weight * 128)
    for p in g.populations[1:]:
        assert np.array_equal(p.bias_mant, g.biases[p.name] * 128)
    scaled = cur * g.populations[0].scale
    assert np.array_equal(scaled, np.round(scaled))
    bias, clipped = encoding_bias(g, cur)
    assert clipped == 0.0

    fl = run_float(g, torch.as_tensor(x).float().unsqueeze(0).expand(T_EXACT, *x.shape), record=True)
    q = run_fxp(g, torch.as_tensor(bias), T_EXACT, record=True)
    total = 0
    for p in g.populations[:-1]:
        want = fl["spikes"][p.name].bool()
        got = q["spikes"][p.name][p.depth: p.depth + T_EXACT]
        assert torch.equal(got, want), p.name
        total += int(want.sum())
        assert want.any() and not want.all(), f"{p.name}: the comparison needs spikes and silences"
    # readout: integrates a << 6 plus bias << 6 over the T steps of its window = 64 s sum_t logits_t
    assert torch.equal(q["v_readout"].double(), 64 * 128 * fl["logits"].double().sum(0))
    assert total > 100


def test_if_is_exact_for_long_runs():
    """No leak: IF states stay multiples of 64 however long the run (T = 16); spikes equal."""
    rng = np.random.default_rng(1)
    body = nn.Sequential(layer.Linear(5, 7), neuron.IFNode(v_threshold=0.6, v_reset=0.0),
                         layer.Linear(7, 7), neuron.IFNode(v_threshold=0.3, v_reset=-0.5),
                         layer.Linear(7, 2))
    with torch.no_grad():
        for m in (body[0], body[2], body[4]):
            w = rng.integers(-16, 17, m.weight.shape) / 16
            w.flat[0] = 1.0
            m.weight.copy_(torch.as_tensor(w))
            m.bias.copy_(torch.as_tensor(rng.integers(-8, 9, m.bias.shape) / 128))
    T = 16
    x = rng.integers(0, 5, (30, 5)) / 4
    g = capture(Net(body, spiking=True).eval(), (5,), timesteps=T)
    cur = encoding_current(g, x)
    quantize_graph(g, 8, encoding_max=float(np.abs(cur).max()))
    # second IF: theta s = (0.3 + 0.5) * 128 = 102.4 -> vth = ceil(102.4) - 1 = 102
    assert g.populations[1].v_th_mant == 102
    bias, _ = encoding_bias(g, cur)
    fl = run_float(g, torch.as_tensor(x).float().unsqueeze(0).expand(T, *x.shape), record=True)
    q = run_fxp(g, torch.as_tensor(bias), T, record=True)
    for p in g.populations[:-1]:
        assert torch.equal(q["spikes"][p.name][p.depth: p.depth + T], fl["spikes"][p.name].bool()), p.name
        assert fl["spikes"][p.name].any()


def test_lif_differs_only_where_v_lands_on_the_threshold():
    """What the docstring does not promise, shown by hand: one LIF (tau 2, decay_input=False, V_th = 1)
    with a constant current X = 1 through the encoding layer. Float: H_1 = 0 - 0/2 + 1 = 1 >= 1 fires
    at every step. Loihi (scale 2^floor(log2(4095 / 1)) = 2048, vth = round(1 * 2048) = 2048): v_1 =
    2048 * 64 lands exactly on vth << 6, so no spike; v_2 = v_1 / 2 + 2048 * 64 > vth << 6 fires; reset, repeat."""
    body = nn.Sequential(layer.Linear(1, 1, bias=False), neuron.LIFNode(tau=2.0, decay_input=False, v_threshold=1.0),
                         layer.Linear(1, 1))
    with torch.no_grad():
        body[0].weight.fill_(1.0)
    g = capture(Net(body, spiking=True).eval(), (1,), timesteps=4)
    x = np.ones((1, 1))
    quantize_graph(g, 8, encoding_max=1.0)
    assert (g.populations[0].scale, g.populations[0].v_th_mant) == (2048.0, 2048)
    bias, _ = encoding_bias(g, encoding_current(g, x))
    fl = run_float(g, torch.ones(4, 1, 1), record=True)["spikes"]["body.1"][:, 0, 0]
    q = run_fxp(g, torch.as_tensor(bias), 4, record=True)["spikes"]["body.1"][:4, 0, 0]
    assert fl.tolist() == [1, 1, 1, 1] and q.tolist() == [False, True, False, True]


# ---- 4. resources by hand ----------------------------------------------------------------------
def test_shipped_limits_table():
    """The numbers the hand counts below rely on, read from the TOML itself."""
    data = tomllib.loads((TARGETS / "loihi2.toml").read_text())
    assert data["neurons_per_core"]["value"] == 8192 and data["synapse_memory_bytes_per_core"]["value"] == 131072
    assert data["weight_bits"]["value"] == 8 and data["cores_per_chip"]["value"] == 128
    lim = load_limits()
    assert lim["neurons_per_core"].value == 8192 and lim["neurons_per_core"].estimate
    assert lim["synapse_memory_bytes_per_core"].estimate and not lim["cores_per_chip"].estimate


def _pop(name, shape, kind="if", depth=0):
    return Population(name, shape, Neuron(kind), depth)


def test_conv_connections_are_padding_aware():
    # 3x3 kernel, stride 1, padding 1 on 4x4 -> 4x4. Per axis, kernel taps inside the input for output
    # o = 0..3 (input row o - 1 + i, i = 0..2): 2, 3, 3, 2 = 10, so 10 * 10 = 100 per (c_out, c_in)
    # pair, not 16 * 9 = 144. c_out = 2, c_in = 3 -> 600 connections.
    s = Synapse("c", "conv", "a", "b", np.ones((2, 3, 3, 3)), (3, 4, 4), (2, 4, 4), (1, 1), (1, 1))
    assert connections(s) == 600
    # stride 2, padding 1, 5x5 -> 3x3: rows o = 0: -1..1 -> 2 taps; o = 1: 1..3 -> 3; o = 2: 3..5 -> 2
    # = 7 per axis, 49 per pair; depthwise (groups 4: c_in / groups = 1): 4 * 1 * 49 = 196.
    s = Synapse("c", "conv", "a", "b", np.ones((4, 1, 3, 3)), (4, 5, 5), (4, 3, 3), (2, 2), (1, 1), groups=4)
    assert connections(s) == 196
    # rectangular: kernel (1, 3), stride (1, 2), padding (0, 1) on 2x6 -> 2x3: rows 1 tap each (2);
    # columns o = 0: -1..1 -> 2, o = 1: 1..3 -> 3, o = 2: 3..5 -> 3 = 8 -> 2 * 8 = 16 per pair, 1 pair.
    s = Synapse("c", "conv", "a", "b", np.ones((1, 1, 1, 3)), (1, 2, 6), (1, 2, 3), (1, 2), (0, 1))
    assert connections(s) == 16
    # dense: the non-zero quantized weights (a zero weight stores nothing): 12 - 3 = 9
    w = np.array([[2, 0, 4, 6], [0, 2, 2, 2], [8, 8, 0, 2]])
    s = Synapse("d", "dense", "a", "b", w.astype(float), (4,), (3,), weight_int=w)
    assert connections(s) == 9


def test_map_resources_by_hand():
    """input -> a (3x4x4, host) -conv 3x3 pad 1-> b (2x4x4) -dense-> c (8193 neurons) -dense-> d (1000)
    -> readout (2). Limits: 8192 neurons and 131072 one-byte weights per core."""
    w_cd = np.zeros((1000, 8193), np.int8)
    w_cd[:, :132] = 2  # 132 non-zero inputs per neuron: 132,000 connections, 132,000 bytes
    pops = [_pop("a", (3, 4, 4)), _pop("b", (2, 4, 4), depth=1), _pop("c", (8193,), depth=2),
            _pop("d", (1000,), depth=3), _pop("r", (2,), "readout", 4)]
    syns = [Synapse("enc", "conv", INPUT, "a", np.ones((3, 1, 3, 3)), (1, 4, 4), (3, 4, 4), padding=(1, 1)),
            Synapse("ab", "conv", "a", "b", np.ones((2, 3, 3, 3)), (3, 4, 4), (2, 4, 4), padding=(1, 1)),
            Synapse("bc", "dense", "b", "c", np.ones((8193, 32)), (32,), (8193,), weight_int=np.full((8193, 32), 2)),
            Synapse("cd", "dense", "c", "d", w_cd, (8193,), (1000,), weight_int=w_cd),
            Synapse("dr", "dense", "d", "r", np.ones((2, 1000)), (1000,), (2,), weight_int=np.full((2, 1000), 2))]
    g = DeployGraph((1, 4, 4), pops, syns, {p.name: np.zeros(p.shape) for p in pops})
    res = map_resources(g)
    by = {layer["name"]: layer for layer in res["layers"]}
    # a: fed by the host only: 48 neurons, no synapses on chip, 1 core
    assert (by["a"]["synapses"], by["a"]["weights_stored"], by["a"]["cores"]) == (0, 0, 1)
    # b: conv 3x3 pad 1 on 4x4: 2 * 3 * 100 = 600 connections (above), kernels stored once: 2*3*3*3 = 54 bytes
    assert (by["b"]["neurons"], by["b"]["synapses"], by["b"]["weights_stored"], by["b"]["cores"]) == (32, 600, 54, 1)
    # c: 8193 neurons > 8192 per core -> ceil(8193 / 8192) = 2 cores; 8193 * 32 = 262,176 weights
    #    -> 262,176 bytes > 131,072 -> ceil(262176 / 131072) = 3 cores by memory: 3 cores.
    assert (by["c"]["neurons"], by["c"]["synapses"], by["c"]["weights_stored"], by["c"]["cores"]) == (8193, 262176, 262176, 3)
    # d: 1000 neurons (1 core by neurons); 132,000 bytes > 131,072 -> 2 cores by memory
    assert (by["d"]["synapses"], by["d"]["cores"]) == (132000, 2)
    assert by["d"]["neuron_utilisation"] == pytest.approx(1000 / (2 * 8192))
    assert by["d"]["memory_utilisation"] == pytest.approx(132000 / (2 * 131072))
    # readout: 2000 connections, 1 core
    assert (by["r"]["synapses"], by["r"]["cores"]) == (2000, 1)
    assert res["cores"] == 1 + 1 + 3 + 2 + 1 == 8
    assert res["neurons"] == 48 + 32 + 8193 + 1000 + 2
    assert res["synapses"] == 600 + 262176 + 132000 + 2000
    assert res["weights_stored"] == 54 + 262176 + 132000 + 2000 and res["fits"]


def test_map_resources_neuron_limit_alone():
    """A layer over the neuron limit but light on memory: 8193 neurons, one weight each ->
    ceil(8193 / 8192) = 2 cores; 16385 neurons -> 3 cores."""
    for n, cores in ((8192, 1), (8193, 2), (16385, 3)):
        pops = [_pop("a", (1,)), _pop("b", (n,), depth=1), _pop("r", (1,), "readout", 2)]
        syns = [_dense("enc", INPUT, "a", [[1.0]], 1, 1),
                Synapse("ab", "dense", "a", "b", np.ones((n, 1)), (1,), (n,), weight_int=np.full((n, 1), 2)),
                Synapse("br", "dense", "b", "r", np.zeros((1, n)), (n,), (1,), weight_int=np.zeros((1, n), np.int64))]
        res = map_resources(DeployGraph((1,), pops, syns))
        assert res["layers"][1]["cores"] == cores, n
        assert res["layers"][1]["synapses"] == n and res["layers"][2]["synapses"] == 0  # zero weights: nothing


def _tiny_table(tmp_path, **limits):
    """A limits table: 3 cores a chip, 10 neurons a core, and the given memory and weight bits."""
    table = tmp_path / "tiny.toml"
    values = dict(cores_per_chip=3, neurons_per_chip=1000, neurons_per_core=10, synapses_per_chip=10**6,
                  max_synaptic_delay=62, **limits)
    table.write_text("\n".join(f'[{k}]\nvalue = {v}\nsource = "test"\n' for k, v in values.items()))
    return table


def test_map_resources_with_a_small_table(tmp_path):
    """A custom table: 10 neurons and 100 bytes per core, 4-bit weights (half a byte each), 3 cores a chip."""
    lim = load_limits(_tiny_table(tmp_path, synapse_memory_bytes_per_core=100, weight_bits=4))
    # a: 36 neurons -> ceil(36 / 10) = 4 cores (host input: no memory).
    # b: 25 neurons -> 3 cores by neurons; conv kernels 5 * 4 * 3 * 3 = 180 weights * 0.5 byte = 90 bytes
    #    -> 1 core by memory: 3 cores. r: 2 neurons, dense 2 x 125 = 250 weights, 125 bytes -> 2 cores.
    # 9 cores: over 3 per chip; 2 chips (6) are not enough, 3 (9) are.
    pops = [_pop("a", (4, 3, 3)), _pop("b", (5, 5, 1), depth=1), _pop("r", (2,), "readout", 2)]
    syns = [Synapse("enc", "conv", INPUT, "a", np.ones((4, 1, 1, 1)), (1, 3, 3), (4, 3, 3)),
            # 3x3 kernel, stride 1, padding (2, 0) on 3x3: (3 + 4 - 3) + 1 = 5 rows, (3 - 3) + 1 = 1 column
            Synapse("ab", "conv", "a", "b", np.ones((5, 4, 3, 3)), (4, 3, 3), (5, 5, 1), (1, 1), (2, 0)),
            Synapse("br", "dense", "b", "r", np.ones((2, 125)), (125,), (2,), weight_int=np.full((2, 125), 2))]
    res = map_resources(DeployGraph((1, 3, 3), pops, syns), lim)
    # conv connections: rows (in 3, out 5, k 3, stride 1, pad 2): o=0: -2..0 -> 1; o=1: -1..1 -> 2;
    # o=2: 0..2 -> 3; o=3: 1..3 -> 2; o=4: 2..4 -> 1 = 9. columns (in 3, out 1, pad 0): 3 -> 27 per pair,
    # 5 * 4 pairs = 540.
    assert [(la["synapses"], la["cores"]) for la in res["layers"]] == [(0, 4), (540, 3), (250, 2)]
    assert res["cores"] == 9 and not res["fits"] and res["over"] == ["cores_per_chip"]
    assert not map_resources(DeployGraph((1, 3, 3), pops, syns), lim, chips=2)["fits"]
    assert map_resources(DeployGraph((1, 3, 3), pops, syns), lim, chips=3)["fits"]


def test_one_channel_too_big_for_a_core_is_refused(tmp_path):
    """One output channel's kernels (4 * 3 * 3 = 36 one-byte weights) cannot exceed a core's memory (30 bytes)."""
    table = _tiny_table(tmp_path, synapse_memory_bytes_per_core=30, weight_bits=8)
    pops = [_pop("a", (4, 3, 3)), _pop("b", (1, 1, 1), depth=1), _pop("r", (1,), "readout", 2)]
    syns = [Synapse("enc", "conv", INPUT, "a", np.ones((4, 1, 1, 1)), (1, 3, 3), (4, 3, 3)),
            Synapse("ab", "conv", "a", "b", np.ones((1, 4, 3, 3)), (4, 3, 3), (1, 1, 1)),
            Synapse("br", "dense", "b", "r", np.ones((1, 1)), (1,), (1,), weight_int=np.full((1, 1), 2))]
    with pytest.raises(HardwareConstraintError, match=r"layer b: .*36 bytes.*30 bytes"):
        map_resources(DeployGraph((1, 3, 3), pops, syns), load_limits(table))


def test_math_helpers_agree_with_hand_values():
    """Sanity of the arithmetic used in the comments above (Python's round is half-to-even, like numpy's)."""
    assert round(4096 / 3) == 1365 and round(4096 / 1.5) == 2731 and math.ceil(89.6) - 1 == 89
