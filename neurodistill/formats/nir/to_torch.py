"""Float NIR import: a NIR graph (ours or another tool's) back into a runnable torch module.

The inverse of `from_torch.to_nir_graph` under the conventions written in `conventions`
and in every graph's metadata (dt, LIF mapping, forward Euler, spikingjelly's `>=` threshold).
Nodes map onto spikingjelly layers and neurons; a residual sum is several edges into one node.
nirtorch 2.6's default Affine import drops the bias, so the node map is written here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import nir
import numpy as np
import torch
from torch import nn

from ...core.graph import as_pair
from ...errors import UnsupportedLayerError
from .cuba import cuba_module
from .exportable import spikingjelly_parts
from .file import one_int, read_nir_file


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


class SumPool2d(nn.LPPool2d):
    """nir.SumPool2d as sinabs computes it (its SumPool2d is torch's LPPool2d with p = 1), on `(T, B, C, H, W)`
    or, once `capture` sets single steps, `(B, C, H, W)`: an LPPool2d, so `capture` folds it as a sum pool."""

    def __init__(self, kernel_size: tuple[int, int], stride: tuple[int, int]) -> None:
        super().__init__(1, kernel_size, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 5:
            y = super().forward(x.flatten(0, 1))
            return y.reshape(*x.shape[:2], *y.shape[1:])
        return super().forward(x)


class _NodeMap:
    """NIR node -> multi-step spikingjelly module (the inverse of `_Mapper`, for a given dt)."""

    def __init__(self, dt: float) -> None:
        self.dt = dt

    def node_map(self) -> dict[type, Callable[[nir.NIRNode], nn.Module]]:
        return {
            nir.Conv2d: self.conv, nir.Affine: self.affine, nir.Linear: self.linear, nir.Flatten: self.flatten,
            nir.AvgPool2d: self.avgpool, nir.LIF: self.lif, nir.IF: self.if_, nir.Scale: self.scale,
            nir.CubaLIF: lambda n: cuba_module(n, self.dt),
            nir.SumPool2d: lambda n: SumPool2d(as_pair(n.kernel_size), as_pair(n.stride)),
        }

    def scale(self, n: nir.Scale) -> nn.Module:
        return _Scale(np.array(n.scale))

    def conv(self, n: nir.Conv2d) -> nn.Module:
        _, _, layer, _ = spikingjelly_parts()
        if isinstance(n.padding, str):
            raise UnsupportedLayerError(f"Conv2d padding {n.padding!r} is not imported; give numbers")
        c_out, c_in_g, kh, kw = n.weight.shape
        m = layer.Conv2d(
            c_in_g * one_int(n.groups), c_out, (kh, kw), stride=as_pair(n.stride), padding=as_pair(n.padding),
            dilation=as_pair(n.dilation), groups=one_int(n.groups), bias=True, step_mode="m",
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
