"""Fuzzing the files of a Loihi 2 bundle: every mutation gives a typed error or a valid result.

A tiny bundle (digits, conv-conv-dense, T=2) is exported once. Each case copies it, mutates one
file (truncation, byte flips, deletion, manifest JSON edits, deploy.h5 and network.net edits
through h5py, network.nir damage) with its own seed, and runs the in-process consumers of that
file: `inspect` (read_manifest, render), `simulate` (fxp, a handful of samples), `read_netx` (and
a few fixed-point steps of what it read), `from_nir_to_torch`. A `NeurodistillError` with a
one-line message, or a valid result, passes; any other exception, a multi-line message, a
half-written `simulation.json` or a case over its time limit fails with the case id.

Oracle: the pristine bundle is run once through the same consumers. Each mutated file is
compared with the pristine one (parsed JSON; HDF5 objects, attributes, dataset shapes, dtypes
and values), and a consumer's 'ok' is accepted only if its output equals the pristine output,
or every difference is legitimate data (`legit_change`: integer weights on the 8-bit grid,
biases and thresholds within their Loihi ranges, finite float parameters, the manifest's test
dataset, and the manifest fields `inspect` only displays). A structural change (shapes, stride,
depth, source/target, reset and timing attributes, deleted datasets or groups, dtypes, a file
h5py cannot open) must give a typed error or the pristine output.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import signal
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from neurodistill.errors import NeurodistillError

SEED = 20240611
CASE_SECONDS = 20  # a case that runs longer hangs (the slowest take well under a second)
FILES = ("manifest.json", "deploy.h5", "network.net", "network.nir")


def make_tiny_bundle(out: Path) -> Path:
    """conv(1->4) LIF, conv(4->4, stride 2) LIF, dense(64->10) readout on 8x8 digits, T=2; spiking."""
    from spikingjelly.activation_based import layer
    from torch import nn

    from neurodistill.export.bundle import dataset_samples, export_module_loihi2
    from neurodistill.models.base import Net, activation
    from neurodistill.models.neurons import NeuronConfig

    torch.manual_seed(0)
    act = activation(NeuronConfig())
    body = nn.Sequential(layer.Conv2d(1, 4, 3, 1, 1), act(), layer.Conv2d(4, 4, 3, 2, 1), act(), layer.Flatten(1),
                         layer.Linear(64, 10))
    with torch.no_grad():  # random weights large enough that both layers spike
        body[0].weight.mul_(10.0)
        body[2].weight.mul_(8.0)
    x, y = dataset_samples("digits", None, {}, 16, "train")
    source = {"source": "python module", "source_sha256": None, "model": "tiny", "calibration_split": "train",
              "dataset": {"name": "digits", "data_dir": None, "data": {}, "num_classes": 10}}
    export_module_loihi2(Net(body, spiking=True).eval(), (1, 8, 8), x, y, out, timesteps=2, source=source)
    return out


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory) -> Path:
    return make_tiny_bundle(tmp_path_factory.mktemp("tiny") / "bundle")


# --- mutations: each takes (bundle dir, rng) and changes one file --------------------------------

WRONG = [None, True, -1, 0, 1, 3, 4097, 2**40, 1.5, -0.5, float("nan"), float("inf"), "", "x", [], [0], [1, 3],
         [1, 8, 8, 1], [-1, 8, 8], {}, {"a": 1}]


def truncate(name: str) -> Callable:
    def m(b: Path, rng: random.Random) -> str:
        data = (b / name).read_bytes()
        n = rng.randrange(0, len(data))
        (b / name).write_bytes(data[:n])
        return f"truncate {name} at {n} of {len(data)}"
    return m


def flip(name: str) -> Callable:
    def m(b: Path, rng: random.Random) -> str:
        data = bytearray((b / name).read_bytes())
        where = sorted(rng.randrange(len(data)) for _ in range(rng.choice((1, 2, 4, 16))))
        for i in where:
            data[i] ^= 1 << rng.randrange(8) if rng.random() < 0.5 else rng.randrange(1, 256)
        (b / name).write_bytes(bytes(data))
        return f"flip {name} bytes {where[:4]}{'...' if len(where) > 4 else ''}"
    return m


def delete(name: str) -> Callable:
    def m(b: Path, rng: random.Random) -> str:
        (b / name).unlink()
        return f"delete {name}"
    return m


def _paths(obj, prefix=()) -> list[tuple]:
    out = []
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else []
    for k, v in items:
        out.append((*prefix, k))
        out += _paths(v, (*prefix, k))
    return out


def _edit_manifest(b: Path, edit: Callable[[dict], str]) -> str:
    m = json.loads((b / "manifest.json").read_text())
    what = edit(m)
    (b / "manifest.json").write_text(json.dumps(m["__whole__"] if "__whole__" in m else m))
    return what


def _parent(m, path):
    for k in path[:-1]:
        m = m[k]
    return m


def manifest_drop(b: Path, rng: random.Random) -> str:
    def edit(m):
        path = rng.choice(_paths(m))
        parent = _parent(m, path)
        del parent[path[-1]]
        return f"manifest: drop {'.'.join(map(str, path))}"
    return _edit_manifest(b, edit)


def manifest_wrong(b: Path, rng: random.Random) -> str:
    def edit(m):
        # favour the keys that consumers read: top level and the first level below
        paths = [p for p in _paths(m) if len(p) <= 3 or rng.random() < 0.2]
        path = rng.choice(paths)
        value = rng.choice(WRONG)
        _parent(m, path)[path[-1]] = value
        return f"manifest: {'.'.join(map(str, path))} = {value!r}"
    return _edit_manifest(b, edit)


MANIFEST_EDITS = [
    ("input_shape", [1, 8, 9]), ("input_shape", [8, 8]), ("input_shape", [3, 8, 8]), ("timesteps", 3),
    ("timesteps", 0), ("timesteps", "2"), ("latency_steps", 5), ("steps_per_sample", 7), ("target", "nir"),
    ("target", "loihi3"), ("format_version", 2), ("dataset", None), ("dataset", {"name": "cifar10"}),
    ("dataset", {"name": "synthetic", "data": {}}), ("dataset", {"name": "nope"}),
    ("dataset", {"name": "digits", "data": {"synthetic_shape": 5}}), ("dataset", {"name": "digits", "data_dir": 3}),
    ("layers", []), ("resources", {"layers": []}), ("netx", {"written": False}), ("files", ["deploy.h5"]),
    ("accuracy_float", 1.5), ("dt", 0), ("__whole__", []), ("__whole__", "manifest"), ("__whole__", 5),
]


def manifest_edit(i: int) -> Callable:
    def m(b: Path, rng: random.Random) -> str:
        key, value = MANIFEST_EDITS[i]

        def edit(mf):
            mf[key] = value
            return f"manifest: {key} = {value!r}"
        return _edit_manifest(b, edit)
    return m


def manifest_layer_edit(b: Path, rng: random.Random) -> str:
    def edit(m):
        layer = rng.choice(m["layers"])
        key, value = rng.choice([("shape", [4, 4, 5]), ("name", "other"), ("depth", 7), ("shape", [10, 1]),
                                 ("neuron_loihi", {"vDecay": 1}), ("clipped_fraction", {"weights": 0.0})])
        layer[key] = value
        return f"manifest: layer {layer.get('name')} {key} = {value!r}"
    return _edit_manifest(b, edit)


def _objects(f: h5py.File) -> tuple[list[str], list[str]]:
    groups, datasets = ["/"], []
    f.visititems(lambda n, o: (datasets if isinstance(o, h5py.Dataset) else groups).append(n))
    return groups, datasets


def _h5(name: str, op: Callable[[h5py.File, random.Random], str]) -> Callable:
    def m(b: Path, rng: random.Random) -> str:
        with h5py.File(b / name, "r+") as f:
            return f"{name}: {op(f, rng)}"
    return m


def h5_del_attr(f, rng):
    groups, _ = _objects(f)
    g = f[rng.choice([x for x in groups if len(f[x].attrs)])]
    key = rng.choice(sorted(g.attrs))
    del g.attrs[key]
    return f"delete attribute {g.name}@{key}"


def h5_json_attr(f, rng):
    groups, _ = _objects(f)
    g = f[rng.choice([x for x in groups if len(f[x].attrs)])]
    key = rng.choice(sorted(g.attrs))
    value = rng.choice(WRONG + ['"readout"', '"input"', "{", "[4, 4, 4]", "[2, 2]", '{"kind": "lif"}'])
    text = value if isinstance(value, str) and value[:1] in '"{[' else json.dumps(value)
    g.attrs[key] = text
    return f"attribute {g.name}@{key} = {text}"


def h5_raw_attr(f, rng):
    groups, _ = _objects(f)
    g = f[rng.choice([x for x in groups if len(f[x].attrs)])]
    key = rng.choice(sorted(g.attrs))
    value = rng.choice([np.int64(3), np.float64(2.5), np.arange(3), b"bytes", np.array([b"a", b"b"])])
    g.attrs[key] = value
    return f"attribute {g.name}@{key} = {value!r} (not JSON text)"


def h5_int_attr(f, rng):
    """A JSON integer (or list of integers) attribute nudged: still well-formed, maybe inconsistent."""
    groups, _ = _objects(f)
    cands = []
    for x in groups:
        for k, v in f[x].attrs.items():
            try:
                val = json.loads(v) if isinstance(v, str) else None
            except ValueError:
                val = None
            if isinstance(val, int) and not isinstance(val, bool) or (isinstance(val, list) and val and
                                                                      all(isinstance(i, int) for i in val)):
                cands.append((x, k, val))
    x, k, val = rng.choice(cands)
    d = rng.choice((-2, -1, 1, 2, 4096, -4096, 2**20))
    at = rng.randrange(len(val)) if isinstance(val, list) else 0
    new = val + d if isinstance(val, int) else [v + (d if j == at else 0) for j, v in enumerate(val)]
    f[x].attrs[k] = json.dumps(new)
    return f"attribute {f[x].name}@{k} {val} -> {new}"


def h5_del_dataset(f, rng):
    _, ds = _objects(f)
    name = rng.choice(ds)
    del f[name]
    return f"delete dataset {name}"


def h5_del_group(f, rng):
    groups, _ = _objects(f)
    name = rng.choice(groups[1:])
    del f[name]
    return f"delete group {name}"


def h5_rename_group(f, rng):
    groups, _ = _objects(f)
    name = rng.choice([g for g in groups[1:] if g.rsplit("/", 1)[-1].isdigit()] or groups[1:])
    new = name.rsplit("/", 1)[0] + "/" + str(rng.choice((7, 99))) if "/" in name else name + "_x"
    f.move(name, new)
    return f"move group {name} -> {new}"


def h5_reshape(f, rng):
    _, ds = _objects(f)
    name = rng.choice(ds)
    a = np.asarray(f[name][()])
    choice = rng.randrange(5)
    if choice == 0 or a.ndim == 0:
        b = np.zeros((0,), a.dtype)
    elif choice == 1:
        b = a.reshape(-1)[: max(1, a.size // 2)]
    elif choice == 2:
        b = a[..., None]
    elif choice == 3:
        b = np.concatenate([a, a], axis=0)
    else:
        b = a.T.copy() if a.ndim > 1 else a.reshape(1, -1)
    del f[name]
    f.create_dataset(name, data=b)
    return f"dataset {name} shape {a.shape} -> {b.shape}"


def h5_dtype(f, rng):
    _, ds = _objects(f)
    name = rng.choice(ds)
    a = np.asarray(f[name][()])
    choice = rng.randrange(4)
    if choice == 0:
        b = np.full(a.shape, b"text", dtype="S4")
    elif choice == 1:
        b = a.astype(np.float64) + 0.5 if a.dtype.kind in "iuf" else np.zeros(a.shape)
    elif choice == 2:
        b = a.astype(np.bool_) if a.dtype.kind in "iufb" else np.ones(a.shape, np.bool_)
    else:
        b = np.array(7, dtype=np.int32)
    del f[name]
    f.create_dataset(name, data=b)
    return f"dataset {name} dtype {a.dtype}{a.shape} -> {b.dtype}{b.shape}"


def h5_values(f, rng):
    _, ds = _objects(f)
    name = rng.choice([d for d in ds if f[d].dtype.kind in "iuf"])
    a = np.asarray(f[name][()])
    value = rng.choice((2**20, -(2**20), 4095, -4097, 255, -257, 1e30, float("nan"), float("inf"), 0))
    b = a.astype(np.float64) if isinstance(value, float) else a.astype(np.int64) if a.dtype.kind in "iu" else a.copy()
    if b.ndim == 0:
        b = np.asarray(value, dtype=b.dtype)
    else:
        b[tuple(rng.randrange(n) for n in b.shape)] = value
    del f[name]
    f.create_dataset(name, data=b)
    return f"dataset {name} value {value!r}"


def netx_set(key: str, values: list) -> Callable:
    """Set dataset `key` of a random netx layer that has it (else of one with weights) to one of `values`."""
    def op(f, rng):
        layers = ([n for n in sorted(f["layer"]) if key in f["layer"][n]]
                  or [n for n in sorted(f["layer"]) if "weight" in f["layer"][n]])
        n = rng.choice(layers)
        value = rng.choice(values)
        if key in f["layer"][n]:
            del f["layer"][n][key]
        f["layer"][n].create_dataset(key, data=value)
        return f"layer {n} {key} = {value!r}"
    return op


NETX_OPS = [
    netx_set("type", [np.array([b"pool"], dtype="S10"), np.array([b"input"], dtype="S10"), np.array([b"dense"], dtype="S10"),
                      np.array([b"conv"], dtype="S10"), np.array([b"flatten"], dtype="S10"), np.array(5)]),
    netx_set("shape", [np.array([0]), np.array([4, 4]), np.array([-1, 4, 4]), np.array([10]), np.array([4, 8, 8]),
                       np.array([1e30]), np.array([np.nan])]),
    netx_set("stride", [np.array([0, 0]), np.array([1, 1]), np.array([-1, 2]), np.array([]), np.array([2.0, np.inf])]),
    netx_set("padding", [np.array([-1, 0]), np.array([5, 5]), np.array([0, 0]), np.array([np.nan, 0])]),
    netx_set("groups", [np.array(0), np.array(2), np.array(3), np.array(-4), np.array(1e9)]),
    netx_set("dilation", [np.array([2, 2]), np.array([0, 0])]),
    netx_set("weight", [np.zeros((4, 4, 3)), np.zeros((4, 4, 3, 3)), np.full((4, 4, 3, 3), 1e6), np.ones((10, 63)),
                        np.full((10, 64), np.nan), np.zeros(0), np.ones((4, 4, 3, 3, 2))]),
    netx_set("bias", [np.full(4, 1e9), np.zeros(7), np.full(10, np.nan), np.array([]), np.zeros((4, 4, 4))]),
    netx_set("delay", [np.array([1, 2]), np.array(np.nan), np.array(100), np.array([])]),
]


def netx_neuron(f, rng):
    n = rng.choice(sorted(f["layer"]))
    g = f["layer"][n]
    if "neuron" not in g:
        return f"layer {n}: no neuron (unchanged)"
    key = rng.choice(["iDecay", "vDecay", "vThMant", "type", "messageBits"])
    value = rng.choice([np.array(-1), np.array(5000), np.array(2**20), np.array(np.nan), np.array(b"RF"),
                        np.array(1), np.array([]), np.array(0)])
    if key in g["neuron"]:
        del g["neuron"][key]
    g["neuron"].create_dataset(key, data=value)
    return f"layer {n} neuron {key} = {value!r}"


def netx_drop(f, rng):
    n = rng.choice(sorted(f["layer"]))
    key = rng.choice(sorted(f["layer"][n]))
    del f["layer"][n][key]
    return f"layer {n}: delete {key}"


# --- the cases ------------------------------------------------------------------------------------

def cases() -> list[tuple[str, str, Callable]]:
    """(case id, file it changes, mutation); the rng of each is seeded with SEED and its index."""
    out: list[tuple[str, str, Callable]] = []

    def add(kind: str, name: str, fn: Callable, n: int = 1) -> None:
        for _ in range(n):
            out.append((f"{len(out):03d}-{kind}-{name}", name, fn))

    for name, n in (("manifest.json", 10), ("deploy.h5", 16), ("network.net", 10), ("network.nir", 4)):
        add("truncate", name, truncate(name), n)
    for name, n in (("manifest.json", 6), ("deploy.h5", 24), ("network.net", 14), ("network.nir", 8)):
        add("flip", name, flip(name), n)
    for name in FILES:
        add("delete", name, delete(name))
    add("drop", "manifest.json", manifest_drop, 16)
    add("wrong", "manifest.json", manifest_wrong, 22)
    for i in range(len(MANIFEST_EDITS)):
        add("edit", "manifest.json", manifest_edit(i))
    add("layer", "manifest.json", manifest_layer_edit, 5)
    for op, n in ((h5_del_attr, 10), (h5_json_attr, 16), (h5_raw_attr, 5), (h5_int_attr, 16), (h5_del_dataset, 8),
                  (h5_del_group, 4), (h5_rename_group, 3), (h5_reshape, 10), (h5_dtype, 8), (h5_values, 12)):
        add(op.__name__, "deploy.h5", _h5("deploy.h5", op), n)
    for op in NETX_OPS:
        add(op.__name__ if op.__name__ != "op" else "netx_set", "network.net", _h5("network.net", op), 2)
    add("netx_neuron", "network.net", _h5("network.net", netx_neuron), 6)
    add("netx_drop", "network.net", _h5("network.net", netx_drop), 6)
    for op, n in ((h5_del_dataset, 3), (h5_reshape, 4), (h5_dtype, 3), (h5_values, 4)):
        add(op.__name__, "network.net", _h5("network.net", op), n)
    return out


class CaseTimeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise CaseTimeout()


def _typed(fn: Callable[[], object], outputs: dict | None = None, key: str = "") -> str:
    """Run one consumer: 'ok', or the name of the typed error (whose message must be one line).
    With `outputs`, what an 'ok' run returned is kept under `key` for the oracle."""
    try:
        value = fn()
    except NeurodistillError as e:
        assert "\n" not in str(e) and str(e).strip(), f"not a one-line message: {str(e)!r}"
        return type(e).__name__
    if outputs is not None:
        outputs[key] = value
    return "ok"


# simulation.json fields that name the bundle or label it rather than describe what ran
SIM_LABELS = ("bundle", "bundle_manifest_sha256", "model", "neurodistill_version")


def _sim_output(out: Path) -> dict:
    sim = json.loads((out / "simulation.json").read_text())
    return {k: v for k, v in sim.items() if k not in SIM_LABELS}


def consume(bundle: Path, changed: str, out: Path, outputs: dict | None = None) -> dict[str, str]:
    """Run what reads the changed file; assert the result is valid when it is not a typed error.

    `outputs` (if given) receives each 'ok' consumer's output, for comparison with the pristine run."""
    from neurodistill.export.inspect import render
    from neurodistill.sim.run import simulate

    outputs = {} if outputs is None else outputs
    res = {}
    if changed in ("manifest.json", "deploy.h5"):
        res["inspect"] = _typed(lambda: render(bundle).replace(str(bundle), "<bundle>"), outputs, "inspect")
        res["simulate"] = _typed(lambda: simulate(bundle, out, samples=6, batch_size=4))
        if res["simulate"] == "ok":
            sim = json.loads((out / "simulation.json").read_text())
            assert sim["samples"] == 6 and 0 <= sim["accuracy"] <= 1 and sim["layers"], sim
            assert all(math.isfinite(x["spikes"]) for x in sim["layers"])
            outputs["simulate"] = _sim_output(out)
            res["simulate-float"] = _typed(lambda: simulate(bundle, out / "float", backend="float", samples=3))
            if res["simulate-float"] == "ok":
                outputs["simulate-float"] = _sim_output(out / "float")
        else:
            assert not (out / "simulation.json").exists(), "simulation.json written by a failed simulate"
    if changed == "network.net":
        res["read_netx"] = _typed(lambda: _netx_run(bundle / "network.net"), outputs, "read_netx")
    if changed == "network.nir":
        res["nir"] = _typed(lambda: _nir_run(bundle / "network.nir"), outputs, "nir")
    return res


