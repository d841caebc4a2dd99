"""Spike-count readout (`--readout spikes`): the output population fires, and the class is the argmax of
its spike counts over the T-step window, ties to the lowest class index (core/readout.py).

Checked against independent truth: a hand-built IF network whose counts and predictions are worked
out below by hand; `train --readout spikes` on digits through the CLI, exported, with Lava (netx)
equal to fxp spike for spike, output spikes included; an snnTorch network whose output is a Leaky
neuron, read back from snnTorch's own NIR exporter, whose output spikes snnTorch's own run gives.
"""

from __future__ import annotations

import json
import random

import nir
import numpy as np
import pytest
import torch
from spikingjelly.activation_based import layer, neuron
from torch import nn

from neurodistill.core.capture import capture
from neurodistill.core.float_graph import run_float
from neurodistill.core.fxp import run_fxp
from neurodistill.core.loihi2 import encoding_bias, encoding_current, quantize_graph
from neurodistill.core.readout import count_prediction, spike_prediction
from neurodistill.export.bundle import export_module_loihi2, nir_source_module
from neurodistill.models.base import Net
from neurodistill.sim.run import simulate_bundle

from .conftest import lava_python
from .test_nir_in_common import compare_lava_fxp, invoke

T = 4


# ----------------------------------------------------------------------------- hand-built
def hand_net() -> Net:
    """x (4,) -> h = (x0, x1) -> IF (threshold 1) -> o = 1.5 (h0, h1, h1) -> IF (threshold 1).

    A constant current c into an IF neuron from rest fires every step for c = 1.2 (4 spikes in T = 4)
    and at steps 2 and 4 for c = 0.6 (2 spikes); each hidden spike makes its output neurons fire
    once (1.5 > 1, reset to 0). So the counts are (n0, n1, n1), classes 1 and 2 always tie."""
    lin1, lin2 = layer.Linear(4, 2, bias=False), layer.Linear(2, 3, bias=False)
    with torch.no_grad():
        lin1.weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]]))
        lin2.weight.copy_(torch.tensor([[1.5, 0], [0, 1.5], [0, 1.5]]))
    body = nn.Sequential(layer.Flatten(1), lin1, neuron.IFNode(), lin2)
    net = Net(body, spiking=True)
    net.output_neuron = neuron.IFNode(step_mode="m")
    return net.eval()


X = torch.tensor([[1.2, 0.6, 0, 0], [0.6, 1.2, 0, 0], [0.6, 0.6, 0, 0], [0, 0, 0, 0], [1.2, 1.2, 0, 0]]).reshape(5, 1, 2, 2)
COUNTS = torch.tensor([[4, 2, 2], [2, 4, 4], [2, 2, 2], [0, 0, 0], [4, 4, 4]])  # by hand (hand_net's docstring)
CLASSES = torch.tensor([0, 1, 0, 0, 0])  # the largest count; a tie to the lowest index


def test_tie_rule_by_hand():
    assert count_prediction(COUNTS).tolist() == CLASSES.tolist()
    s = torch.zeros(T + 2, 1, 3, dtype=torch.bool)
    s[:2, 0, 2] = True  # pipeline fill before the window does not count
    s[2:, 0, 1] = s[3, 0, 0] = s[4, 0, 0] = True
    assert spike_prediction(s, T).tolist() == [1]
    s[5, 0, 0] = s[2, 0, 0] = True  # 4 and 4: the tie goes to class 0
    assert spike_prediction(s, T).tolist() == [0]


def test_hand_built_counts_in_the_model_float_graph_and_fxp():
    net = hand_net()
    xs = X.unsqueeze(0).expand(T, *X.shape)
    with torch.no_grad():
        out = net(xs)
    assert out.sum(0).long().tolist() == COUNTS.tolist()
    graph = capture(net, (1, 2, 2), timesteps=T)
    assert graph.readout_kind == "spikes" and [p.neuron.kind for p in graph.populations] == ["if", "if"]
    fl = run_float(graph, xs, record=True)
    assert torch.equal(fl["logits"], out) and torch.equal(fl["spikes"][graph.readout.name], out)
    quantize_graph(graph, 8, float(np.abs(encoding_current(graph, X.numpy())).max()))
    bias, _ = encoding_bias(graph, encoding_current(graph, X.numpy()))
    q = run_fxp(graph, torch.as_tensor(bias), T)
    s = q["spikes"][graph.readout.name]
    assert s.shape == (T + 1, 5, 3)  # one step of latency before the output's window
    assert s[-T:].sum(0).tolist() == COUNTS.tolist() and not s[0].any()
    assert spike_prediction(s, T).tolist() == CLASSES.tolist()


