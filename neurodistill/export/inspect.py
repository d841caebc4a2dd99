"""`neurodistill inspect BUNDLE`: a bundle's manifest as tables for a terminal."""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..errors import CheckpointError
from ..io.files import inside, read_json
from ..io.hdf5 import open_hdf5

FORMAT_VERSIONS = (1,)  # the manifest versions this version reads (export/bundle.py FORMAT_VERSION)
TARGETS = ("loihi2", "nir", "onnx")


def read_manifest(bundle: Path) -> dict:
    """A bundle's manifest.json, checked: an object whose keys (those that `inspect` and
    `simulate` read) are present and of their types; else a `CheckpointError` naming the key."""
    path = inside(bundle, "manifest.json", "bundle file")
    if not path.is_file():
        raise CheckpointError(f"{str(bundle)!r} is not an export bundle (no manifest.json)")
    m = read_json(path)
    check_manifest(m, str(path))
    return m


HDF5_FILES = ("deploy.h5", "network.net", "network.nir")


def check_bundle_files(bundle: Path) -> None:
    """Every HDF5 file of a bundle checked by `open_hdf5` (nothing outside the bundle is referenced,
    sizes bounded), whichever of them a command goes on to read: Lava reads network.net itself."""
    for name in HDF5_FILES:
        p = inside(bundle, name, "bundle file")
        if p.exists() or p.is_symlink():
            with open_hdf5(p, "bundle file"):
                pass


def _short(v) -> str:
    s = json.dumps(v) if _plain(v) else repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


def _plain(v) -> bool:
    try:
        json.dumps(v, allow_nan=False)
        return True
    except (TypeError, ValueError):
        return False


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


# checks: (predicate, what is allowed)
INT0 = (lambda v: _is_int(v) and v >= 0, "an integer >= 0")
INT1 = (lambda v: _is_int(v) and v >= 1, "an integer >= 1")
INT = (_is_int, "an integer")
NUM = (_is_num, "a finite number")
POS = (lambda v: _is_num(v) and v > 0, "a positive number")
FRACTION = (lambda v: _is_num(v) and 0 <= v <= 1, "a number in [0, 1]")
STR = (lambda v: isinstance(v, str), "a string")
BOOL = (lambda v: isinstance(v, bool), "true or false")
SHAPE = (lambda v: isinstance(v, list) and len(v) > 0 and all(_is_int(x) and x >= 1 for x in v),
         "a non-empty list of positive integers")
RANGE = (lambda v: isinstance(v, list) and len(v) == 2 and all(_is_int(x) for x in v) and v[0] <= v[1],
         "[min, max], two integers")
OBJ = (lambda v: isinstance(v, dict), "an object")
LIST = (lambda v: isinstance(v, list), "a list")
NONEMPTY_LIST = (lambda v: isinstance(v, list) and len(v) > 0, "a non-empty list")


def _or_null(check):
    return (lambda v: v is None or check[0](v), f"null or {check[1]}")


def _need(where: str, obj: dict, key: str, check, at: str = "", optional: bool = False):
    field = f"{at}{key}"
    if key not in obj:
        if optional:
            return None
        raise CheckpointError(f"{where!r}: key {field!r} is missing")
    v = obj[key]
    if not check[0](v):
        raise CheckpointError(f"{where!r}: {field} = {_short(v)} is not allowed; allowed: {check[1]}")
    return v


def _objects(where: str, items: list, path: str):
    """(`path[i].`, item) for each item, which must be a JSON object."""
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise CheckpointError(f"{where!r}: {path}[{i}] = {_short(item)} is not allowed; allowed: an object")
        yield f"{path}[{i}].", item


