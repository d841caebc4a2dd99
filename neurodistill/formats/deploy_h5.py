"""`deploy.h5`: the whole quantized deployment graph, so that a bundle can be simulated and run in
Lava without the checkpoint (every graph, residual ones included; netx covers chains only).

Layout: `/format` ("neurodistill-deploy"), `/format_version`, attributes of the graph on `/`,
`/populations/<i>/` and `/synapses/<i>/` with one dataset or attribute per dataclass field.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import h5py
import numpy as np

from ..core.graph import INPUT, DeployGraph, Neuron, Population, Synapse
from ..core.quantize import BIAS_BITS, DECAY_UNITY, V_TH_MAX, WEIGHT_MAX, WEIGHT_MIN
from ..errors import CheckpointError
from ..io.hdf5 import open_hdf5
from ..io.output import atomic_write

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
    """Read and check a `deploy.h5`; anything missing, mistyped, out of Loihi's ranges or
    inconsistent is a `CheckpointError` that names the file and the field."""
    where = str(path)
    try:
        with open_hdf5(path, "deploy graph") as f:
            graph = _read(f, where)
    except (OSError, RuntimeError) as e:  # h5py: not HDF5, truncated, or damaged metadata or data
        raise CheckpointError(f"{where!r} cannot be read as HDF5 ({' '.join(str(e).split())})") from None
    check_graph(graph, where)
    return graph


# --- reading: every field present and of its type -------------------------------------------------

def _bad(where: str, field: str, msg: str) -> CheckpointError:
    return CheckpointError(f"{where!r}: {field} {msg}")


def _json_attr(g: h5py.Group, key: str, where: str, field: str):
    if key not in g.attrs:
        raise _bad(where, field, "is missing")
    raw = g.attrs[key]
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    if not isinstance(raw, str):
        raise _bad(where, field, f"is {type(raw).__name__} {_short(raw)}, not JSON text")
    try:
        return json.loads(raw)
    except ValueError:
        raise _bad(where, field, f"= {_short(raw)} is not valid JSON") from None


def _short(v) -> str:
    s = repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _int(v, where: str, field: str, lo: int | None = None, hi: int | None = None) -> int:
    if not _is_int(v) or (lo is not None and v < lo) or (hi is not None and v > hi):
        allowed = f"an integer in {lo}..{hi}" if hi is not None else f"an integer >= {lo}" if lo is not None else "an integer"
        raise _bad(where, field, f"= {_short(v)} is not allowed; allowed: {allowed}")
    return v


def _num(v, where: str, field: str, positive: bool = False, allow_inf: bool = False) -> float:
    ok = _is_num(v) and not math.isnan(v) and (allow_inf or math.isfinite(v)) and (not positive or v > 0)
    if not ok:
        raise _bad(where, field, f"= {_short(v)} is not allowed; allowed: a {'positive ' if positive else ''}"
                                 f"{'number' if allow_inf else 'finite number'}")
    return float(v)


def _str(v, where: str, field: str) -> str:
    if not isinstance(v, str) or not v:
        raise _bad(where, field, f"= {_short(v)} is not allowed; allowed: a non-empty string")
    return v


def _shape(v, where: str, field: str, ndim: int | None = None) -> tuple[int, ...]:
    if (not isinstance(v, list) or not v or not all(_is_int(x) and x >= 1 for x in v)
            or (ndim is not None and len(v) != ndim)):
        n = f"{ndim} " if ndim is not None else ""
        raise _bad(where, field, f"= {_short(v)} is not allowed; allowed: a list of {n}positive integers")
    return tuple(v)


def _pair(v, where: str, field: str, lo: int) -> tuple[int, int]:
    if not isinstance(v, list) or len(v) != 2 or not all(_is_int(x) and x >= lo for x in v):
        raise _bad(where, field, f"= {_short(v)} is not allowed; allowed: two integers >= {lo}")
    return tuple(v)


def _dataset(g: h5py.Group, key: str, where: str, field: str, kind: str, required: bool = True) -> np.ndarray | None:
    if key not in g:
        if required:
            raise _bad(where, field, "is missing")
        return None
    ds = g[key]
    if not isinstance(ds, h5py.Dataset):
        raise _bad(where, field, "is a group, not a dataset")
    dt = ds.dtype
    ok = np.issubdtype(dt, np.integer) if kind == "int" else (np.issubdtype(dt, np.floating) or np.issubdtype(dt, np.integer))
    if not ok:
        raise _bad(where, field, f"has dtype {dt}; allowed: {'integers' if kind == 'int' else 'numbers'}")
    if ds.shape is None:
        raise _bad(where, field, "is an empty dataset (no shape); allowed: an array")
    a = np.asarray(ds[()])
    if kind == "float":
        a = a.astype(np.float64)
        if not np.isfinite(a).all():
            raise _bad(where, field, "holds NaN or Inf values; allowed: finite numbers")
    else:
        a = a.astype(np.int64)
    return a


def _groups(f: h5py.File, key: str, where: str) -> list[h5py.Group]:
    if key not in f or not isinstance(f[key], h5py.Group):
        raise _bad(where, f"/{key}", "is missing")
    names = sorted(f[key].keys(), key=lambda k: (len(k), k))
    if names != [str(i) for i in range(len(names))]:
        raise _bad(where, f"/{key}", f"holds {_short(names)}; allowed: groups named 0..N-1")
    out = [f[key][n] for n in names]
    if any(not isinstance(g, h5py.Group) for g in out):
        raise _bad(where, f"/{key}", "holds a dataset where a group belongs")
    return out


NEURON_KINDS = ("lif", "if", "cuba", "source", "readout")
NEURON_KEYS = ("kind", "tau", "decay_input", "v_threshold", "v_reset")


def _neuron(v, where: str, field: str) -> Neuron:
    tau_syn = v.pop("tau_syn", None) if isinstance(v, dict) else None  # older files have none
    if not isinstance(v, dict) or sorted(v) != sorted(NEURON_KEYS):
        raise _bad(where, field, f"= {_short(v)} is not allowed; allowed: an object with keys {', '.join(NEURON_KEYS)}")
    if v["kind"] not in NEURON_KINDS:
        raise _bad(where, f"{field}.kind", f"= {_short(v['kind'])} is not allowed; allowed: {', '.join(NEURON_KINDS)}")
    if not isinstance(v["decay_input"], bool):
        raise _bad(where, f"{field}.decay_input", f"= {_short(v['decay_input'])} is not allowed; allowed: true or false")
    tau = _num(v["tau"], where, f"{field}.tau", positive=True, allow_inf=True)
    if v["kind"] == "lif" and not tau > 1:
        raise _bad(where, f"{field}.tau", f"= {tau} is not allowed for a lif neuron; allowed: a number > 1")
    v_reset = None if v["v_reset"] is None else _num(v["v_reset"], where, f"{field}.v_reset")
    if v["kind"] == "cuba":
        tau_syn = _num(tau_syn, where, f"{field}.tau_syn", positive=True, allow_inf=True)
    elif tau_syn is not None:
        raise _bad(where, f"{field}.tau_syn", f"= {_short(tau_syn)} is not allowed for a {v['kind']} neuron; allowed: null")
    return Neuron(v["kind"], tau, v["decay_input"], _num(v["v_threshold"], where, f"{field}.v_threshold"), v_reset, tau_syn)


def _population(g: h5py.Group, i: int, where: str) -> tuple[Population, np.ndarray]:
    at = f"population {i}"
    name = _str(_json_attr(g, "name", where, f"{at} name"), where, f"{at} name")
    at = f"population {i} ({name})"
    shape = _shape(_json_attr(g, "shape", where, f"{at} shape"), where, f"{at} shape")
    neuron = _neuron(_json_attr(g, "neuron", where, f"{at} neuron"), where, f"{at} neuron")
    depth = _int(_json_attr(g, "depth", where, f"{at} depth"), where, f"{at} depth", 0)
    scale = _num(_json_attr(g, "scale", where, f"{at} scale"), where, f"{at} scale", positive=True)
    i_decay = _int(_json_attr(g, "i_decay", where, f"{at} i_decay"), where, f"{at} i_decay", 0, DECAY_UNITY)
    v_decay = _int(_json_attr(g, "v_decay", where, f"{at} v_decay"), where, f"{at} v_decay", 0, DECAY_UNITY)
    v_th = _int(_json_attr(g, "v_th_mant", where, f"{at} v_th_mant"), where, f"{at} v_th_mant", 0, V_TH_MAX)
    bias = _dataset(g, "bias_mant", where, f"{at} bias_mant", "int")
    lo, hi = -(2 ** (BIAS_BITS - 1)), 2 ** (BIAS_BITS - 1) - 1
    if bias.size and (bias.min() < lo or bias.max() > hi):
        raise _bad(where, f"{at} bias_mant", f"holds {int(bias.min())}..{int(bias.max())}; allowed: {lo}..{hi} "
                                             f"({BIAS_BITS}-bit mantissas)")
    fbias = _dataset(g, "float_bias", where, f"{at} float_bias", "float")
    for field, a in (("bias_mant", bias), ("float_bias", fbias)):
        if tuple(a.shape) != shape:
            raise _bad(where, f"{at} {field}", f"has shape {tuple(a.shape)}; allowed: the population's shape {shape}")
    pop = Population(name, shape, neuron, depth=depth, scale=scale, i_decay=i_decay, v_decay=v_decay,
                     v_th_mant=v_th, bias_mant=bias)
    return pop, fbias


SYNAPSE_KINDS = ("conv", "dense")
W_INT_MIN, W_INT_MAX = WEIGHT_MIN, WEIGHT_MAX


def _synapse(g: h5py.Group, i: int, where: str) -> Synapse:
    at = f"synapse {i}"
    name = _str(_json_attr(g, "name", where, f"{at} name"), where, f"{at} name")
    at = f"synapse {i} ({name})"

    def attr(key):
        return _json_attr(g, key, where, f"{at} {key}")

    kind = attr("kind")
    if kind not in SYNAPSE_KINDS:
        raise _bad(where, f"{at} kind", f"= {_short(kind)} is not allowed; allowed: {', '.join(SYNAPSE_KINDS)}")
    source = _str(attr("source"), where, f"{at} source")
    target = _str(attr("target"), where, f"{at} target")
    weight = _dataset(g, "weight", where, f"{at} weight", "float")
    w_int = None
    if "weight_int" in g.attrs and _json_attr(g, "weight_int", where, f"{at} weight_int") is not None:
        raise _bad(where, f"{at} weight_int", "is not allowed as an attribute; allowed: null or an integer dataset")
    if "weight_int" in g:
        w_int = _dataset(g, "weight_int", where, f"{at} weight_int", "int")
        if w_int.shape != weight.shape:
            raise _bad(where, f"{at} weight_int", f"has shape {tuple(w_int.shape)}; allowed: the weight's shape "
                                                  f"{tuple(weight.shape)}")
        if w_int.size and (w_int.min() < W_INT_MIN or w_int.max() > W_INT_MAX):
            raise _bad(where, f"{at} weight_int", f"holds {int(w_int.min())}..{int(w_int.max())}; allowed: "
                                                  f"{W_INT_MIN}..{W_INT_MAX} (Loihi's 8-bit weights)")
    return Synapse(
        name, kind, source, target, weight,
        in_shape=_shape(attr("in_shape"), where, f"{at} in_shape"),
        out_shape=_shape(attr("out_shape"), where, f"{at} out_shape"),
        stride=_pair(attr("stride"), where, f"{at} stride", 1),
        padding=_pair(attr("padding"), where, f"{at} padding", 0),
        groups=_int(attr("groups"), where, f"{at} groups", 1),
        delay=_int(attr("delay"), where, f"{at} delay", 0),
        dense_ops=_int(attr("dense_ops"), where, f"{at} dense_ops", 0),
        weight_int=w_int,
    )


def _read(f: h5py.File, where: str) -> DeployGraph:
    fmt = f.attrs.get("format")
    if not isinstance(fmt, str) or fmt != FORMAT:
        raise CheckpointError(f"{where!r} is not a neurodistill deployment graph (deploy.h5): its format attribute is "
                              f"{_short(fmt)}, not {FORMAT!r}")
    version = f.attrs.get("format_version")
    if not isinstance(version, int | np.integer) or int(version) != VERSION:
        raise _bad(where, "format_version", f"= {_short(version)} is not allowed; this version reads {VERSION}")
    input_shape = _shape(_json_attr(f, "input_shape", where, "input_shape"), where, "input_shape")
    timesteps = _int(_json_attr(f, "timesteps", where, "timesteps"), where, "timesteps", 1)
    dt = _num(_json_attr(f, "dt", where, "dt"), where, "dt", positive=True)
    notes = _json_attr(f, "notes", where, "notes")
    if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
        raise _bad(where, "notes", f"= {_short(notes)} is not allowed; allowed: a list of strings")
    pops, biases = [], {}
    for i, g in enumerate(_groups(f, "populations", where)):
        p, b = _population(g, i, where)
        pops.append(p)
        biases[p.name] = b
    syns = [_synapse(g, i, where) for i, g in enumerate(_groups(f, "synapses", where))]
    return DeployGraph(input_shape, pops, syns, biases, timesteps, dt, notes)


# --- checking: the parts agree with each other ----------------------------------------------------

def _conv_out(in_shape: tuple[int, ...], w_shape: tuple[int, ...], stride, padding) -> tuple[int, int]:
    return tuple((n + 2 * p - k) // s + 1 for n, k, s, p in zip(in_shape[1:], w_shape[2:], stride, padding, strict=True))


def check_graph(graph: DeployGraph, where: str) -> None:
    """Populations and synapses consistent: names, shapes, conv arithmetic, depths, readout last."""
    pops = graph.populations
    _check_names(graph, where)
    index = {p.name: i for i, p in enumerate(pops)}
    host = [s for s in graph.synapses if s.host]
    if not host:
        raise _bad(where, "/synapses", f"has no encoding synapse (source {INPUT!r})")
    enc_targets = {s.target for s in host}
    if len(enc_targets) != 1:
        raise _bad(where, "/synapses", f"has encoding synapses into {sorted(enc_targets)}; allowed: one population")
    for i, s in enumerate(graph.synapses):
        _check_synapse(graph, index, i, s, where)
    enc = next(iter(enc_targets))
    for i, p in enumerate(pops):
        if p.name == enc:
            if p.depth != 0 or p.neuron.kind == "readout":
                raise _bad(where, f"population {i} ({p.name})", "is the encoding population; allowed: depth 0, not a readout")
            if i == len(pops) - 1:
                raise _bad(where, f"population {i} ({p.name})", "is the encoding population and the output; allowed: "
                                                                 "an output fed by another population")
        elif not graph.incoming(p.name) and p.neuron.kind != "source":
            raise _bad(where, f"population {i} ({p.name})", "has no incoming synapse")


def _check_names(graph: DeployGraph, where: str) -> None:
    """Unique population and synapse names, none the input's, one readout and it last."""
    pops = graph.populations
    if len(pops) < 2:
        raise _bad(where, "/populations", f"holds {len(pops)} population(s); allowed: an encoding population, ..., a readout")
    names = [p.name for p in pops]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise _bad(where, "/populations", f"names {dup!r} twice; allowed: unique names")
    if INPUT in names:
        raise _bad(where, "/populations", f"names a population {INPUT!r}, the name reserved for the input")
    readouts = [i for i, p in enumerate(pops) if p.neuron.kind == "readout"]
    if readouts not in ([], [len(pops) - 1]):
        raise _bad(where, "/populations", f"has readout populations at {readouts}; allowed: at most one, the last "
                                          f"(population {len(pops) - 1}; none: a spike readout)")
    snames = [s.name for s in graph.synapses]
    dup = next((n for n in snames if snames.count(n) > 1), None)
    if dup is not None:
        raise _bad(where, "/synapses", f"names {dup!r} twice; allowed: unique names")


