"""Fuzzing the files of a Loihi 2 bundle: every mutation gives a typed error or a valid result.

A tiny bundle (digits, conv-conv-dense, T=2) is exported once. Each case copies it, mutates one
file (truncation, byte flips, deletion, manifest JSON edits, deploy.h5 and network.net edits
through h5py, network.nir damage) with its own seed, and runs the in-process consumers of that
file: `inspect` (read_manifest, render), `simulate` (fxp, a handful of samples), `read_netx` (and
a few fixed-point steps of what it read), `from_nir_to_torch`. A `NeurodistillError` with a
one-line message, or a valid result, passes; any other exception, a multi-line message, a
half-written `simulation.json` or a case over its time limit fails with the case id.
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


def _typed(fn: Callable[[], object]) -> str:
    """Run one consumer: 'ok', or the name of the typed error (whose message must be one line)."""
    try:
        fn()
        return "ok"
    except NeurodistillError as e:
        assert "\n" not in str(e) and str(e).strip(), f"not a one-line message: {str(e)!r}"
        return type(e).__name__


def consume(bundle: Path, changed: str, out: Path) -> dict[str, str]:
    """Run what reads the changed file; assert the result is valid when it is not a typed error."""
    from neurodistill.export.inspect import render
    from neurodistill.sim.run import simulate

    res = {}
    if changed in ("manifest.json", "deploy.h5"):
        res["inspect"] = _typed(lambda: render(bundle))
        res["simulate"] = _typed(lambda: simulate(bundle, out, samples=6, batch_size=4))
        if res["simulate"] == "ok":
            sim = json.loads((out / "simulation.json").read_text())
            assert sim["samples"] == 6 and 0 <= sim["accuracy"] <= 1 and sim["layers"], sim
            assert all(math.isfinite(x["spikes"]) for x in sim["layers"])
            res["simulate-float"] = _typed(lambda: simulate(bundle, out / "float", backend="float", samples=3))
        else:
            assert not (out / "simulation.json").exists(), "simulation.json written by a failed simulate"
    if changed == "network.net":
        res["read_netx"] = _typed(lambda: _netx_run(bundle / "network.net"))
    if changed == "network.nir":
        res["nir"] = _typed(lambda: _nir_run(bundle / "network.nir"))
    return res


def _netx_run(path: Path) -> None:
    """read_netx, then a few fixed-point steps of the graph it read: a valid graph runs."""
    from neurodistill.report.counters import count
    from neurodistill.sim.fxp_spikes import input_mode, run_fxp_spike_input
    from neurodistill.sim.netx_reader import read_netx

    graph = read_netx(path)
    steps = 3
    if input_mode(graph) == "bias":
        bias = torch.randint(-50, 50, (2, *graph.populations[0].shape))
        run = run_fxp_spike_input(graph, None, steps, in_bias=bias)
        count(graph, run["spikes"], steps, pipelined=False)
    else:
        spikes = torch.rand(steps, 2, *graph.input_shape) < 0.3
        run = run_fxp_spike_input(graph, spikes, steps)
        count(graph, run["spikes"], steps, pipelined=False, input_spikes=spikes)


def _nir_run(path: Path) -> None:
    from neurodistill.export.nir_float import from_nir_to_torch

    from_nir_to_torch(path)


def test_fuzz_bundle_files(tiny_bundle, tmp_path):
    all_cases = cases()
    assert len(all_cases) >= 200
    old = signal.signal(signal.SIGALRM, _on_alarm)
    outcomes: Counter = Counter()
    failures: list[str] = []
    slowest = (0.0, "")
    t_all = time.perf_counter()
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
                outcomes.update(f"{k}:{v}" for k, v in consume(b, name, tmp_path / f"o{i}").items())
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
          f"outcomes: {dict(sorted(outcomes.items()))}")
    assert not failures, f"{len(failures)} of {len(all_cases)} cases crashed:\n" + "\n".join(failures)
    # the fuzzer reaches both sides: valid results and typed errors, for each consumer
    for consumer in ("inspect", "simulate", "read_netx", "nir"):
        assert any(k.startswith(f"{consumer}:") and not k.endswith(":ok") for k in outcomes), consumer
    assert outcomes["simulate:ok"] > 0 and outcomes["read_netx:ok"] > 0


def test_pristine_tiny_bundle_is_valid(tiny_bundle, tmp_path):
    b = tmp_path / "b"
    shutil.copytree(tiny_bundle, b)
    for name in FILES:
        res = consume(b, name, tmp_path / "o")
        assert set(res.values()) == {"ok"}, (name, res)
    sim = json.loads((tmp_path / "o" / "simulation.json").read_text())
    assert sum(x["spikes"] for x in sim["layers"]) > 0