def check_manifest(m, where: str) -> None:
    if not isinstance(m, dict):
        raise CheckpointError(f"{where!r}: the manifest is {type(m).__name__}, not a JSON object")
    _need(where, m, "format_version", (lambda v: _is_int(v) and v in FORMAT_VERSIONS,
                                        f"{', '.join(map(str, FORMAT_VERSIONS))} (this version's formats)"))
    _need(where, m, "target", (lambda v: v in TARGETS, ", ".join(TARGETS)))
    for key in ("model", "source", "source_sha256"):
        _need(where, m, key, _or_null(STR), optional=True)
    if m["target"] != "loihi2":
        _need(where, m, "timesteps", _or_null(INT1), optional=True)
        return
    T = _need(where, m, "timesteps", INT1)
    _need(where, m, "dt", POS)
    lat = _need(where, m, "latency_steps", INT0)
    _need(where, m, "steps_per_sample", (lambda v: v == T + lat and _is_int(v),
                                         f"timesteps + latency_steps = {T + lat}"))
    _need(where, m, "input_shape", SHAPE)
    ds = _need(where, m, "dataset", _or_null(OBJ), optional=True)
    if ds is not None:
        _need(where, ds, "name", (lambda v: isinstance(v, str) and v != "", "a dataset name"), "dataset.")
        _need(where, ds, "data_dir", _or_null(STR), "dataset.", optional=True)
        data = _need(where, ds, "data", _or_null(OBJ), "dataset.", optional=True) or {}
        for key, check in (("synthetic_shape", SHAPE), ("synthetic_classes", INT1), ("synthetic_size", INT1),
                           ("image_size", INT1), ("seed", INT)):
            _need(where, data, key, check, "dataset.data.", optional=True)
    layers = _need(where, m, "layers", NONEMPTY_LIST)
    names = []
    for at, layer in _objects(where, layers, "layers"):
        names.append(_need(where, layer, "name", STR, at))
        _need(where, layer, "kind", STR, at)
        _need(where, layer, "shape", SHAPE, at)
        _need(where, layer, "depth", INT0, at)
        _need(where, layer, "scale", POS, at)
        n = _need(where, layer, "neuron_loihi", OBJ, at)
        _need(where, n, "vDecay", INT, at + "neuron_loihi.")
        _need(where, n, "vThMant", INT, at + "neuron_loihi.")
        _need(where, n, "bias_mant_range", RANGE, at + "neuron_loihi.")
        c = _need(where, layer, "clipped_fraction", OBJ, at)
        _need(where, c, "weights", FRACTION, at + "clipped_fraction.")
        _need(where, c, "bias", FRACTION, at + "clipped_fraction.")
    r = _need(where, m, "resources", OBJ)
    res_names = []
    for at, layer in _objects(where, _need(where, r, "layers", LIST, "resources."), "resources.layers"):
        res_names.append(_need(where, layer, "name", STR, at))
        _need(where, layer, "cores", INT0, at)
        _need(where, layer, "synapses", INT0, at)
    missing = [n for n in names if n not in res_names]
    if missing:
        raise CheckpointError(f"{where!r}: resources.layers has no entry for layer {missing[0]!r}; allowed: one per layer")
    for key in ("cores", "neurons", "synapses"):
        _need(where, r, key, INT0, "resources.")
    _need(where, r, "fits", BOOL, "resources.")
    limits = _need(where, r, "limits", OBJ, "resources.")
    _need(where, limits, "cores_per_chip", OBJ, "resources.limits.")
    for k, v in limits.items():
        at = f"resources.limits.{k}"
        if not isinstance(v, dict):
            raise CheckpointError(f"{where!r}: {at} = {_short(v)} is not allowed; allowed: an object")
        _need(where, v, "value", NUM, at + ".")
        _need(where, v, "estimate", BOOL, at + ".")
    _need(where, m, "calibration_samples", INT1)
    _need(where, m, "accuracy_float", FRACTION)
    _need(where, m, "accuracy_quantized", FRACTION)
    _need(where, m, "files", (lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in v.values()),
                              "an object of file names"))
    netx = _need(where, m, "netx", _or_null(OBJ), optional=True)
    if netx is not None:
        _need(where, netx, "reason", STR, "netx.")