def _netx_run(path: Path) -> dict[str, np.ndarray]:
    """read_netx, then a few fixed-point steps of the graph it read (fixed seeded input): its spikes and voltages."""
    from neurodistill.core.counters import count
    from neurodistill.core.fxp_spikes import input_mode, run_fxp_spike_input
    from neurodistill.formats.netx.reader import read_netx

    graph = read_netx(path)
    steps = 6  # enough for spikes to reach the second population (the oracle compares them)
    gen = torch.Generator().manual_seed(7)
    if input_mode(graph) == "bias":
        bias = torch.randint(-125, 500, (2, *graph.populations[0].shape), generator=gen)
        run = run_fxp_spike_input(graph, None, steps, in_bias=bias)
        count(graph, run["spikes"], steps, pipelined=False)
    else:
        spikes = torch.rand(steps, 2, *graph.input_shape, generator=gen) < 0.3
        run = run_fxp_spike_input(graph, spikes, steps)
        count(graph, run["spikes"], steps, pipelined=False, input_spikes=spikes)
    out = {f"spikes/{k}": v.numpy() for k, v in run["spikes"].items()}
    out["v_readout_steps"] = run["v_readout_steps"].numpy()
    return out


NIR_INPUT = torch.rand(2, 3, 1, 8, 8, generator=torch.Generator().manual_seed(3)) * 4  # (T, B, C, H, W)


