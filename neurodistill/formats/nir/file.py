"""NIR files: `write_nir` and `read_nir_file` side by side (nir's own serialization, checked)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import h5py
import nir
import numpy as np

from ...errors import CheckpointError
from ...io.hdf5 import open_hdf5
from ...io.output import atomic_write

NIR_FILE = "network.nir"


def write_nir(graph: nir.NIRGraph, path: str | Path) -> Path:
    """Write `graph` with `nir.write`, atomically (a reader never sees a partial file)."""
    path = Path(path)
    atomic_write(path, lambda tmp: nir.write(tmp, graph))
    return path


def read_nir_file(path: str | Path) -> nir.NIRGraph:
    """A NIR graph read as `nir.read` does, from a file checked first (`open_hdf5`: nothing outside it
    is opened); a missing, damaged or non-NIR file is a `CheckpointError` (one line)."""
    from nir.serialization import hdf2dict

    where = str(path)
    with open_hdf5(path, "NIR file") as f:
        try:
            if not isinstance(f.get("node"), h5py.Group):
                raise CheckpointError(f"{where!r} is not a NIR graph (no /node group)")
            data = hdf2dict(f["node"])
        except (OSError, RuntimeError, KeyError, ValueError, TypeError) as e:  # damaged data
            raise CheckpointError(f"{where!r} cannot be read as a NIR graph ({type(e).__name__}: "
                                  f"{' '.join(str(e).split())[:200]})") from None
    if "type_check" in data:
        raise CheckpointError(f"{where!r}: its /node group holds a 'type_check' entry, which NIR files do not have")
    try:
        graph = nir.dict2NIRNode({**data, "type_check": True})
    except (KeyError, ValueError, TypeError, AttributeError, IndexError, AssertionError, OverflowError) as e:
        # nir builds nodes from whatever the file holds; its checks are asserts and constructor errors
        reason = " ".join(str(e).split())[:200] or "a check in nir failed"
        raise CheckpointError(f"{where!r} cannot be read as a NIR graph ({type(e).__name__}: {reason})") from None
    if not isinstance(graph, nir.NIRGraph):
        raise CheckpointError(f"{where!r} holds a single NIR {type(graph).__name__} node, not a NIR graph")
    check_fields(graph, where)
    return graph


def one_int(v) -> int:
    """One integer from a NIR field that may be stored as a scalar or a one-element array."""
    return int(np.asarray(v).reshape(-1)[0])


# Per node type: fields that are counts (integers >= the bound, one per spatial axis) and the
# number of dimensions of each weight. Anything else numeric must be finite numbers.
_COUNTS = {"stride": 1, "dilation": 1, "kernel_size": 1, "padding": 0, "groups": 1, "start_dim": None, "end_dim": None}
_NDIM = {("Conv2d", "weight"): 4, ("Conv1d", "weight"): 3, ("Affine", "weight"): 2, ("Linear", "weight"): 2,
         ("Affine", "bias"): 1, ("Conv2d", "bias"): 1, ("Conv1d", "bias"): 1}
MAX_NODES = 100_000


def check_fields(graph: nir.NIRGraph, where: str, depth: int = 0) -> None:
    """Every node's parameters of a type and range its importers can use: numbers, finite, weights
    of their rank, strides and kernel sizes >= 1, paddings >= 0, one integer of groups. A foreign
    file gets one line naming the node and field instead of an error deep inside an importer."""
    if len(graph.nodes) > MAX_NODES or depth > 8:
        raise CheckpointError(f"{where!r}: the NIR graph has more than {MAX_NODES:,} nodes or 8 levels of nesting")
    for name, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            check_fields(node, where, depth + 1)
            continue
        kind = type(node).__name__
        for f in dataclasses.fields(node):
            if f.name in ("input_type", "output_type", "metadata"):
                continue
            value = getattr(node, f.name)
            if value is None or (f.name == "padding" and isinstance(value, str)):
                continue
            field = f"NIR node {name!r} ({kind}): {f.name}"
            try:
                a = np.asarray(value)
            except (ValueError, TypeError):
                raise CheckpointError(f"{where!r}: {field} is not an array of numbers") from None
            if a.dtype.kind not in "biuf":
                raise CheckpointError(f"{where!r}: {field} holds {a.dtype} values; allowed: numbers")
            if not np.isfinite(a).all():
                raise CheckpointError(f"{where!r}: {field} holds NaN or infinite values; allowed: finite numbers")
            if f.name in _COUNTS:
                lo = _COUNTS[f.name]
                bad = (a != np.round(a)).any() or (lo is not None and (a < lo).any()) or a.size > 3
                if f.name == "groups":
                    bad = bad or a.size != 1
                if bad:
                    allowed = f"integers >= {lo}" if lo is not None else "integers"
                    raise CheckpointError(f"{where!r}: {field} = {a.tolist()} is not allowed; allowed: "
                                          f"{'one integer >= 1' if f.name == 'groups' else allowed}")
            want = _NDIM.get((kind, f.name))
            if want is not None and a.ndim != want:
                raise CheckpointError(f"{where!r}: {field} has {a.ndim} dimensions {list(a.shape)}; a {kind} "
                                      f"{f.name} has {want}")
        _check_sizes(name, node, kind, where)


def _check_sizes(name: str, node, kind: str, where: str) -> None:
    """A bias of one value per output, and groups that divide the output channels."""
    weight, bias = getattr(node, "weight", None), getattr(node, "bias", None)
    if weight is None or np.ndim(weight) < 1:
        return
    outputs = np.shape(weight)[0]
    if bias is not None and np.ndim(bias) == 1 and np.shape(bias)[0] != outputs:
        raise CheckpointError(f"{where!r}: NIR node {name!r} ({kind}): bias has {np.shape(bias)[0]} values for "
                              f"{outputs} outputs")
    groups = getattr(node, "groups", None)
    if groups is not None and outputs % one_int(groups):
        raise CheckpointError(f"{where!r}: NIR node {name!r} ({kind}): groups = {one_int(groups)} does not divide its "
                              f"{outputs} output channels")