def test_hand_built_bundle_accuracy_per_backend(tmp_path):
    y = torch.tensor([0, 2, 0, 1, 0])  # sample 1: classes 1 and 2 tie, the lowest wins: wrong; sample 3: wrong
    m = export_module_loihi2(hand_net(), (1, 2, 2), X, y, tmp_path / "b", timesteps=T, weight_bits=8)
    assert m["readout"] == "spikes" and m["accuracy_float"] == m["accuracy_quantized"] == pytest.approx(0.6)
    for backend in ("float", "fxp"):
        sim = simulate_bundle(tmp_path / "b", X, y, backend=backend)
        assert sim["accuracy"] == pytest.approx(0.6)
        # running counts after step 1: (1, 0, 0), (0, 1, 1), (0, 0, 0), (0, 0, 0), (1, 1, 1) -> 0, 1, 0, 0, 0
        per_step = sim["accuracy_per_timestep"]
        assert per_step[0]["running_mean"] == per_step[0]["alone"] == per_step[-1]["running_mean"] == pytest.approx(0.6)
        out = next(x for x in sim["layers"] if x["name"] == "output_neuron")
        assert out["spikes"] == float(COUNTS.sum()) and out["firing_rate"] == pytest.approx(COUNTS.sum() / (15 * T))


# ----------------------------------------------------------------------------- train through the CLI
@pytest.fixture(scope="module")
def trained_bundle(tmp_path_factory):
    """`train --readout spikes` on digits (3 epochs) and `export`, through the CLI."""
    tmp = tmp_path_factory.mktemp("spike_readout")
    run, bundle = tmp / "run", tmp / "bundle"
    res = invoke("train", "--model", "snn_digits", "--dataset", "digits", "--epochs", 3, "--readout", "spikes",
                 "--device", "cpu", "--out", run)
    assert res.exit_code == 0, res.output
    ckpt = torch.load(run / "best.pt", weights_only=False)
    assert ckpt["model"]["readout"] == "spikes"
    res = invoke("export", run / "best.pt", "--target", "loihi2", "--calib", 128, "--out", bundle)
    assert res.exit_code == 0, res.output
    return bundle


def test_train_export_simulate_spike_readout(trained_bundle, tmp_path):
    m = json.loads((trained_bundle / "manifest.json").read_text())
    assert m["readout"] == "spikes" and (trained_bundle / "network.net").is_file()
    res = invoke("inspect", trained_bundle)
    assert res.exit_code == 0 and "readout: spike counts of the last layer" in res.output
    assert m["accuracy_quantized"] > 0.5 and m["accuracy_float"] > 0.5  # 10 classes: chance is 0.1
    res = invoke("simulate", trained_bundle, "--backend", "fxp", "--samples", 128, "--out", tmp_path / "sim")
    assert res.exit_code == 0, res.output
    sim = json.loads((tmp_path / "sim" / "simulation.json").read_text())
    print(f"spike readout, digits 3 epochs: float {m['accuracy_float']:.4f}, quantized {m['accuracy_quantized']:.4f} "
          f"(calibration), fxp {sim['accuracy']:.4f} on 128 test samples")
    assert sim["accuracy"] > 0.5
    assert sim["layers"][-1]["name"] == "output_neuron" and sim["layers"][-1]["spikes"] > 0
    assert sim["layers"][-1]["firing_rate"] is not None


def test_nir_out_and_back_keeps_the_spike_readout(trained_bundle, tmp_path):
    """`--target nir` writes the output neuron before the Output; exported from that file, the bundle is
    a spike readout again with the checkpoint's float accuracy."""
    ckpt = trained_bundle.parent / "run" / "best.pt"
    res = invoke("export", ckpt, "--target", "nir", "--out", tmp_path / "nir")
    assert res.exit_code == 0, res.output
    g = nir.read(tmp_path / "nir" / "network.nir")
    (last,) = [a for a, b in g.edges if b == "output"]
    assert isinstance(g.nodes[last], nir.LIF) and g.metadata["readout"] == "spikes per step"
    res = invoke("export", tmp_path / "nir" / "network.nir", "--target", "loihi2", "--calib", 128, "--out", tmp_path / "b")
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "b" / "manifest.json").read_text())
    want = json.loads((trained_bundle / "manifest.json").read_text())
    assert m["readout"] == "spikes" and m["accuracy_float"] == want["accuracy_float"]