def _nir_run(path: Path) -> np.ndarray:
    """The NIR graph imported into torch, run on a fixed input: its output per step."""
    from neurodistill.formats.nir.to_torch import from_nir_to_torch

    module = from_nir_to_torch(path)
    try:
        with torch.no_grad():
            return module(NIR_INPUT).numpy()
    except RuntimeError as e:  # an importable graph that cannot run on the bundle's input shape
        return np.array([f"RuntimeError: {e}"])


def _same(a, b) -> bool:
    """Outputs equal: JSON-like values exactly, arrays in shape, dtype and every value (NaN == NaN)."""
    if isinstance(a, dict) or isinstance(b, dict):
        return isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.shape == b.shape and a.dtype == b.dtype and bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
    return a == b


# --- the oracle's view of a change: what differs between the pristine and the mutated file ----------

def _h5_snapshot(path: Path) -> dict | None:
    """{object path: ('group', attrs) or ('dataset', dtype, shape, values, attrs)}; None if h5py cannot read it all."""
    snap: dict = {}
    try:
        with h5py.File(path, "r") as f:
            def visit(name, o):
                attrs = {k: np.asarray(v).tolist() if not isinstance(v, str | bytes) else v for k, v in o.attrs.items()}
                if isinstance(o, h5py.Dataset):
                    snap[name] = ("dataset", o.dtype.str, o.shape, np.asarray(o[()]), attrs)
                else:
                    snap[name] = ("group", attrs)
            visit("/", f)
            f.visititems(visit)
    except Exception:  # noqa: BLE001 - any failure to read it means: damaged
        return None
    return snap


