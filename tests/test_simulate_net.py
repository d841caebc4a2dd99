"""`neurodistill simulate NET.net --inputs FILE` on lava-dl's own files, and spikes saved in NIR's data format."""

from __future__ import annotations

import json

import nir
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from neurodistill.formats.netx.reader import read_netx
from neurodistill.formats.nir.spikes import read_spikes

from .conftest import ROOT, run_cli
from .test_fxp_engine import reference

FIX = ROOT / "tests" / "fixtures" / "lava-dl"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("net-inputs")
    rng = np.random.default_rng(0)
    bias = np.round((rng.random((6, 3, 16, 16)) - 0.5) * 72 + 34).astype(np.int64)  # tiny.net's input transform
    np.savez(d / "tiny.npz", bias=bias, steps=16, labels=np.arange(6) % 36)
    spikes = (rng.random((5, 12, 200)) < 0.2).astype(np.uint8)
    np.save(d / "oxford.npy", spikes)
    return d, bias, spikes


def _numpy_loihi_run(graph, bias: np.ndarray, steps: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """tiny.net step by step with the int64 reference of Lava's equations (tests/test_fxp_engine.py),
    which shares no code with neurodistill's simulator: the input layer's bias mantissas are the
    sample's, the others the file's; no reset (a .net file runs as lava-dl's netx would)."""
    pops = graph.populations
    biases = {p.name: bias if i == 0 else p.bias_mant[None].astype(np.int64) for i, p in enumerate(pops)}
    spikes, v_out, _ = reference(graph, biases, steps, reset=False)
    return spikes, v_out


def test_bias_input_net_counts_and_spikes_file(inputs, tmp_path):
    d, bias, _ = inputs
    res = run_cli("simulate", str(FIX / "tiny.net"), "--inputs", str(d / "tiny.npz"), "--save-spikes", "--out", str(tmp_path))
    assert res.returncode == 0, res.stderr
    sim = json.loads((tmp_path / "simulation.json").read_text())
    graph = read_netx(FIX / "tiny.net")
    spikes, v_out = _numpy_loihi_run(graph, bias, 16)
    assert sim["samples"] == 6 and sim["steps_per_sample"] == 16 and sim["input"] == "bias"
    assert [x["name"] for x in sim["layers"]] == ["layer0", "layer1", "layer2"]
    for layer in sim["layers"]:
        s = spikes[layer["name"]]
        assert layer["spikes"] == float(s.sum()) > 0
        assert layer["spikes_per_step"] == [float(x) for x in s.reshape(16, -1).sum(1)]
        assert layer["neuron_updates"] == s[0, 0].size * 16 * 6
    # on-disk spikes, read by NIR itself: TimeGriddedData (samples, steps, neurons), equal to the numpy run
    data = nir.read_data(str(tmp_path / "spikes.h5"))
    assert data.nodes["layer1"].observables["spikes"].dt == 1.0
    for name, s in spikes.items():
        assert np.array_equal(data.nodes[name].observables["spikes"].data, s.reshape(16, 6, -1).transpose(1, 0, 2))
    assert np.array_equal(data.nodes["output"].observables["v"].data, v_out.reshape(16, 6, -1).transpose(1, 0, 2))
    saved = read_spikes(tmp_path / "spikes.h5")
    assert all(np.array_equal(saved[name], s.reshape(16, 6, -1).transpose(1, 0, 2)) for name, s in spikes.items())
    # exact synaptic events (docs/simulate.md#counting-conventions): each input spike times its fan-out = over the output neurons,
    # the active inputs in each one's receptive field: a ones kernel convolved over the input spikes
    # (tiny.net: 5x5 stride 2, no padding: the last row and column of layer0 reach no output neuron)
    assert sim["layers"][0]["synaptic_events"] == 0 and sim["layers"][0]["acs"] == 0
    for syn, layer in zip(graph.synapses, sim["layers"][1:], strict=True):
        src = torch.from_numpy(spikes[syn.source]).double().flatten(0, 1)  # (steps * B, C, H, W)
        ones = torch.ones(tuple(syn.weight.shape), dtype=torch.float64)
        events = float(F.conv2d(src, ones, stride=syn.stride, padding=syn.padding, groups=syn.groups).sum())
        assert layer["synaptic_events"] == events > 0
        # ACs (paper convention): fr_in * T * FLOPs, FLOPs = k*k*C_in*C_out*H_out*W_out, over 6 samples
        flops = {"layer1": 5 * 5 * 3 * 24 * 6 * 6, "layer2": 5 * 5 * 24 * 36 * 1 * 1}[layer["name"]]
        fr_in = float(src.sum()) / (src[0].numel() * 16 * 6)
        assert layer["dense_ops"] == flops and layer["macs"] == 0
        assert layer["acs"] == pytest.approx(fr_in * 16 * flops * 6, rel=1e-12)


def test_spike_input_net_counts_input_spikes_as_acs(inputs, tmp_path):
    d, _, spikes = inputs
    res = run_cli("simulate", str(FIX / "oxford.net"), "--inputs", str(d / "oxford.npy"), "--out", str(tmp_path))
    assert res.returncode == 0, res.stderr
    sim = json.loads((tmp_path / "simulation.json").read_text())
    first = sim["layers"][0]
    # oxford: Dense 200 -> 256 fed by the input spikes on chip: every input spike reaches 256 synapses
    assert first["synaptic_events"] == float(spikes.sum()) * 256
    assert first["acs"] == pytest.approx(float(spikes.sum()) * 256, rel=1e-12)
    assert first["macs"] == 0 and first["dense_ops"] == 200 * 256
    assert sim["accuracy"] is None


@pytest.mark.lava
def test_net_file_lava_backend_equals_fxp(inputs, tmp_path, lava_py):
    d, _, _ = inputs
    out = {}
    for backend in ("fxp", "lava"):
        res = run_cli("simulate", str(FIX / "tiny.net"), "--inputs", str(d / "tiny.npz"), "--backend", backend,
                      "--save-spikes", "--lava-python", lava_py, "--out", str(tmp_path / backend))
        assert res.returncode == 0, res.stderr
        out[backend] = json.loads((tmp_path / backend / "simulation.json").read_text())
    for a, b in zip(out["fxp"]["layers"], out["lava"]["layers"], strict=True):
        assert {k: a[k] for k in ("spikes", "spikes_per_step", "synaptic_events", "acs")} == \
               {k: b[k] for k in ("spikes", "spikes_per_step", "synaptic_events", "acs")}
    f, la = read_spikes(tmp_path / "fxp" / "spikes.h5"), read_spikes(tmp_path / "lava" / "spikes.h5")
    assert f.keys() == la.keys() and all(np.array_equal(f[k], la[k]) for k in f)


@pytest.mark.parametrize("args, message", [
    (["oxford.net", "tiny.npz"], "takes 'spikes' input"),
    (["tiny.net", "oxford.npy"], "needs (samples, 3, 16, 16)"),
    (["tiny.net", None], "needs --inputs"),
    (["tiny.net", "missing.npz"], "does not exist"),
    (["tiny.net", "garbage.npz"], "is not an .npz archive"),
])
def test_net_file_bad_inputs_one_line(inputs, tmp_path, args, message):
    d, _, _ = inputs
    (d / "garbage.npz").write_bytes(b"PK\x03\x04 not really a zip")
    cmd = ["simulate", str(FIX / args[0]), "--out", str(tmp_path / "o")]
    if args[1]:
        cmd += ["--inputs", str(d / args[1])]
    res = run_cli(*cmd)
    assert res.returncode == 2 and message in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    assert not (tmp_path / "o" / "simulation.json").exists()


def test_bundle_spikes_file_matches_counts_and_nir_nodes(sim_bundle, tmp_path):
    res = run_cli("simulate", str(sim_bundle), "--samples", "20", "--save-spikes", "--out", str(tmp_path))
    assert res.returncode == 0, res.stderr
    sim = json.loads((tmp_path / "simulation.json").read_text())
    saved = read_spikes(tmp_path / "spikes.h5")
    graph_nodes = set(nir.read(str(sim_bundle / "network.nir")).nodes)
    firing = [x for x in sim["layers"] if x["firing_rate"] is not None]
    for layer in firing:
        key = layer["name"].replace(".", "_")
        assert key in graph_nodes and key in saved
        s = saved[key]
        assert s.shape[0] == 20 and s.shape[1] == sim["steps_per_sample"]
        assert float(s.sum()) == layer["spikes"] + layer["pipeline_spikes"]
    assert saved["output/v"].shape[:2] == (20, sim["steps_per_sample"])