@pytest.mark.lava
def test_trained_spike_readout_runs_in_lava_as_fxp(trained_bundle, lava_py, tmp_path):
    """netx's network.net in Lava: every spike of every population, the output's included, and the accuracy."""
    compare_lava_fxp(trained_bundle, tmp_path, lava_py)


@pytest.mark.parametrize("args,words", [
    (("--method", "kd", "--teacher", "t.pt"), ["method 'kd'", "none, tet"]),
    (("--method", "esd"), ["method 'esd'", "none, tet"]),
    (("--backprop", "rate"), ["backprop = rate", "readout = spikes"]),
    (("--deploy", "loihi2"), ["deploy = loihi2", "readout = spikes"]),
    (("--model", "ann_digits"), ["readout 'spikes'", "an ANN has no spikes"]),
])
def test_spike_readout_refusals_are_one_line(args, words, tmp_path):
    res = invoke("train", "--readout", "spikes", "--epochs", 1, "--device", "cpu", "--out", tmp_path / "r", *args)
    assert res.exit_code == 2 and res.output.startswith("error: ") and res.output.count("\n") == 1, res.output
    assert all(w in res.output for w in words), res.output


# ----------------------------------------------------------------------------- snnTorch Leaky output
SHAPE = (1, 8, 8)


def snntorch_leaky_output(seed: int):
    """Conv -> Leaky -> Flatten -> Linear -> Leaky (output): weights on a quarter grid and decays of 1/2
    or 1/4, where Loihi's arithmetic is exact; reset to zero."""
    import snntorch as snn

    rng = random.Random(seed)

    def leaky(shape, output=False):
        return snn.Leaky(beta=torch.full(shape, rng.choice([0.5, 0.75])), threshold=torch.full(shape, rng.randint(1, 4) / 4),
                         init_hidden=True, reset_mechanism="zero", output=output)

    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), leaky((3, 8, 8)), nn.Flatten(), nn.Linear(192, 5),
                        leaky((5,), output=True))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in (net[0], net[3]):
            m.weight.copy_(torch.randint(-4, 5, m.weight.shape, generator=g) / 4)
            m.bias.copy_(torch.randint(-1, 2, m.bias.shape, generator=g) / 4)
    return net.eval()


def snntorch_run(net, x: torch.Tensor) -> torch.Tensor:
    """snnTorch's own output spikes `(T, B, K)` on `x` repeated T times."""
    from snntorch import utils

    utils.reset(net)
    with torch.no_grad():
        return torch.stack([net(x)[0] for _ in range(T)])


@pytest.mark.parametrize("seed", range(6))
def test_snntorch_leaky_output_reproduced_in_float_and_fxp(seed, tmp_path):
    from snntorch.export_nir import export_to_nir

    net = snntorch_leaky_output(seed)
    path = tmp_path / "g.nir"
    nir.write(path, export_to_nir(net, torch.zeros(1, *SHAPE), ignore_dims=[0]))
    x = (torch.rand((16, *SHAPE), generator=torch.Generator().manual_seed(seed)) < 0.5).float()
    want = snntorch_run(net, x)
    model, _ = nir_source_module(path, "snntorch", source_reset="zero")
    with torch.no_grad():
        ours = model(x.unsqueeze(0).expand(T, *x.shape).contiguous())
    assert torch.equal(ours.reshape(want.shape), want)
    graph = capture(model, SHAPE, timesteps=T)
    assert graph.readout_kind == "spikes"
    fl = run_float(graph, x.unsqueeze(0).expand(T, *x.shape), record=True)["spikes"][graph.readout.name]
    assert torch.equal(fl.reshape(want.shape), want)
    current = encoding_current(graph, x.numpy())
    quantize_graph(graph, 8, float(np.abs(current).max()))
    bias, _ = encoding_bias(graph, current)
    q = run_fxp(graph, torch.as_tensor(bias), T)["spikes"][graph.readout.name]
    assert int((q[-T:].float().reshape(want.shape) != want).sum()) == 0
    assert torch.equal(spike_prediction(q, T), count_prediction(want.sum(0)))


