"""Residual (non-chain) deployment graphs run in Lava (fixed_pt) spike for spike.

`run_graph.py` builds the Lava process graph from `deploy.h5` itself (netx cannot express
residual graphs): several synapse layers into one population's `a_in`, path-matching delays as
Lava synaptic delays. Every spike of every population at every step, and the readout voltage at
every step, must equal neurodistill's fixed-point simulator. Required in CI.
"""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import torch
from spikingjelly.activation_based import layer, neuron
from torch import nn

from neurodistill.core.capture import capture
from neurodistill.core.fxp import run_fxp
from neurodistill.core.loihi2 import encoding_bias, encoding_current, quantize_graph
from neurodistill.formats.deploy_h5 import write_graph
from neurodistill.models.base import Net
from neurodistill.models.resnet import BasicBlock

from .conftest import ROOT
from .test_export_lava import conv_net

pytestmark = pytest.mark.lava
RUNNER = ROOT / "neurodistill" / "sim" / "lava_scripts" / "run_graph.py"
SHAPE = (2, 6, 10)  # non-square input


def residual_net():
    """A stem, an identity-shortcut block and a strided block with a 1x1 conv + BN shortcut."""
    torch.manual_seed(5)

    def act():
        return neuron.LIFNode(tau=2.0, v_threshold=0.5)

    body = nn.Sequential(layer.Conv2d(2, 4, 3, padding=1), layer.BatchNorm2d(4), act(),
                         BasicBlock(4, 4, 1, act),  # identity shortcut
                         BasicBlock(4, 6, 2, act),  # conv 1x1 stride 2 + BN shortcut
                         layer.Flatten(1), layer.Linear(6 * 3 * 5, 3))
    return trained_like(body)


def trained_like(body: nn.Sequential) -> Net:
    """BatchNorm statistics as after training, so that every population is active."""
    with torch.no_grad():
        for bn in body.modules():
            if isinstance(bn, nn.BatchNorm2d):
                bn.running_mean.uniform_(-0.1, 0.1)
                bn.running_var.uniform_(0.2, 0.5)
                bn.weight.uniform_(1.5, 3.0)
                bn.bias.uniform_(0.0, 0.3)
    return Net(body, spiking=True).eval()


def quantized(model, shape, T):
    graph = capture(model, shape, timesteps=T)
    calib = np.random.default_rng(1).uniform(0, 1.5, (64, *shape))
    quantize_graph(graph, 8, encoding_max=float(np.abs(encoding_current(graph, calib)).max()))
    return graph


def run_lava(lava_py, graph, bias, steps, tmp_path):
    write_graph(graph, tmp_path / "deploy.h5")
    np.savez(tmp_path / "in.npz", bias=bias, steps=steps)
    res = subprocess.run([lava_py, str(RUNNER), str(tmp_path / "deploy.h5"), str(tmp_path / "in.npz"),
                          str(tmp_path / "out.npz")], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return np.load(tmp_path / "out.npz")


def assert_spike_for_spike(graph, lava, bias, T):
    ours = run_fxp(graph, torch.as_tensor(bias), T)
    steps = T + graph.latency_steps
    firing = [p for p in graph.populations if p.neuron.kind != "readout"]
    for k, p in enumerate(firing):
        want = ours["spikes"][p.name].transpose(0, 1).numpy()  # (N, steps, *shape)
        assert lava[f"spikes_{k}"].shape == want.shape, p.name
        bad = np.argwhere(lava[f"spikes_{k}"] != want)
        assert bad.size == 0, f"{p.name}: {len(bad)} mismatches, first (sample, step, ...) {bad[0].tolist()}"
        assert want.any(), f"population {p.name} never spikes: the comparison would mean little"
    v = ours["v_readout_steps"].transpose(0, 1).numpy()  # (N, steps, K)
    assert lava["v_readout"].shape == (len(bias), steps, *graph.readout.shape)
    assert np.array_equal(lava["v_readout"], v)


def test_residual_graph_runs_in_lava_spike_for_spike(lava_py, tmp_path):
    T, n = 4, 20
    graph = quantized(residual_net(), SHAPE, T)
    assert not graph.is_chain()
    chip = [s for s in graph.synapses if not s.host]
    assert any(s.delay > 0 for s in chip)
    assert any(s.groups > 1 and s.weight.shape[2:] == (1, 1) for s in chip), "identity shortcut (depthwise 1x1)"
    assert any(s.stride == (2, 2) and s.weight.shape[2:] == (1, 1) and s.delay > 0 for s in chip), "strided 1x1 shortcut"
    assert max(len(graph.incoming(p.name)) for p in graph.populations) == 2
    x = np.random.default_rng(2).uniform(0, 1.5, (n, *SHAPE))
    bias, _ = encoding_bias(graph, encoding_current(graph, x))
    lava = run_lava(lava_py, graph, bias, T + graph.latency_steps, tmp_path)
    assert_spike_for_spike(graph, lava, bias, T)


def test_graph_runner_on_a_chain_equals_the_simulator(lava_py, tmp_path):
    torch.manual_seed(3)
    model, shape = conv_net()
    T = 3
    graph = quantized(model.eval(), shape, T)
    assert graph.is_chain()
    x = np.random.default_rng(2).uniform(0, 1.5, (6, *shape))
    bias, _ = encoding_bias(graph, encoding_current(graph, x))
    lava = run_lava(lava_py, graph, bias, T + graph.latency_steps, tmp_path)
    assert_spike_for_spike(graph, lava, bias, T)


def test_simulate_lava_backend_on_a_residual_bundle(lava_py, tmp_path):
    from neurodistill.export.bundle import dataset_samples, export_module_loihi2
    from neurodistill.sim.run import simulate

    data = {"synthetic_shape": list(SHAPE), "synthetic_classes": 3, "synthetic_size": 80}  # test split: 20
    x, y = dataset_samples("synthetic", None, data, 32, "train")
    source = {"source": "test", "source_sha256": None, "model": "residual_net", "calibration_split": "train",
              "dataset": {"name": "synthetic", "data_dir": None, "data": data, "num_classes": 3}}
    bundle = tmp_path / "bundle"
    manifest = export_module_loihi2(residual_net(), SHAPE, x, y, bundle, timesteps=3, source=source)
    assert manifest["netx"]["written"] is False and not (bundle / "network.net").exists()
    lava = simulate(bundle, tmp_path / "lava", backend="lava", samples=20, lava_python=lava_py)
    fxp = simulate(bundle, tmp_path / "fxp", backend="fxp", samples=20, all_steps=True)  # pipeline fill too
    assert lava["samples"] == 20 and lava["backend"] == "lava"
    assert lava["layers"] == fxp["layers"] and lava["accuracy"] == fxp["accuracy"]
    assert all(layer["spikes"] > 0 for layer in lava["layers"] if layer["kind"] != "readout")
    on_disk = json.loads((tmp_path / "lava" / "simulation.json").read_text())
    assert on_disk["layers"] == fxp["layers"]
