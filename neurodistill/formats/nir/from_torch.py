"""Float NIR export: a trained spiking model as a `nir.NIRGraph` (the way back: `to_torch`).

The graph is the float network exactly as trained, with BatchNorm folded into the synapse
layer before it (NIR has no BatchNorm node). Everything a reader needs to re-run it is in
`graph.metadata`, because NIR itself carries no time step (docs/loihi2.md#nir-conventions).

The conventions (time, integration, the LIF/IF mapping, threshold, reset, shapes, readout,
residual sums) are those of `conventions`, whose docstring states them; every graph's metadata
repeats them for the file's reader.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable
from typing import Any

import nir
import numpy as np
import torch
from torch import nn

from ...core.graph import as_pair
from ...errors import ConfigError, ModelError, UnsupportedLayerError
from .conventions import (
    BN_RULE,
    HARD_RESET,
    READOUT_LOGITS,
    READOUT_SPIKES,
    graph_metadata,
    neuron_node,
)
from .exportable import check_exportable, fold_and_strip, module_types, trace, units

log = logging.getLogger(__name__)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


class _Mapper:
    """torch module -> NIR node, given each module's per-sample input shape (without T and B)."""

    def __init__(self, shapes: dict[int, tuple[int, ...]], dt: float) -> None:
        self.shapes, self.dt = shapes, dt
        self.approximated: list[nn.Module] = []

    def module_map(self) -> dict[type, Callable[[nn.Module], nir.NIRNode]]:
        fns = {
            "conv": self.conv, "linear": self.linear, "flatten": self.flatten, "avgpool": self.avgpool,
            "adaptive": self.adaptive, "lif": self.lif, "if": self.if_,
            "cuba": self.cuba,
        }
        return {t: fns[role] for role, ts in module_types().items() if role in fns for t in ts}

    def shape(self, m: nn.Module) -> tuple[int, ...]:
        return self.shapes[id(m)]

    def conv(self, m: nn.Conv2d) -> nir.Conv2d:
        bias = _np(m.bias) if m.bias is not None else np.zeros(m.out_channels, dtype=_np(m.weight).dtype)
        return nir.Conv2d(
            input_shape=tuple(self.shape(m)[-2:]), weight=_np(m.weight), stride=as_pair(m.stride),
            padding=as_pair(m.padding), dilation=as_pair(m.dilation), groups=int(m.groups), bias=bias,
        )

    def linear(self, m: nn.Linear) -> nir.NIRNode:
        if m.bias is None:
            return nir.Linear(weight=_np(m.weight))
        return nir.Affine(weight=_np(m.weight), bias=_np(m.bias))

    def flatten(self, m: nn.Flatten) -> nir.Flatten:
        # A multi-step Flatten sees [T*B, ...] (time folded into batch); NIR counts dims
        # without the batch axis.
        shape = self.shape(m)
        ndim = len(shape) + 1
        start, end = m.start_dim % ndim, m.end_dim % ndim
        if start == 0:
            raise UnsupportedLayerError(f"Flatten({m.start_dim}, {m.end_dim}) flattens the batch axis; NIR cannot express it")
        return nir.Flatten(
            input_type={"input": np.array(shape)}, start_dim=start - 1, end_dim=-1 if end == ndim - 1 else end - 1
        )

    def avgpool(self, m: nn.AvgPool2d) -> nir.AvgPool2d:
        stride = m.stride if m.stride is not None else m.kernel_size
        return nir.AvgPool2d(
            kernel_size=np.array(as_pair(m.kernel_size)), stride=np.array(as_pair(stride)), padding=np.array(as_pair(m.padding))
        )

    def adaptive(self, m: nn.AdaptiveAvgPool2d) -> nir.AvgPool2d:
        # An adaptive pool is a plain average pool when the output size divides the input size.
        h, w = self.shape(m)[-2:]
        oh, ow = (h if s is None else s for s in _pair_or_none(m.output_size))
        if h % oh or w % ow:
            raise UnsupportedLayerError(
                f"AdaptiveAvgPool2d to {(oh, ow)} on a {h}x{w} input is not a plain average pool; NIR cannot express it"
            )
        k = np.array((h // oh, w // ow))
        return nir.AvgPool2d(kernel_size=k, stride=k.copy(), padding=np.array((0, 0)))

    def _reset(self, m: nn.Module) -> float:
        if m.v_reset is None:  # refused earlier unless the caller accepted the approximation
            self.approximated.append(m)
            return 0.0
        return float(m.v_reset)

    def lif(self, m: nn.Module) -> nir.LIF:
        return neuron_node("lif", self.shape(m), tau=float(m.tau), v_threshold=float(m.v_threshold),
                           v_reset=self._reset(m), decay_input=bool(m.decay_input), dt=self.dt)

    def cuba(self, m: nn.Module) -> nir.CubaLIF:
        # spikingjelly's CUBALIFNode: decay factors d as time constants 1/(1 - d) steps
        return neuron_node("cuba", self.shape(m), tau=1.0 / (1.0 - float(m.v_decay)), v_threshold=float(m.v_threshold),
                           v_reset=self._reset(m), decay_input=False, dt=self.dt, tau_syn=1.0 / (1.0 - float(m.c_decay)))

    def if_(self, m: nn.Module) -> nir.IF:
        return neuron_node("if", self.shape(m), tau=None, v_threshold=float(m.v_threshold), v_reset=self._reset(m),
                           decay_input=True, dt=self.dt)


def _pair_or_none(v) -> tuple[int | None, int | None]:
    return (v, v) if isinstance(v, int) or v is None else (v[0], v[1])


def _record_input_shapes(work: nn.Module, input_shape: tuple[int, ...]) -> dict[int, tuple[int, ...]]:
    """Run one zero sample (T = B = 1) and note every unit's input shape without T and B."""
    shapes: dict[int, tuple[int, ...]] = {}

    def hook(m, args):
        shapes[id(m)] = tuple(args[0].shape[2:])

    handles = [m.register_forward_pre_hook(hook) for _, m in units(work)]
    try:
        with torch.no_grad():
            work(torch.zeros(1, 1, *input_shape))
    except RuntimeError as e:
        raise ModelError(
            f"the model does not accept inputs of shape {tuple(input_shape)} (C, H, W): {str(e).splitlines()[0][:200]}"
        ) from None
    finally:
        for h in handles:
            h.remove()
    return shapes


# ----------------------------------------------------------------------------- public API


def to_nir_graph(
    model: nn.Module,
    input_shape: tuple[int, ...],
    timesteps: int,
    dt: float = 1.0,
    accept_reset_approximation: bool = False,
) -> nir.NIRGraph:
    """The float NIR graph of a multi-step spikingjelly model.

    Args:
        model: runs `[T, B, *input_shape] -> [T, B, K]`; it is not modified (a copy is folded).
        input_shape: one sample's shape without time and batch, e.g. `(1, 8, 8)`.
        timesteps: T the model is meant to run for (recorded; NIR has no notion of it).
        dt: seconds per step, or 1.0 for "one step" (see the module docstring).
        accept_reset_approximation: export soft-reset neurons as hard reset to 0 instead of refusing.

    Raises:
        UnsupportedLayerError: listing every module or operation NIR cannot express.
    """
    if not (isinstance(dt, int | float) and math.isfinite(dt) and dt > 0):
        raise ConfigError(f"dt = {dt!r} is not allowed; it must be a finite number > 0 (1.0 means one step)")
    if int(timesteps) < 1:
        raise ConfigError(f"timesteps = {timesteps!r} is not allowed; it must be >= 1")
    import nirtorch

    check_exportable(model, accept_reset_approximation)
    work = copy.deepcopy(model).cpu().float().eval()
    fold_and_strip(work)
    shapes = _record_input_shapes(work, tuple(input_shape))
    mapper = _Mapper(shapes, float(dt))
    # default_dict=None: nirtorch's defaults would override our map for nn.Linear.
    graph = nirtorch.torch_to_nir(work, mapper.module_map(), default_dict=None, type_check=True)
    graph.metadata = _metadata(model, work, graph, mapper, tuple(input_shape), int(timesteps), float(dt))
    return graph


def _readout(graph: nir.NIRGraph) -> str:
    outputs = set(graph.outputs)
    last = {type(graph.nodes[a]).__name__ for a, b in graph.edges if b in outputs}
    if last == {"Affine"} or last == {"Linear"}:
        return READOUT_LOGITS
    if last <= {"LIF", "IF", "CubaLIF"}:
        return READOUT_SPIKES
    return f"{'/'.join(sorted(last))} per step"


def _metadata(model, work, graph, mapper: _Mapper, input_shape, timesteps: int, dt: float) -> dict[str, Any]:
    # Module path of every NIR node, so that a reader can match nodes to the trained model.
    names = {node.name: node.target for node in trace(work).graph.nodes if node.op == "call_module"}
    module_path = {id(work.get_submodule(t)): t for t in names.values()}
    approximated = sorted(module_path[id(m)] for m in mapper.approximated)
    meta = graph_metadata(
        dt, timesteps, format="neurodistill float NIR", model=str(getattr(model, "model_name", type(model).__name__)),
        input_shape=np.array(input_shape, dtype=np.int64), input_layout="[T, B, *input_shape]; NIR shapes exclude T and B",
        reset=HARD_RESET, batchnorm=BN_RULE, readout=_readout(graph),
        source_modules={n: t for n, t in names.items() if n in graph.nodes})
    if approximated:
        meta["reset"] = "soft reset approximated as hard reset to 0 in reset_approximated; others hard"
        meta["reset_approximated"] = ", ".join(approximated)
        log.warning("soft reset exported as hard reset to 0 in %s (accept_reset_approximation)", ", ".join(approximated))
    return meta