def test_snntorch_leaky_output_through_the_cli(tmp_path):
    """`export --from snntorch --source-reset zero`: the manifest's float accuracy is snnTorch's own, by
    counts with ties to the lowest class; Lava runs the bundle as fxp, output spikes included."""
    from snntorch.export_nir import export_to_nir

    net = snntorch_leaky_output(3)
    path = tmp_path / "g.nir"
    nir.write(path, export_to_nir(net, torch.zeros(1, *SHAPE), ignore_dims=[0]))
    x = (torch.rand((24, *SHAPE), generator=torch.Generator().manual_seed(7)) < 0.5).float()
    want = snntorch_run(net, x)
    assert want.sum() > 0
    y = torch.arange(24) % 5
    np.savez(tmp_path / "xy.npz", x=x.numpy(), y=y.numpy())
    res = invoke("export", path, "--from", "snntorch", "--source-reset", "zero", "--timesteps", T, "--calib",
                 tmp_path / "xy.npz", "--out", tmp_path / "bundle")
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    acc = float((want.sum(0).argmax(-1) == y).float().mean())
    assert m["readout"] == "spikes" and m["accuracy_float"] == pytest.approx(acc, abs=1e-12)
    assert m["accuracy_quantized"] == pytest.approx(acc, abs=1e-12)
    lava = lava_python()
    if lava is not None:
        res = invoke("simulate", tmp_path / "bundle", "--backend", "fxp", "--inputs", tmp_path / "xy.npz",
                     "--samples", 3, "--save-spikes", "--out", tmp_path / "fxp")
        assert res.exit_code == 0, res.output
        res = invoke("simulate", tmp_path / "bundle", "--backend", "lava", "--inputs", tmp_path / "xy.npz",
                     "--samples", 3, "--save-spikes", "--lava-python", lava, "--out", tmp_path / "lava")
        assert res.exit_code == 0, res.output
        from .test_nir_in_common import _spikes

        fxp, lv = _spikes(tmp_path / "fxp" / "spikes.h5"), _spikes(tmp_path / "lava" / "spikes.h5")
        keys = [k for k in fxp if k.endswith("/spikes")]
        assert len(keys) == 2 and all(fxp[k].any() for k in keys)  # the hidden and the output population
        assert sum(int((fxp[k] != lv[k]).sum()) for k in keys) == 0


def _cuba_spike_readout_bundle(tmp_path):
    from neurodistill.models.registry import create_model

    torch.manual_seed(0)
    model = create_model("snn_digits", 10, 1, {"kind": "cuba", "v_threshold": 0.5, "tau_syn": 2.0}, "spikes").eval()
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert linears[-1].bias is None  # a bias into the output's decaying current would need a bias source
    with torch.no_grad():
        linears[-1].weight.mul_(6.0)  # an untrained classifier that makes its output neurons fire
    x = (torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 16).floor()
    y = torch.arange(16) % 10
    m = export_module_loihi2(model, (1, 8, 8), x, y, tmp_path / "b", timesteps=T, weight_bits=8)
    return m, x


def test_cuba_spike_readout_is_a_chain(tmp_path):
    m, _ = _cuba_spike_readout_bundle(tmp_path)
    assert m["readout"] == "spikes" and m["netx"] is None and (tmp_path / "b" / "network.net").is_file()
    assert [layer["name"] for layer in m["layers"]][-1] == "output_neuron"
    assert m["layers"][-1]["neuron_loihi"]["iDecay"] == 2048


@pytest.mark.lava
def test_cuba_spike_readout_runs_in_lava_as_fxp(lava_py, tmp_path):
    from neurodistill.formats.deploy_h5 import read_graph
    from neurodistill.sim.run import _lava_spikes

    _, x = _cuba_spike_readout_bundle(tmp_path)
    graph = read_graph(tmp_path / "b" / "deploy.h5")
    bias, _ = encoding_bias(graph, encoding_current(graph, x[:6].numpy()))
    ours = run_fxp(graph, torch.as_tensor(bias), T)
    lava = _lava_spikes(tmp_path / "b", graph, bias, T + graph.latency_steps, lava_py)
    assert set(lava["spikes"]) == set(ours["spikes"]) and graph.readout.name in ours["spikes"]
    for name, s in lava["spikes"].items():
        assert torch.equal(s, ours["spikes"][name]), (name, int((s != ours["spikes"][name]).sum()))
    assert ours["spikes"][graph.readout.name].any()


def test_default_readout_is_the_voltage():
    from neurodistill.models.registry import create_model

    model = create_model("snn_digits", 10, 1)
    assert model.output_neuron is None
    assert capture(model, (1, 8, 8), timesteps=T).readout_kind == "voltage"
