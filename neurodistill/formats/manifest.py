"""`manifest.json` of an export bundle: one dataclass, its writer and its checked reader.

The file is versioned as NIR versions its files: `format_version` is the schema this code writes
(`SCHEMA_VERSION`); a reader accepts the versions in `READABLE_VERSIONS` and refuses any other
with one line. The header (version, tool version, target, source) is the same for every target;
the rest (`entries`) is the target's own: for loihi2 the keys `inspect` and `simulate` read are
type-checked (`check_manifest`), so a damaged or hand-edited file is one line naming the key.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..errors import CheckpointError
from ..io.files import inside, read_json
from ..io.hdf5 import open_hdf5
from ..io.output import atomic_write

MANIFEST_FILE = "manifest.json"
SCHEMA_VERSION = 1  # what this version writes
READABLE_VERSIONS = (1,)  # what this version reads
TARGETS = ("loihi2", "nir", "onnx")
HEADER = ("format_version", "neurodistill_version", "target", "source", "source_sha256")


@dataclass
class Manifest(Mapping):
    """A bundle's manifest; reads like the JSON object it is (`m["timesteps"]`, `m.get("dataset")`)."""

    target: str
    source: str | None
    source_sha256: str | None
    entries: dict[str, Any] = field(default_factory=dict)
    format_version: int = SCHEMA_VERSION
    neurodistill_version: str = __version__

    def to_dict(self) -> dict[str, Any]:
        """The JSON object, header first; paths become file names, numpy scalars numbers."""
        head = {k: getattr(self, k) for k in HEADER}
        return _json_ready({**head, **{k: v for k, v in self.entries.items() if k not in head}})

    def write(self, directory: Path) -> dict[str, Any]:
        """`directory/manifest.json`, all or nothing; returns what was written."""
        data = self.to_dict()
        text = json.dumps(data, indent=2) + "\n"
        atomic_write(Path(directory) / MANIFEST_FILE, lambda tmp: Path(tmp).write_text(text))
        return data

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Manifest:
        check_manifest(data, where)
        return cls(target=data["target"], source=data.get("source"), source_sha256=data.get("source_sha256"),
                   entries={k: v for k, v in data.items() if k not in HEADER}, format_version=data["format_version"],
                   neurodistill_version=data.get("neurodistill_version", "unknown"))

    def __getitem__(self, key: str) -> Any:
        if key in HEADER:
            return getattr(self, key)
        return self.entries[key]

    def __iter__(self) -> Iterator[str]:
        yield from HEADER
        yield from (k for k in self.entries if k not in HEADER)

    def __len__(self) -> int:
        return len(HEADER) + sum(k not in HEADER for k in self.entries)


def read_manifest(bundle: Path) -> Manifest:
    """A bundle's manifest.json, checked: an object whose keys (those that `inspect` and
    `simulate` read) are present and of their types; else a `CheckpointError` naming the key."""
    path = inside(Path(bundle), MANIFEST_FILE, "bundle file")
    if not path.is_file():
        raise CheckpointError(f"{str(bundle)!r} is not an export bundle (no manifest.json)")
    return Manifest.from_dict(read_json(path), str(path))


def _json_ready(obj):
    """Paths and numpy scalars to JSON-ready values."""
    if isinstance(obj, dict):
        return {k: _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_ready(v) for v in obj]
    if isinstance(obj, Path):
        return obj.name
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


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
    _need(where, m, "format_version", (lambda v: _is_int(v) and v in READABLE_VERSIONS,
                                        f"{', '.join(map(str, READABLE_VERSIONS))} (this version's formats)"))
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
    # optional: bundles written before spike readouts existed read as "voltage"
    _need(where, m, "readout", (lambda v: v in ("voltage", "spikes"), "voltage, spikes"), optional=True)
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
    for key in ("netx", "nir"):  # a file the export left out, and why
        left_out = _need(where, m, key, _or_null(OBJ), optional=True)
        if left_out is not None:
            _need(where, left_out, "reason", STR, f"{key}.")
    # export's 24-bit range checks; optional, so bundles written before them still read as schema 1
    rs = _need(where, m, "range_safety", _or_null(OBJ), optional=True)
    if rs is not None:
        _need(where, rs, "warnings", LIST, "range_safety.")
        for at, layer in _objects(where, _need(where, rs, "layers", LIST, "range_safety."), "range_safety.layers"):
            _need(where, layer, "name", STR, at)
            _need(where, layer, "bound", _or_null(NUM), at)  # null: unbounded (a current that never decays)
            _need(where, layer, "limit", INT1, at)
            _need(where, layer, "guaranteed", BOOL, at)


def check_manifest_graph(m: dict, graph, bundle: Path) -> None:
    """The manifest and deploy.h5 of one bundle describe the same network (one export wrote both)."""
    where = str(bundle)
    pairs = [("input_shape", list(m["input_shape"]), list(graph.input_shape)),
             ("timesteps", m["timesteps"], graph.timesteps),
             ("latency_steps", m["latency_steps"], graph.latency_steps),
             ("readout", m.get("readout", "voltage"), graph.readout_kind)]
    pairs.append(("layers (names)", [x["name"] for x in m["layers"]], [p.name for p in graph.populations]))
    pairs.append(("layers (shapes)", [x["shape"] for x in m["layers"]], [list(p.shape) for p in graph.populations]))
    pairs.append(("layers (depths)", [x["depth"] for x in m["layers"]], [p.depth for p in graph.populations]))
    for key, a, b in pairs:
        if a != b:
            raise CheckpointError(f"bundle {where!r}: manifest.json {key} {_short(a)} disagrees with deploy.h5's "
                                  f"{_short(b)}; the files come from different exports (re-export the bundle)")


