"""Float NIR import: a NIR graph (ours or another tool's) back into a runnable torch module.

The inverse of `nir_float.to_nir_graph` under the conventions written in its module docstring
and in every graph's metadata (dt, LIF mapping, forward Euler, spikingjelly's `>=` threshold).
Nodes map onto spikingjelly layers and neurons; a residual sum is several edges into one node.
nirtorch 2.6's default Affine import drops the bias, so the node map is written here.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path

import h5py
import nir
import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError, UnsupportedLayerError
from ..io.hdf5 import open_hdf5
from .nir_float import as_pair, spikingjelly_parts


def _uniform(values: np.ndarray, what: str) -> float:
    u = np.unique(np.asarray(values))
    if u.size != 1:
        raise UnsupportedLayerError(f"{what} differs between neurons ({u.size} values); spikingjelly needs one value per layer")
    return float(u[0])


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


class _Scale(nn.Module):
    """nir.Scale: y = x * s elementwise (an identity shortcut of a residual block, s = 1)."""

    def __init__(self, scale: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("scale", torch.from_numpy(scale).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class _NodeMap:
    """NIR node -> multi-step spikingjelly module (the inverse of `_Mapper`, for a given dt)."""

    def __init__(self, dt: float) -> None:
        self.dt = dt

    def node_map(self) -> dict[type, Callable[[nir.NIRNode], nn.Module]]:
        return {
            nir.Conv2d: self.conv, nir.Affine: self.affine, nir.Linear: self.linear, nir.Flatten: self.flatten,
            nir.AvgPool2d: self.avgpool, nir.LIF: self.lif, nir.IF: self.if_, nir.Scale: self.scale,
        }

    def scale(self, n: nir.Scale) -> nn.Module:
        return _Scale(np.array(n.scale))

    def conv(self, n: nir.Conv2d) -> nn.Module:
        _, _, layer, _ = spikingjelly_parts()
        if isinstance(n.padding, str):
            raise UnsupportedLayerError(f"Conv2d padding {n.padding!r} is not imported; give numbers")
        c_out, c_in_g, kh, kw = n.weight.shape
        m = layer.Conv2d(
            c_in_g * _one(n.groups), c_out, (kh, kw), stride=as_pair(n.stride), padding=as_pair(n.padding),
            dilation=as_pair(n.dilation), groups=_one(n.groups), bias=True, step_mode="m",
        )
        m.weight.data = torch.from_numpy(np.array(n.weight, dtype=np.float32))
        m.bias.data = torch.from_numpy(np.array(n.bias, dtype=np.float32))
        return m

    def affine(self, n: nir.Affine) -> nn.Module:
        _, _, layer, _ = spikingjelly_parts()
        m = layer.Linear(n.weight.shape[-1], n.weight.shape[-2], bias=True, step_mode="m")
        m.weight.data = torch.from_numpy(np.array(n.weight, dtype=np.float32))
        m.bias.data = torch.from_numpy(np.array(n.bias, dtype=np.float32))  # nirtorch's default Affine map drops it
        return m

    def linear(self, n: nir.Linear) -> nn.Module:
        _, _, layer, _ = spikingjelly_parts()
        m = layer.Linear(n.weight.shape[-1], n.weight.shape[-2], bias=False, step_mode="m")
        m.weight.data = torch.from_numpy(np.array(n.weight, dtype=np.float32))
        return m

    def flatten(self, n: nir.Flatten) -> nn.Module:
        _, _, layer, _ = spikingjelly_parts()
        shift = lambda d: int(d) + 1 if int(d) >= 0 else int(d)  # noqa: E731  back to counting the batch axis
        return layer.Flatten(shift(n.start_dim), shift(n.end_dim), step_mode="m")

    def avgpool(self, n: nir.AvgPool2d) -> nn.Module:
        _, _, layer, _ = spikingjelly_parts()
        return layer.AvgPool2d(as_pair(n.kernel_size), as_pair(n.stride), as_pair(n.padding), step_mode="m")

    def lif(self, n: nir.LIF) -> nn.Module:
        _, _, _, neuron = spikingjelly_parts()
        tau = _uniform(n.tau, "LIF tau") / self.dt
        r = _uniform(n.r, "LIF r")
        v_reset, v_leak = _uniform(n.v_reset, "LIF v_reset"), _uniform(n.v_leak, "LIF v_leak")
        if not tau > 1.0 or not (_close(r, 1.0) or _close(r, tau)) or not _close(v_leak, v_reset):
            raise UnsupportedLayerError(
                f"nir.LIF(tau/dt={tau}, r={r}, v_leak={v_leak}, v_reset={v_reset}) is not a spikingjelly LIFNode "
                "(needs tau/dt > 1, r = 1 or tau/dt, v_leak = v_reset); check dt"
            )
        return neuron.LIFNode(
            tau=tau, decay_input=_close(r, 1.0), v_threshold=_uniform(n.v_threshold, "LIF v_threshold"),
            v_reset=v_reset, step_mode="m",
        )

    def if_(self, n: nir.IF) -> nn.Module:
        _, _, _, neuron = spikingjelly_parts()
        r = _uniform(n.r, "IF r")
        if not _close(r * self.dt, 1.0):
            raise UnsupportedLayerError(f"nir.IF r = {r} with dt = {self.dt}: spikingjelly's IFNode needs r = 1/dt")
        return neuron.IFNode(
            v_threshold=_uniform(n.v_threshold, "IF v_threshold"), v_reset=_uniform(n.v_reset, "IF v_reset"), step_mode="m"
        )


class NIRSpikingModule(nn.Module):
    """A float NIR graph as a multi-step spikingjelly network.

    Shape:
        Input `(T, B, *input_shape)`, output `(T, B, K)`: the graph's output per step.
    Each call is one whole sequence: every neuron starts from rest, as in the trained model.
    """

    def __init__(self, graph_module: torch.fx.GraphModule, dt: float) -> None:
        super().__init__()
        self.graph_module = graph_module
        self.dt = dt

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, functional, _, _ = spikingjelly_parts()
        functional.reset_net(self.graph_module)
        out, _state = self.graph_module(x)
        return out


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


def _one(v) -> int:
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
    if groups is not None and outputs % _one(groups):
        raise CheckpointError(f"{where!r}: NIR node {name!r} ({kind}): groups = {_one(groups)} does not divide its "
                              f"{outputs} output channels")


def from_nir_to_torch(graph: nir.NIRGraph | str | Path, dt: float | None = None) -> NIRSpikingModule:
    """Import a float NIR graph back into torch (nirtorch's `nir_to_torch` with a spikingjelly node map).

    `dt` None takes the graph's `metadata["dt"]` (1.0 if absent). The nodes of the graph are the
    modules of `result.graph_module`, under their NIR names with dots as underscores.
    """
    import nirtorch

    if isinstance(graph, str | Path):
        graph = read_nir_file(graph)
    if dt is None:
        dt = float(graph.metadata.get("dt", 1.0)) if isinstance(graph.metadata, dict) else 1.0
    gm = nirtorch.nir_to_torch(graph, _NodeMap(dt).node_map())
    return NIRSpikingModule(gm, dt).eval()