def _check_synapse(graph: DeployGraph, index: dict[str, int], i: int, s: Synapse, where: str) -> None:
    """One synapse against its source and target: order, shapes, depth and delay, weight shape."""
    pops, names = graph.populations, [p.name for p in graph.populations]
    at = f"synapse {i} ({s.name})"
    if s.target not in index:
        raise _bad(where, f"{at} target", f"= {s.target!r} names no population; allowed: {', '.join(names)}")
    tgt = pops[index[s.target]]
    if s.host:
        src_shape, src_depth = graph.input_shape, -1
        if s.delay:
            raise _bad(where, f"{at} delay", f"= {s.delay} is not allowed for the encoding synapse; allowed: 0")
    else:
        if s.source not in index:
            raise _bad(where, f"{at} source", f"= {s.source!r} names no population; allowed: {INPUT!r}, "
                                              f"{', '.join(names)}")
        if index[s.source] >= index[s.target]:
            raise _bad(where, f"{at} source", f"= {s.source!r} does not come before its target {s.target!r}; "
                                              "allowed: populations in topological order")
        if s.weight_int is None:
            raise _bad(where, f"{at} weight_int", "is missing; an on-chip synapse needs its integer weights")
        src = pops[index[s.source]]
        src_shape, src_depth = src.shape, src.depth
    if s.in_shape != tuple(src_shape):
        raise _bad(where, f"{at} in_shape", f"= {list(s.in_shape)} disagrees with its source {s.source!r} of "
                                            f"shape {list(src_shape)}")
    if s.out_shape != tgt.shape:
        raise _bad(where, f"{at} out_shape", f"= {list(s.out_shape)} disagrees with its target {s.target!r} of "
                                             f"shape {list(tgt.shape)}")
    if tgt.depth != src_depth + 1 + s.delay:
        raise _bad(where, f"population {index[s.target]} ({s.target}) depth",
                   f"= {tgt.depth} disagrees with synapse {s.name!r} (source depth {src_depth}, delay {s.delay}: "
                   f"allowed {src_depth + 1 + s.delay})")
    _check_weight_shape(s, at, where)


