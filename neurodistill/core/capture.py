"""Capture a spiking model into the deployment graph (torch.fx, as nirtorch and spikingjelly do).

The model is traced with its layers as leaves; walking the traced graph, synapse layers
(conv, linear) collect the BatchNorm that follows them (folded), the average pooling and
flatten that precede them (folded into the weights), and residual adds (several synapse
layers into one population). A SEW-style sum of spikes feeding a layer becomes one copy of
that layer's synapses per summand. Every violation is collected and reported at once.
"""

from __future__ import annotations

import contextlib
import copy
import io
import operator

import numpy as np
import torch
from torch import fx, nn

from ..errors import UnsupportedLayerError
from .graph import INPUT, DeployGraph, Neuron, Population, Synapse
from .synapse_terms import (
    UNKNOWN,
    Current,
    Spikes,
    Term,
    Unknown,
    fold_batchnorm,
    identity_terms,
    is_sum_pool,
    neuron_of,
    synapse_current,
)

SUPPORTED = (
    "Conv2d, Linear, BatchNorm1d/2d (folded), AvgPool2d, AdaptiveAvgPool2d and sum pools (LPPool2d with p=1, "
    "sinabs SumPool2d) before a synapse layer (folded), "
    "Flatten, Dropout and Identity (dropped), spikingjelly LIFNode, IFNode and CUBALIFNode, residual '+' of synaptic "
    "input or of spikes"
)
_MAPS = (nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.LPPool2d, nn.Flatten)
_PASS = (nn.Dropout, nn.Dropout2d, nn.Identity)
_LEAVES = (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, *_MAPS, *_PASS, nn.MaxPool2d, nn.ReLU)


def _first_line(e: BaseException) -> str:
    """The cause of an error that wraps others (ShapeProp names the node, then the real error)."""
    root = e
    for _ in range(20):
        if root.__cause__ is None and root.__context__ is None:
            break
        root = root.__cause__ or root.__context__
    text = str(root).strip().splitlines()
    return (text[0] if text else type(root).__name__)[:200]


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        from spikingjelly.activation_based.neuron import BaseNode

        # An unknown module without children is a leaf too, so that it is reported, not traced into;
        # an empty Sequential (an identity shortcut) is traced through.
        childless = not any(True for _ in m.children()) and not isinstance(m, nn.Sequential | nn.ModuleList)
        return isinstance(m, (*_LEAVES, BaseNode)) or childless