def _json_paths(a, b, prefix=()) -> list[tuple]:
    """The paths at which two JSON values differ (leaves, or the first level where the kinds differ)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [p for k in a.keys() | b.keys() for p in _json_paths(a.get(k, KeyError), b.get(k, KeyError), (*prefix, k))]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [p for i, (x, y) in enumerate(zip(a, b, strict=True)) for p in _json_paths(x, y, (*prefix, i))]
    return [] if _same_json(a, b) else [prefix]


def _same_json(a, b) -> bool:
    return type(a) is type(b) and (a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b)))


def _ints_in(v: np.ndarray, lo: int, hi: int, step: int = 1) -> bool:
    v = np.asarray(v)
    if v.dtype.kind not in "iuf" or not np.isfinite(v).all():
        return False
    return bool((v == np.round(v)).all() and (v >= lo).all() and (v <= hi).all() and (np.round(v) % step == 0).all())


def _finite(v: np.ndarray) -> bool:
    v = np.asarray(v)
    return v.dtype.kind in "iuf" and bool(np.isfinite(v).all())


# Integer datasets (by name) whose values are data: any value on the Loihi grid is a valid network.
LEGIT_H5_VALUES: dict[str, dict[str, Callable[[np.ndarray], bool]]] = {
    "deploy.h5": {"weight_int": lambda v: _ints_in(v, -256, 254, 2), "bias_mant": lambda v: _ints_in(v, -4096, 4095),
                  "weight": _finite, "float_bias": _finite},
    "network.net": {"weight": lambda v: _ints_in(v, -256, 254, 2), "bias": lambda v: _ints_in(v, -4096, 4095),
                    "vThMant": lambda v: _ints_in(v, 0, 2**17 - 1), "vDecay": lambda v: _ints_in(v, 0, 4096),
                    "iDecay": lambda v: _ints_in(v, 0, 4096)},
    "network.nir": {k: _finite for k in ("weight", "bias", "tau", "r", "v_threshold", "v_leak", "v_reset", "scale")},
}
# JSON attributes of deploy.h5 whose values are data (thresholds and the op count for the report).
LEGIT_H5_ATTRS = {"v_th_mant": lambda v: isinstance(v, int) and 0 <= v <= 2**17 - 1,
                  "dense_ops": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0}


def legit_change(name: str, pristine: Path, mutated: Path, consumer: str) -> tuple[bool, str]:
    """(whether every difference of `name` from the pristine bundle is legitimate data for `consumer`, why)."""
    if not (mutated / name).exists():
        return False, "file deleted"
    if name == "manifest.json":
        try:
            new = json.loads((mutated / name).read_text())
        except ValueError:
            return False, "manifest is not JSON"
        paths = _json_paths(json.loads((pristine / name).read_text()), new)
        if consumer == "inspect":  # inspect displays the manifest: what it shows is what the file says
            return True, "inspect shows the manifest's values"
        bad = [p for p in paths if not (p and p[0] == "dataset")]  # the test set to simulate on is the user's choice
        return not bad, f"manifest paths changed: {['.'.join(map(str, p)) for p in bad][:3]}"
    before, after = _h5_snapshot(pristine / name), _h5_snapshot(mutated / name)
    if after is None:
        return False, "h5py cannot read the mutated file"
    why = []
    for key in before.keys() | after.keys():
        a, b = before.get(key), after.get(key)
        if a is None or b is None or a[0] != b[0]:
            why.append(f"{key} added/removed")
            continue
        attrs_a, attrs_b = a[-1], b[-1]
        for k in attrs_a.keys() | attrs_b.keys():
            if attrs_a.get(k, KeyError) == attrs_b.get(k, KeyError):
                continue
            ok = k in LEGIT_H5_ATTRS and k in attrs_b and name == "deploy.h5"
            if ok:
                try:
                    ok = LEGIT_H5_ATTRS[k](json.loads(attrs_b[k]))
                except (TypeError, ValueError):
                    ok = False
            if not ok:
                why.append(f"{key}@{k}")
        if a[0] == "dataset":
            # a numeric dtype is not structure (netx stores integers as floats): the value checks decide
            numeric = a[3].dtype.kind in "iuf" and b[3].dtype.kind in "iuf"
            if a[2] != b[2] or (a[1] != b[1] and not numeric):
                why.append(f"{key} dtype/shape {a[1:3]} -> {b[1:3]}")
            elif a[1] != b[1] or not np.array_equal(a[3], b[3], equal_nan=a[3].dtype.kind == "f"):
                check = LEGIT_H5_VALUES[name].get(key.rsplit("/", 1)[-1])
                if check is None or not check(b[3]):
                    why.append(f"{key} values")
    return not why, f"structural: {why[:3]}"
def test_fuzz_bundle_files(tiny_bundle, tmp_path):
    all_cases = cases()
    assert len(all_cases) >= 200
    old = signal.signal(signal.SIGALRM, _on_alarm)
    outcomes: Counter = Counter()
    failures: list[str] = []
    slowest = (0.0, "")
    t_all = time.perf_counter()
    pristine: dict[str, dict] = {}  # the oracle: every consumer's output on the unchanged bundle
    for name in FILES:
        shutil.copytree(tiny_bundle, tmp_path / "pristine", dirs_exist_ok=True)
        pristine[name] = {}
        res = consume(tmp_path / "pristine", name, tmp_path / f"pristine-o-{name}", pristine[name])
        assert set(res.values()) == {"ok"}, (name, res)
    accepted_changes: Counter = Counter()
    accepted_cases: list[str] = []
    try:
        for i, (case_id, name, mutate) in enumerate(all_cases):
            rng = random.Random(SEED * 1000 + i)
            b = tmp_path / f"b{i}"
            shutil.copytree(tiny_bundle, b)
            what = "(mutation not applied)"
            t0 = time.perf_counter()
            signal.alarm(CASE_SECONDS)
            try:
                what = mutate(b, rng)
                got: dict = {}
                res = consume(b, name, tmp_path / f"o{i}", got)
                outcomes.update(f"{k}:{v}" for k, v in res.items())
                for consumer, value in got.items():
                    if _same(value, pristine[name][consumer]):
                        continue
                    legit, why = legit_change(name, tiny_bundle, b, consumer)
                    if not legit:
                        raise AssertionError(f"{consumer} gave a result that differs from the pristine bundle's "
                                             f"for a change that is not legitimate data ({why})")
                    accepted_changes[consumer] += 1
                    accepted_cases.append(f"{case_id} {consumer} ({what})")
            except CaseTimeout:
                failures.append(f"case {case_id} ({what}): no result within {CASE_SECONDS} s (a hang)")
            except Exception as e:  # noqa: BLE001 - the point of the test: name the case, go on, fail at the end
                where = traceback.extract_tb(e.__traceback__)[-1]
                failures.append(f"case {case_id} ({what}): {type(e).__name__}: {' '.join(str(e).split())[:300]} "
                                f"[{Path(where.filename).name}:{where.lineno}]")
            finally:
                signal.alarm(0)
            dt = time.perf_counter() - t0
            slowest = max(slowest, (dt, case_id))
            shutil.rmtree(b)
    finally:
        signal.signal(signal.SIGALRM, old)
    total = time.perf_counter() - t_all
    print(f"\n{len(all_cases)} fuzz cases in {total:.1f} s (slowest {slowest[1]}: {slowest[0]:.2f} s); "
          f"outcomes: {dict(sorted(outcomes.items()))}; ok and different from pristine (legitimate data): "
          f"{dict(accepted_changes)}" + "".join(f"\n  {c}" for c in accepted_cases))
    assert not failures, f"{len(failures)} of {len(all_cases)} cases crashed:\n" + "\n".join(failures)
    # the fuzzer reaches both sides: valid results and typed errors, for each consumer
    for consumer in ("inspect", "simulate", "read_netx", "nir"):
        assert any(k.startswith(f"{consumer}:") and not k.endswith(":ok") for k in outcomes), consumer
    assert outcomes["simulate:ok"] > 0 and outcomes["read_netx:ok"] > 0


def test_pristine_tiny_bundle_is_valid(tiny_bundle, tmp_path):
    b = tmp_path / "b"
    shutil.copytree(tiny_bundle, b)
    outputs: dict = {}
    for name in FILES:
        res = consume(b, name, tmp_path / f"o-{name}", outputs)
        assert set(res.values()) == {"ok"}, (name, res)
    sim = json.loads((tmp_path / "o-deploy.h5" / "simulation.json").read_text())
    assert sum(x["spikes"] for x in sim["layers"]) > 0
    # the oracle's outputs mean something: the netx run and the NIR import spike and vary with the input
    netx_spikes = {k: int(v.sum()) for k, v in outputs["read_netx"].items() if k.startswith("spikes/")}
    assert len(netx_spikes) == 3 and all(list(netx_spikes.values())[:2]), netx_spikes  # the readout never fires
    assert np.isfinite(outputs["nir"]).all() and np.ptp(outputs["nir"]) > 0
    # and the oracle catches a change: one weight moved on the grid is legitimate data, a stride is not
    with h5py.File(b / "deploy.h5", "r+") as f:
        w = f["synapses/1/weight_int"]
        w[0, 0, 0, 0] = 2 if w[0, 0, 0, 0] != 2 else 4
        f["synapses/1"].attrs["stride"] = json.dumps([1, 1])
    assert not legit_change("deploy.h5", tiny_bundle, b, "simulate")[0]
    with h5py.File(b / "deploy.h5", "r+") as f:
        f["synapses/1"].attrs["stride"] = tiny_stride = h5py.File(tiny_bundle / "deploy.h5")["synapses/1"].attrs["stride"]
    assert tiny_stride and legit_change("deploy.h5", tiny_bundle, b, "simulate")[0]
