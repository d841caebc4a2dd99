"""`neurodistill simulate NET.net --inputs FILE` on lava-dl's own files, and spikes saved in NIR's data format."""

from __future__ import annotations

import json

import nir
import numpy as np
import pytest
import torch

from neurodistill.sim.fxp_spikes import run_fxp_spike_input
from neurodistill.sim.netx_reader import read_netx
from neurodistill.sim.spikes_nir import read_spikes

from .conftest import ROOT, run_cli

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


def test_bias_input_net_counts_and_spikes_file(inputs, tmp_path):
    d, bias, _ = inputs
    res = run_cli("simulate", str(FIX / "tiny.net"), "--inputs", str(d / "tiny.npz"), "--save-spikes", "--out", str(tmp_path))
    assert res.returncode == 0, res.stderr
    sim = json.loads((tmp_path / "simulation.json").read_text())
    graph = read_netx(FIX / "tiny.net")
    ref = run_fxp_spike_input(graph, None, 16, in_bias=torch.as_tensor(bias))
    assert sim["samples"] == 6 and sim["steps_per_sample"] == 16 and sim["input"] == "bias"
    for layer, p in zip(sim["layers"], graph.populations, strict=True):
        assert layer["spikes"] == float(ref["spikes"][p.name].sum())
    # on-disk spikes: NIR's TimeGriddedData (samples, steps, neurons), equal to the simulator's
    saved = read_spikes(tmp_path / "spikes.h5")
    for p in graph.populations:
        expect = ref["spikes"][p.name].reshape(16, 6, -1).transpose(0, 1).numpy()
        assert np.array_equal(saved[p.name], expect)
    assert np.array_equal(saved["output/v"], ref["v_readout_steps"].reshape(16, 6, -1).transpose(0, 1).numpy())
    data = nir.read_data(str(tmp_path / "spikes.h5"))
    assert data.nodes["layer1"].observables["spikes"].dt == 1.0
    # a hand check of the exact events: layer 1's input spikes times its padding-aware fan-out
    syn = graph.synapses[0]
    from neurodistill.report.counters import fanout_map

    events = float((ref["spikes"][syn.source].double().sum((0, 1)) * fanout_map(syn)).sum())
    assert sim["layers"][1]["synaptic_events"] == events > 0


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
    (["tiny.net", "garbage.npz"], "cannot read it as numpy arrays"),
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