class Walker:
    def __init__(self, gm: fx.GraphModule, input_shape: tuple[int, ...]) -> None:
        self.gm = gm
        self.modules = dict(gm.named_modules())
        self.input_shape = input_shape
        self.violations: list[str] = []
        self.populations: list[Population] = []
        self.synapses: list[Synapse] = []
        self.biases: dict[str, np.ndarray] = {}

    def fail(self, where: str, what: str) -> None:
        self.violations.append(f"{where}: {what}")

    def shape(self, node: fx.Node) -> tuple[int, ...]:
        return tuple(node.meta["tensor_meta"].shape[1:])  # drop the batch axis of ShapeProp's sample

    def run(self) -> None:
        values: dict[fx.Node, object] = {}
        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                values[node] = Spikes([INPUT], self.input_shape)
            elif node.op == "call_module":
                values[node] = self.module(node, self.modules[node.target], values[node.args[0]])
            elif node.op in ("call_function", "call_method"):
                values[node] = self.function(node, values)
            elif node.op == "output":
                self.readout(node, values[node.args[0]])
            else:  # get_attr: a parameter used outside a module
                self.fail(str(node.target), "direct use of a tensor attribute is not supported")
                values[node] = UNKNOWN

    # -- nodes ---------------------------------------------------------------------------
    def module(self, node: fx.Node, m: nn.Module, x):
        from spikingjelly.activation_based.neuron import CUBALIFNode, IFNode, LIFNode

        neurons = (LIFNode, IFNode, CUBALIFNode)
        path, kind = node.target, type(m).__name__
        if x is UNKNOWN:
            if not isinstance(m, (*_PASS, nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, *_MAPS, *neurons)):
                self.fail(path, f"{kind} is not supported")
            return UNKNOWN
        if isinstance(m, _PASS):
            return x
        if isinstance(m, nn.Conv2d | nn.Linear):
            return self.synapse(node, m, x)
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            if not isinstance(x, Current):
                self.fail(path, f"{kind} must follow a Conv2d or Linear (it is folded into it)")
                return UNKNOWN
            return self.batchnorm(m, x, self.shape(node))
        if isinstance(m, _MAPS):
            if isinstance(m, nn.LPPool2d) and not is_sum_pool(m):
                self.fail(path, f"{kind} with p = {m.norm_type:g} or ceil_mode is not a linear map; allowed: p = 1 (a sum pool)")
                return UNKNOWN
            if not isinstance(x, Spikes):
                self.fail(path, f"{kind} between a synapse layer and its neuron is not supported; pool spikes instead")
                return UNKNOWN
            return Spikes(x.sources, x.base_shape, [*x.maps, m])
        if isinstance(m, neurons):
            if not isinstance(x, Current):
                self.fail(path, f"{kind} must be fed by a Conv2d or Linear (through BatchNorm and '+')")
                return UNKNOWN
            return self.population(path, m, x, self.shape(node))
        self.fail(path, f"{kind} is not supported")
        return UNKNOWN

    def function(self, node: fx.Node, values):
        fn = node.target
        args = [values.get(a) if isinstance(a, fx.Node) else a for a in node.args]
        where = node.name
        if any(a is UNKNOWN for a in args):
            return UNKNOWN  # an earlier violation already explains this
        if fn in (operator.add, torch.add, "add", "__add__"):
            a, b = args[0], args[1]
            if isinstance(b, Current) and isinstance(a, Spikes):
                a, b = b, a
            if isinstance(a, Current) and isinstance(b, Current):
                return Current(a.terms + b.terms, a.bias + b.bias)
            if isinstance(a, Current) and isinstance(b, Spikes) and not b.maps:
                # identity shortcut: spikes added to synaptic input = a depthwise 1x1 synapse of weight 1
                return Current(a.terms + self.identity_terms(where, b), a.bias)
            if isinstance(a, Spikes) and isinstance(b, Spikes) and not a.maps and not b.maps and a.base_shape == b.base_shape:
                return Spikes(a.sources + b.sources, a.base_shape)  # SEW: spike sum
            self.fail(where, "'+' must add two synaptic inputs (residual) or two spike tensors of one shape (SEW)")
            return UNKNOWN
        if fn in (torch.flatten, "flatten") and isinstance(args[0], Spikes):
            start = args[1] if len(args) > 1 else node.kwargs.get("start_dim", 0 if fn is torch.flatten else 0)
            return Spikes(args[0].sources, args[0].base_shape, [*args[0].maps, nn.Flatten(max(int(start), 1))])
        self.fail(where, f"operation {getattr(fn, '__name__', fn)!r} is not supported")
        return UNKNOWN

    # -- one layer kind each; subclasses record what they need ---------------------------
    def synapse(self, node: fx.Node, m: nn.Module, x) -> Current | Unknown:
        if not isinstance(x, Spikes):
            self.fail(node.target, f"{type(m).__name__} must read spikes (a neuron's output or the input), not another synapse layer")
            return UNKNOWN
        return synapse_current(node.target, m, x, self.shape(node), self.fail)

    def identity_terms(self, where: str, x: Spikes) -> list[Term]:
        return identity_terms(where, x)

    def batchnorm(self, m, x: Current, shape) -> Current:
        return fold_batchnorm(m, x, shape, self.fail)

    def population(self, path: str, m: nn.Module, x: Current, shape) -> Spikes:
        self.add_population(path, shape, neuron_of(m), x)
        return Spikes([path], shape)

    def readout(self, node: fx.Node, x) -> None:
        if isinstance(x, Current):
            self.add_population("readout", tuple(x.bias.shape), Neuron("readout"), x)
        elif (isinstance(x, Spikes) and not x.maps and self.populations and x.sources == [self.populations[-1].name]
              and self.incoming_from_chip(x.sources[0])):
            pass  # a spike readout: the last population fires and its spike counts are the output
        elif x is not UNKNOWN:
            self.fail("output", "the model must end with a Linear or Conv2d classifier (read out as an integrating "
                                "population) or with the spiking neuron that follows it (a spike-count readout)")

    def incoming_from_chip(self, name: str) -> bool:
        """Whether `name` is fed by another population: the output may not be the encoding population."""
        return any(s.target == name and not s.host for s in self.synapses)

    def add_population(self, name: str, shape, neuron: Neuron, x: Current) -> None:
        srcs = {t.source for t in x.terms}
        if INPUT in srcs and len(srcs) > 1:
            self.fail(name, "a population fed by the analog input may not also receive spikes")
        self.populations.append(Population(name, tuple(int(s) for s in shape), neuron))
        self.biases[name] = x.bias
        for t in x.terms:
            out_shape = tuple(int(s) for s in shape)
            self.synapses.append(Synapse(t.name, t.kind, t.source, name, t.weight, tuple(t.in_shape), out_shape,
                                         t.stride, t.padding, t.groups, dense_ops=t.dense_ops))


