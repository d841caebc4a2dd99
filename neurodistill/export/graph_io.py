"""`deploy.h5`: the whole quantized deployment graph, so that a bundle can be simulated and run in
Lava without the checkpoint (every graph, residual ones included; netx covers chains only).

Layout: `/format` ("neurodistill-deploy"), `/format_version`, attributes of the graph on `/`,
`/populations/<i>/` and `/synapses/<i>/` with one dataset or attribute per dataclass field.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import h5py
import numpy as np

from ..errors import CheckpointError
from ..train.checkpoint import atomic_write
from .graph import DeployGraph, Neuron, Population, Synapse

FORMAT, VERSION = "neurodistill-deploy", 1


def _compact(name: str, v: np.ndarray) -> np.ndarray:
    """Integer weights fit int16 ([-256, 254]) and float weights are float32, as the model trained them."""
    if name == "weight_int":
        return v.astype(np.int16)
    if v.dtype == np.float64 and name == "weight":
        return v.astype(np.float32)
    return v


def _put(g: h5py.Group, obj) -> None:
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if isinstance(v, np.ndarray):
            v = _compact(f.name, v)
            g.create_dataset(f.name, data=v, compression="lzf" if v.size > 4096 else None)
        elif dataclasses.is_dataclass(v):
            g.attrs[f.name] = json.dumps(dataclasses.asdict(v))
        else:
            g.attrs[f.name] = json.dumps(v)


def _get(g: h5py.Group, cls):
    kw = {}
    for f in dataclasses.fields(cls):
        if f.name in g:
            kw[f.name] = g[f.name][()]
            if f.name == "weight_int":
                kw[f.name] = kw[f.name].astype(np.int64)
            elif f.name == "weight":
                kw[f.name] = kw[f.name].astype(np.float64)
        elif f.name in g.attrs:
            v = json.loads(g.attrs[f.name])
            kw[f.name] = tuple(v) if isinstance(v, list) else v
    if cls is Population:
        kw["neuron"] = Neuron(**json.loads(g.attrs["neuron"]))
    return cls(**kw)


def write_graph(graph: DeployGraph, path: str | Path) -> None:
    def write(tmp: str) -> None:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"], f.attrs["format_version"] = FORMAT, VERSION
            for k in ("input_shape", "timesteps", "dt", "notes"):
                f.attrs[k] = json.dumps(getattr(graph, k))
            for i, p in enumerate(graph.populations):
                g = f.create_group(f"populations/{i}")
                _put(g, p)
                g.create_dataset("float_bias", data=graph.biases[p.name])
            for i, s in enumerate(graph.synapses):
                _put(f.create_group(f"synapses/{i}"), s)

    atomic_write(path, write)


def read_graph(path: str | Path) -> DeployGraph:
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FORMAT:
                raise CheckpointError(f"{str(path)!r} is not a neurodistill deployment graph (deploy.h5)")
            pops = [_get(f[f"populations/{i}"], Population) for i in range(len(f["populations"]))]
            biases = {p.name: f[f"populations/{i}/float_bias"][()] for i, p in enumerate(pops)}
            syns = [_get(f[f"synapses/{i}"], Synapse) for i in range(len(f["synapses"]))]
            a = {k: json.loads(f.attrs[k]) for k in ("input_shape", "timesteps", "dt", "notes")}
    except OSError as e:
        raise CheckpointError(f"{str(path)!r} cannot be read as HDF5 ({e})") from None
    return DeployGraph(tuple(a["input_shape"]), pops, syns, biases, a["timesteps"], a["dt"], a["notes"])