def check_manifest_graph(m: dict, graph, bundle: Path) -> None:
    """The manifest and deploy.h5 of one bundle describe the same network (one export wrote both)."""
    where = str(bundle)
    pairs = [("input_shape", list(m["input_shape"]), list(graph.input_shape)),
             ("timesteps", m["timesteps"], graph.timesteps),
             ("latency_steps", m["latency_steps"], graph.latency_steps)]
    pairs.append(("layers (names)", [x["name"] for x in m["layers"]], [p.name for p in graph.populations]))
    pairs.append(("layers (shapes)", [x["shape"] for x in m["layers"]], [list(p.shape) for p in graph.populations]))
    pairs.append(("layers (depths)", [x["depth"] for x in m["layers"]], [p.depth for p in graph.populations]))
    for key, a, b in pairs:
        if a != b:
            raise CheckpointError(f"bundle {where!r}: manifest.json {key} {_short(a)} disagrees with deploy.h5's "
                                  f"{_short(b)}; the files come from different exports (re-export the bundle)")


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render(bundle: Path) -> str:
    m = read_manifest(bundle)
    check_bundle_files(bundle)
    head = [f"bundle {bundle}  target {m['target']}  model {m.get('model', '?')}  T={m.get('timesteps')}  dt={m.get('dt', '-')}",
            (f"source {m.get('source')} (sha256 {m['source_sha256'][:12]}...)" if m.get("source_sha256")
             else f"source {m.get('source') or '(a model exported from Python, no checkpoint file)'}")]
    if m["target"] != "loihi2":
        return "\n".join(head + [json.dumps({k: v for k, v in m.items() if k not in ("source", "source_sha256")}, indent=2)])
    res = {layer["name"]: layer for layer in m["resources"]["layers"]}
    rows = [["layer", "kind", "shape", "depth", "scale", "vDecay", "vThMant", "bias range", "clip w", "clip b", "cores", "synapses"]]
    for layer in m["layers"]:
        n, r = layer["neuron_loihi"], res[layer["name"]]
        rows.append([layer["name"], layer["kind"], "x".join(map(str, layer["shape"])), str(layer["depth"]),
                     f"{layer['scale']:g}", str(n["vDecay"]), str(n["vThMant"]),
                     "host input" if layer["depth"] == 0 else f"{n['bias_mant_range'][0]}..{n['bias_mant_range'][1]}",
                     f"{layer['clipped_fraction']['weights']:.2%}", f"{layer['clipped_fraction']['bias']:.2%}",
                     str(r["cores"]), str(r["synapses"])])
    rr = m["resources"]
    est = [k for k, v in rr["limits"].items() if v["estimate"]]
    tail = [
        f"latency {m['latency_steps']} steps; {m['steps_per_sample']} steps per sample on chip",
        _resources_line(rr, est),
        f"accuracy on {m['calibration_samples']} calibration samples: float {m['accuracy_float']:.4f}, "
        f"quantized (Loihi fixed point) {m['accuracy_quantized']:.4f}",
        "files: " + ", ".join(sorted(m["files"].values())) + ("" if m.get("netx") is None else f"  (no network.net: {m['netx']['reason']})"),
    ]
    return "\n".join(head + ["", _table(rows), ""] + tail + _qat_lines(m.get("qat")))


def _qat_lines(q: dict | None) -> list[str]:
    """A `train --deploy` checkpoint's per-layer weight quantization, at the start of QAT
    (post-training quantization of its initial weights) and at the end."""
    if not q or not q.get("after"):
        return []
    before = {r["name"]: r for r in q.get("before") or []}
    rows = [["layer", "weights", "scale before", "clip before", "error before", "scale after", "clip after", "error after"]]
    for a in q["after"]:
        b = before.get(a["name"])
        rows.append([a["name"], str(a["weights"]),
                     *((f"{b['scale']:g}", f"{b['clipped']:.2%}", f"{b['error']:.2%}") if b else ("-", "-", "-")),
                     f"{a['scale']:g}", f"{a['clipped']:.2%}", f"{a['error']:.2%}"])
    return ["", f"quantization-aware training ({q['weight_bits']}-bit weights, the scales it trained with): weights "
                "clipped to the grid and the error ||Q/s - W|| / ||W||, before (its initial weights) and after", "",
            _table(rows)]


def _resources_line(rr: dict, est: list[str]) -> str:
    """Usage against the chips the export planned (`--chips`), not against one chip."""
    chips = int(rr.get("chips", 1))
    cores = rr["limits"]["cores_per_chip"]["value"] * chips
    plan = "one chip" if chips == 1 else f"{chips} chips"
    return (f"resources: {rr['cores']} of {cores:.0f} cores ({plan}), {rr['neurons']} neurons, {rr['synapses']} synapses; "
            f"fits {plan}: {'yes' if rr['fits'] else 'NO'} (estimated limits: {', '.join(est)})")