def _assign_depths(pops: list[Population], syns: list[Synapse]) -> None:
    depth = {INPUT: -1}
    for p in pops:
        # the population fed by the encoding layer is depth 0; each on-chip synapse layer adds 1
        depth[p.name] = max(depth[s.source] + 1 for s in syns if s.target == p.name)
        p.depth = depth[p.name]
    for s in syns:
        s.delay = 0 if s.host else depth[s.target] - depth[s.source] - 1


def capture(model: nn.Module, input_shape: tuple[int, ...], timesteps: int = 1, dt: float = 1.0) -> DeployGraph:
    """The deployment graph of a spiking model (float parameters, BN and pooling folded).

    Shape:
        `input_shape` is one sample's `(C, H, W)`; the model runs `[T, B, C, H, W] -> [T, B, K]`.
    """
    walker = walk(model, input_shape)
    return DeployGraph(tuple(input_shape), walker.populations, walker.synapses, walker.biases, timesteps, dt)


def walk(model: nn.Module, input_shape: tuple[int, ...], walker_cls: type[Walker] = Walker) -> Walker:
    """Trace `model` and run `walker_cls` over it: `capture`'s work, for walkers that record more
    (quantization-aware training maps every synapse back to its modules)."""
    from spikingjelly.activation_based import functional
    from spikingjelly.activation_based.neuron import BaseNode

    if not any(isinstance(m, BaseNode) for m in model.modules()):
        raise UnsupportedLayerError(
            "the model has no spiking neurons; export --target loihi2 needs a spiking model (an ANN has no Loihi form)"
        )
    model = copy.deepcopy(model).cpu().eval().float()
    functional.set_step_mode(model, "s")  # one step of one sample: plain shapes for tracing
    tracer = _Tracer()
    try:
        gm = fx.GraphModule(model, tracer.trace(model))
    except Exception as e:  # noqa: BLE001 - fx's many failure types become one user error
        raise UnsupportedLayerError(f"the model cannot be traced with torch.fx ({type(e).__name__}: {e})") from None
    from torch.fx.passes.shape_prop import ShapeProp

    functional.reset_net(gm)
    try:
        # torch.fx prints the generated code's traceback to stderr before re-raising: the user gets
        # the one line below instead
        with contextlib.redirect_stderr(io.StringIO()):
            ShapeProp(gm).propagate(torch.zeros(1, *input_shape))
    except Exception as e:  # noqa: BLE001 - a module that cannot run one sample of this shape
        raise UnsupportedLayerError(
            f"the model does not run on one sample of shape {tuple(input_shape)} ({type(e).__name__}: "
            f"{_first_line(e)})"
        ) from None
    walker = walker_cls(gm, tuple(input_shape))
    walker.run()
    if not walker.violations:
        if len({s.target for s in walker.synapses if s.host}) != 1:
            walker.fail("input", "exactly one population must read the analog input (the encoding layer)")
        last = walker.populations[-1] if walker.populations else None
        if last is None or (last.neuron.kind != "readout" and not walker.incoming_from_chip(last.name)):
            walker.fail("output", "the model must end with a Linear or Conv2d classifier, or the neuron that follows it")
    if walker.violations:
        n = len(walker.violations)
        raise UnsupportedLayerError(
            f"{n} unsupported layer{'s' if n > 1 else ''}: " + "; ".join(walker.violations) + f" (supported: {SUPPORTED})"
        )
    _assign_depths(walker.populations, walker.synapses)
    return walker