def _check_weight_shape(s: Synapse, at: str, where: str) -> None:
    w = tuple(s.weight.shape)
    if s.kind == "conv":
        if len(w) != 4 or len(s.in_shape) != 3 or len(s.out_shape) != 3:
            raise _bad(where, f"{at} weight", f"has shape {w} for in {list(s.in_shape)} and out "
                                              f"{list(s.out_shape)}; allowed: a conv is (C_out, C_in/groups, kH, kW) "
                                              "between (C, H, W) shapes")
        if s.in_shape[0] != w[1] * s.groups or s.out_shape[0] != w[0] or w[0] % s.groups:
            raise _bad(where, f"{at} weight", f"has shape {w} with groups {s.groups}; allowed: "
                                              f"({s.out_shape[0]}, {s.in_shape[0]}/groups, kH, kW)")
        hw = _conv_out(s.in_shape, w, s.stride, s.padding)
        if tuple(s.out_shape[1:]) != hw:
            raise _bad(where, f"{at} out_shape", f"= {list(s.out_shape)} disagrees with the convolution of "
                                                 f"{list(s.in_shape)} by {w[2]}x{w[3]}, stride {list(s.stride)}, "
                                                 f"padding {list(s.padding)} (gives {list(hw)})")
    elif w != (int(np.prod(s.out_shape)), int(np.prod(s.in_shape))):
        raise _bad(where, f"{at} weight", f"has shape {w}; allowed: a dense weight "
                                          f"({int(np.prod(s.out_shape))}, {int(np.prod(s.in_shape))}) "
                                          f"for in {list(s.in_shape)} and out {list(s.out_shape)}")
