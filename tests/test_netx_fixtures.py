"""`.net` files written by lava-dl itself (tests/fixtures/lava-dl) read and simulated spike for spike.

For each fixture network, neurodistill's fixed-point simulator (`run_fxp_spike_input` on the
graph `read_netx` gives) and Lava (`netx.hdf5.Network`, fixed_pt, through
lava_scripts/run_netx_spikes.py) must agree on every spike of every layer at every step, on
20 random inputs that make every layer spike, and on the last layer's voltage. The Lava tests
are marked `lava` (required in CI); the reader's shape and error tests need no Lava.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from neurodistill.core.fxp_spikes import input_mode, run_fxp_spike_input
from neurodistill.core.graph import INPUT
from neurodistill.errors import CheckpointError, UnsupportedLayerError
from neurodistill.formats.netx.reader import effective_dense_weight, read_netx

from .conftest import ROOT

RUNNER = ROOT / "neurodistill" / "sim" / "lava_scripts" / "run_netx_spikes.py"
N_SAMPLES = 20


def fixture_dir() -> Path:
    cands = [os.environ.get("NEURODISTILL_LAVA_DL_FIXTURES"), ROOT / "tests" / "fixtures" / "lava-dl",
             ROOT / "shared" / "fixtures" / "lava-dl",
             ROOT.parent / "shared" / "fixtures" / "lava-dl"]
    for c in cands:
        if c and (Path(c) / "tiny.net").is_file():
            return Path(c)
    if os.environ.get("CI"):
        pytest.fail("CI=true but tests/fixtures/lava-dl is missing (set NEURODISTILL_LAVA_DL_FIXTURES)")
    pytest.skip("tests/fixtures/lava-dl not found (set NEURODISTILL_LAVA_DL_FIXTURES)")


@pytest.fixture(scope="module")
def fixtures() -> Path:
    return fixture_dir()


# ---- reading (no Lava) ---------------------------------------------------------------------------
EXPECTED = {
    "tiny": dict(input_shape=(3, 16, 16), mode="bias",
                 pops=[(3, 16, 16), (24, 6, 6), (36, 1, 1)], kinds=["conv", "conv"]),
    "pilotnet_snn": dict(input_shape=(3, 66, 200), mode="bias",
                         pops=[(3, 66, 200), (24, 32, 99), (36, 15, 49), (48, 7, 24), (64, 4, 22), (64, 2, 20),
                               (100,), (50,), (10,), (1,)],
                         kinds=["conv"] * 5 + ["dense"] * 4),
    "oxford": dict(input_shape=(200,), mode="spikes", pops=[(256,), (200,)], kinds=["dense", "dense"]),
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_read_netx_fixture_layers(name, fixtures):
    exp = EXPECTED[name]
    g = read_netx(fixtures / f"{name}.net")
    assert g.input_shape == exp["input_shape"]
    assert [p.shape for p in g.populations] == exp["pops"]
    assert [s.kind for s in g.synapses] == exp["kinds"]
    assert input_mode(g) == exp["mode"]
    assert any(n.startswith(f"input: {exp['mode']}") for n in g.notes)
    assert g.is_chain() if exp["mode"] == "bias" else g.synapses[0].source == INPUT
    with h5py.File(fixtures / f"{name}.net") as f:
        for p in g.populations:
            lay = f["layer"][p.name.removeprefix("layer")]
            assert (p.i_decay, p.v_decay, p.v_th_mant) == tuple(int(lay["neuron"][k][()]) for k in
                                                                ("iDecay", "vDecay", "vThMant"))
            assert p.bias_mant.shape == p.shape and p.scale is None
        for s in g.synapses:
            w = f["layer"][s.target.removeprefix("layer")]["weight"][()]
            assert s.weight_int.dtype.kind == "i" and np.array_equal(s.weight, s.weight_int.astype(float))
            # these files hold even 8-bit weights: netx's optimisation and Lava's truncation keep them exact
            assert np.array_equal(s.weight_int, w.reshape(s.weight_int.shape))
        if name == "pilotnet_snn":
            conv4 = g.synapses[3]
            assert (conv4.stride, conv4.padding) == ((2, 1), (1, 0))
            assert g.synapses[5].in_shape == (64, 2, 20) and g.synapses[5].weight_int.shape == (100, 2560)
            assert g.readout.neuron.kind == "readout" and g.readout.v_th_mant == 2**17 - 1
            per_channel = g.populations[1].bias_mant
            assert (per_channel == f["layer/1/bias"][()].astype(int)[:, None, None]).all()
    first = 1 if exp["mode"] == "spikes" else 0  # a spike-reading synapse is on chip: one step to layer 0
    assert [p.depth for p in g.populations] == [first + i for i in range(len(exp["pops"]))]


def _write(path: Path, layers: list[dict]) -> Path:
    with h5py.File(path, "w") as f:
        for i, spec in enumerate(layers):
            g = f.create_group(f"layer/{i}")
            g.create_dataset("type", (1,), "S10", [spec.pop("type").encode("ascii")])
            neuron = spec.pop("neuron", None)
            for k, v in spec.items():
                g.create_dataset(k, data=v)
            if neuron is not None:
                for k, v in neuron.items():
                    g.create_dataset(f"neuron/{k}", data=v)
    return path


NEURON = {"type": "CUBA", "iDecay": 1024, "vDecay": 512, "vThMant": 300, "refDelay": 1}


def test_unsupported_layer_type_names_layer(tmp_path):
    net = _write(tmp_path / "pool.net", [
        {"type": "input", "shape": np.array([2, 8, 8])},
        {"type": "pool", "shape": np.array([2, 4, 4]), "weight": np.ones((2, 1, 2, 2)), "neuron": dict(NEURON)},
    ])
    with pytest.raises(UnsupportedLayerError, match=r"layer 1 has type 'pool'"):
        read_netx(net)
    sdnn = _write(tmp_path / "sdnn.net", [
        {"type": "dense", "shape": np.array([4]), "weight": 2.0 * np.ones((4, 3)), "neuron": {**NEURON, "type": "SDNN"}},
    ])
    with pytest.raises(UnsupportedLayerError, match=r"layer 0 \(dense\) has neuron type 'SDNN'"):
        read_netx(sdnn)


def test_corrupt_files_give_checkpoint_error(tmp_path, fixtures):
    data = (fixtures / "tiny.net").read_bytes()
    trunc = tmp_path / "truncated.net"
    trunc.write_bytes(data[: len(data) // 3])
    text = tmp_path / "notes.net"
    text.write_text("this is not an HDF5 file\n")
    empty = _write(tmp_path / "nolayers.net", [])
    for path in (trunc, text, empty, tmp_path / "missing.net"):
        with pytest.raises(CheckpointError) as err:
            read_netx(path)
        msg = str(err.value)
        assert str(path) in msg and "\n" not in msg, msg


def test_effective_dense_weight_follows_lava():
    # Lava's Dense model picks INHIBITORY for weights <= 0 and clips -256 to -255 (netx said MIXED)
    assert effective_dense_weight(np.array([[-256, 0, 0], [0, -2, -4]]), "w").tolist() == [[-255, 0, 0], [0, -2, -4]]
    # ... and with one weight bit fewer, truncation then takes 255 to 254
    assert effective_dense_weight(np.array([[-256, 0], [-4, -8]]), "w").tolist() == [[-254, 0], [-4, -8]]
    w = np.random.default_rng(0).integers(-50, 51, (6, 9))  # odd weights are kept (weight_exp shifts)
    assert np.array_equal(effective_dense_weight(w, "w"), w)
    with pytest.raises(UnsupportedLayerError, match="8-bit range"):
        effective_dense_weight(np.array([[300, 0], [10, 4]]), "w")


# ---- Lava (required in CI) -----------------------------------------------------------------------
def _inputs(name: str, graph, n: int, steps: int, path: Path, seed: int) -> dict:
    """Random inputs: spike-fed nets get Bernoulli spikes, bias-fed nets the file's own input
    transform applied to random pixels (round((p - 0.5) * 2 * weight + bias), p uniform in [0, 1],
    the PilotNet tutorial's frame encoding)."""
    rng = np.random.default_rng(seed)
    if input_mode(graph) == "spikes":
        rate = 0.02 if name == "oxford" else 0.3  # oxford's weights are mostly negative: sparse input
        rates = rate * rng.uniform(1, 3, (n,) + (1,) * (1 + len(graph.input_shape)))  # per sample
        spikes = rng.random((n, steps, *graph.input_shape)) < rates
        return {"spikes": spikes.astype(np.uint8)}
    with h5py.File(path) as f:
        tw = int(f["layer/0/weight"][()].reshape(-1)[0]) if "weight" in f["layer/0"] else 64
        tb = int(f["layer/0/bias"][()].reshape(-1)[0]) if "bias" in f["layer/0"] else 0
    return {"bias": np.round((rng.random((n, *graph.input_shape)) - 0.5) * 2 * tw + tb).astype(np.int64)}


def _compare(name: str, net: Path, steps: int, lava_py: str, tmp_path: Path, seed: int = 0) -> dict:
    graph = read_netx(net)
    x = _inputs(name, graph, N_SAMPLES, steps, net, seed)
    np.savez(tmp_path / "in.npz", steps=steps, **x)
    t0 = time.time()
    res = subprocess.run([lava_py, str(RUNNER), str(net), str(tmp_path / "in.npz"), str(tmp_path / "out.npz")],
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    print(f"{name}: Lava {time.time() - t0:.1f} s ({res.stdout.strip().splitlines()[-1]})")
    lava = np.load(tmp_path / "out.npz")
    if "spikes" in x:
        ours = run_fxp_spike_input(graph, torch.as_tensor(x["spikes"]).transpose(0, 1).bool(), steps)
    else:
        ours = run_fxp_spike_input(graph, None, steps, in_bias=torch.as_tensor(x["bias"]))
    counts = {}
    for k, p in enumerate(graph.populations):
        theirs = lava[f"spikes_{k}"].astype(bool)
        mine = ours["spikes"][p.name].transpose(0, 1).numpy()
        assert theirs.shape == mine.shape == (N_SAMPLES, steps, *p.shape), (p.name, theirs.shape, mine.shape)
        bad = int((theirs != mine).sum())
        assert bad == 0, f"{name} {p.name}: {bad} spike mismatches of {theirs.size}"
        counts[p.name] = int(mine.sum())
    v_lava, v_ours = lava["v_last"], ours["v_readout_steps"].transpose(0, 1).numpy()
    assert np.array_equal(v_lava, v_ours), f"{name}: {int((v_lava != v_ours).sum())} voltage mismatches"
    for p in graph.populations:  # every layer must spike for the comparison to mean something
        if p.neuron.kind == "readout":  # never fires: its voltage is its output, and it must move
            assert (v_ours != 0).any(), (name, p.name)
        else:
            assert counts[p.name] > 0, f"{name} {p.name} never spiked: {counts}"
    return counts


@pytest.mark.lava
@pytest.mark.parametrize("name,steps", [("tiny", 16), ("oxford", 16), ("pilotnet_snn", 12)])
def test_lava_dl_fixture_spike_for_spike(name, steps, fixtures, lava_py, tmp_path):
    """pilotnet_snn (20 samples x 12 steps, 150 k neurons) takes ~35 s in Lava on 2 CPU cores."""
    _compare(name, fixtures / f"{name}.net", steps, lava_py, tmp_path)


@pytest.mark.lava
def test_input_layer_without_neuron_reads_spikes(lava_py, tmp_path):
    """An input layer without a neuron: the first conv reads input spikes (stride (1,2), padding
    (1,0), current memory), then flatten, and a dense with odd weights and a synaptic delay."""
    rng = np.random.default_rng(5)
    net = _write(tmp_path / "spiking_input.net", [
        {"type": "input", "shape": np.array([2, 7, 10])},
        {"type": "conv", "shape": np.array([4, 7, 4]), "stride": np.array([1, 2]), "padding": np.array([1, 0]),
         "dilation": np.array([1, 1]), "groups": 1, "weight": 2.0 * rng.integers(-40, 60, (4, 2, 3, 3)),
         "bias": rng.integers(-10, 10, 4).astype(float), "neuron": dict(NEURON)},
        {"type": "flatten", "shape": np.array([112, 1, 1])},
        {"type": "dense", "shape": np.array([10]), "weight": rng.integers(-60, 61, (10, 112)).astype(float),
         "bias": np.zeros(10), "delay": 2, "neuron": {**NEURON, "iDecay": 4096, "vDecay": 256, "vThMant": 100}},
    ])
    graph = read_netx(net)
    assert input_mode(graph) == "spikes" and graph.synapses[0].source == INPUT and graph.synapses[1].delay == 2
    _compare("spiking_input", net, 12, lava_py, tmp_path, seed=1)


DENSE_SCRIPT = r"""
import sys
import numpy as np
from lava.lib.dl.netx.utils import optimize_weight_bits
from lava.proc.dense.models import PyDenseModelBitAcc

class Port:
    def __init__(self):
        self.value, self.sent = None, []
    def recv(self):
        return self.value
    def send(self, x):
        self.sent.append(np.array(x))

d = np.load(sys.argv[1])
out = {}
for key in [k for k in d.files if k.startswith("w")]:
    w, bits, exp, _ = optimize_weight_bits(d[key])       # what netx's create_dense does
    m = PyDenseModelBitAcc({"weight_exp": exp, "num_weight_bits": bits})  # Lava's own fixed_pt model
    m.weights, m.num_message_bits = w.astype(np.int32), np.array([0])
    m.a_buff = np.zeros(w.shape[0], np.int32)
    m.s_in, m.a_out = Port(), Port()
    for s in list(d["s" + key[1:]]) + [np.zeros(w.shape[1], bool)]:
        m.s_in.value = s
        m.run_spk()
    out["a" + key[1:]] = np.stack(m.a_out.sent[1:])
np.savez(sys.argv[2], **out)
"""


@pytest.mark.lava
def test_effective_dense_weight_matches_lava_dense_model(lava_py, tmp_path, fixtures):
    """`effective_dense_weight` against netx's optimize_weight_bits + Lava's PyDenseModelBitAcc."""
    rng = np.random.default_rng(2)
    ws = [rng.integers(-50, 51, (7, 9)), 2 * rng.integers(-40, 40, (7, 9)), rng.integers(0, 201, (7, 9)),
          rng.integers(0, 4, (7, 9)), rng.integers(-100, 0, (7, 9)), np.array([[-256, 0, 0], [0, -2, -4]]),
          np.array([[-256, 0], [-4, -8]]), rng.choice([-1, 1], (5, 6)), np.array([[254, -256], [2, 0]]),
          rng.integers(-3, 4, (6, 8)) * 16]
    with h5py.File(fixtures / "oxford.net") as f:
        ws += [f["layer/0/weight"][()].astype(int), f["layer/1/weight"][()].astype(int)]
    data = {}
    for i, w in enumerate(ws):
        data[f"w{i}"] = w
        data[f"s{i}"] = rng.random((16, w.shape[1])) < 0.5
    np.savez(tmp_path / "w.npz", **data)
    script = tmp_path / "dense.py"
    script.write_text(DENSE_SCRIPT)
    res = subprocess.run([lava_py, str(script), str(tmp_path / "w.npz"), str(tmp_path / "a.npz")],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    a = np.load(tmp_path / "a.npz")
    for i, w in enumerate(ws):
        eff = effective_dense_weight(w, f"w{i}")
        assert np.array_equal(a[f"a{i}"], data[f"s{i}"].astype(np.int64) @ eff.T), (i, w, eff)
