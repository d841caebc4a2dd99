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
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import fx, nn

from ..errors import UnsupportedLayerError
from .fold import bn_affine, fold_avgpool_into_conv, pull_back
from .graph import INPUT, DeployGraph, Neuron, Population, Synapse

SUPPORTED = (
    "Conv2d, Linear, BatchNorm1d/2d (folded), AvgPool2d and AdaptiveAvgPool2d before a synapse layer (folded), "
    "Flatten, Dropout and Identity (dropped), spikingjelly LIFNode and IFNode, residual '+' of synaptic "
    "input or of spikes"
)
_MAPS = (nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Flatten)
_PASS = (nn.Dropout, nn.Dropout2d, nn.Identity)
_LEAVES = (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, *_MAPS, *_PASS, nn.MaxPool2d, nn.ReLU)


@dataclass
class _Spikes:
    """Spikes of populations (or the analog input), summed, then mapped by pooling/flatten."""

    sources: list[str]
    base_shape: tuple[int, ...]
    maps: list[nn.Module] = field(default_factory=list)


@dataclass
class _Term:
    name: str
    kind: str
    source: str
    weight: np.ndarray
    in_shape: tuple[int, ...]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    groups: int = 1
    dense_ops: int = 0


@dataclass
class Current:
    """Synaptic input into a population-to-be: a sum of terms plus a full-shape bias."""

    terms: list[_Term]
    bias: np.ndarray


class _Unknown:
    """The value after a violation: downstream layers are still checked, not their wiring."""


UNKNOWN = _Unknown()


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


def _pairs(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


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
                values[node] = _Spikes([INPUT], self.input_shape)
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
        from spikingjelly.activation_based.neuron import IFNode, LIFNode

        path, kind = node.target, type(m).__name__
        if x is UNKNOWN:
            if not isinstance(m, (*_PASS, nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, *_MAPS, LIFNode, IFNode)):
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
            if not isinstance(x, _Spikes):
                self.fail(path, f"{kind} between a synapse layer and its neuron is not supported; pool spikes instead")
                return UNKNOWN
            return _Spikes(x.sources, x.base_shape, [*x.maps, m])
        if isinstance(m, LIFNode | IFNode):
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
            if isinstance(b, Current) and isinstance(a, _Spikes):
                a, b = b, a
            if isinstance(a, Current) and isinstance(b, Current):
                return Current(a.terms + b.terms, a.bias + b.bias)
            if isinstance(a, Current) and isinstance(b, _Spikes) and not b.maps:
                # identity shortcut: spikes added to synaptic input = a depthwise 1x1 synapse of weight 1
                return Current(a.terms + self.identity_terms(where, b), a.bias)
            if isinstance(a, _Spikes) and isinstance(b, _Spikes) and not a.maps and not b.maps and a.base_shape == b.base_shape:
                return _Spikes(a.sources + b.sources, a.base_shape)  # SEW: spike sum
            self.fail(where, "'+' must add two synaptic inputs (residual) or two spike tensors of one shape (SEW)")
            return UNKNOWN
        if fn in (torch.flatten, "flatten") and isinstance(args[0], _Spikes):
            start = args[1] if len(args) > 1 else node.kwargs.get("start_dim", 0 if fn is torch.flatten else 0)
            return _Spikes(args[0].sources, args[0].base_shape, [*args[0].maps, nn.Flatten(max(int(start), 1))])
        self.fail(where, f"operation {getattr(fn, '__name__', fn)!r} is not supported")
        return UNKNOWN

    def synapse(self, node: fx.Node, m: nn.Module, x) -> Current | _Unknown:
        path = node.target
        if not isinstance(x, _Spikes):
            self.fail(path, f"{type(m).__name__} must read spikes (a neuron's output or the input), not another synapse layer")
            return UNKNOWN
        out_shape = self.shape(node)
        w = m.weight.detach().double().cpu().numpy()
        b = m.bias.detach().double().cpu().numpy() if m.bias is not None else np.zeros(w.shape[0])
        bias = np.broadcast_to(b.reshape(-1, *([1] * (len(out_shape) - 1))), out_shape).copy()
        terms = []
        for i, src in enumerate(x.sources):
            name = path if len(x.sources) == 1 else f"{path}[{i}]"
            if isinstance(m, nn.Linear):
                terms.append(self.dense_term(name, src, w, x))
            else:
                terms.append(self.conv_term(name, src, m, w, x))
        if any(t is UNKNOWN for t in terms):
            return UNKNOWN
        # the original layer's operations, counted once however many copies a SEW sum makes
        terms[0].dense_ops = int(np.prod(w.shape) * (np.prod(out_shape[1:]) if isinstance(m, nn.Conv2d) else 1))
        return Current(terms, bias)

    def identity_terms(self, where: str, x: _Spikes) -> list[_Term]:
        shape = x.base_shape
        terms = []
        for i, src in enumerate(x.sources):
            name = f"{src}>{where}" if len(x.sources) == 1 else f"{src}>{where}[{i}]"
            if len(shape) == 3:
                terms.append(_Term(name, "conv", src, np.ones((shape[0], 1, 1, 1)), shape, groups=shape[0]))
            else:
                terms.append(_Term(name, "dense", src, np.eye(int(np.prod(shape))), shape))
        return terms

    def dense_term(self, name: str, src: str, w: np.ndarray, x: _Spikes) -> _Term:
        if x.maps:
            seq = nn.Sequential(*x.maps).double()
            w = pull_back(seq, x.base_shape, w)
        return _Term(name, "dense", src, w, x.base_shape)

    def conv_term(self, name: str, src: str, m: nn.Conv2d, w: np.ndarray, x: _Spikes) -> _Term | _Unknown:
        if _pairs(m.dilation) != (1, 1) or m.padding_mode != "zeros" or isinstance(m.padding, str):
            self.fail(name, "Conv2d with dilation, non-zero padding mode or string padding is not supported")
            return UNKNOWN
        stride, padding = _pairs(m.stride), _pairs(m.padding)
        if x.maps:
            pool = x.maps[0]
            k = _pairs(pool.kernel_size) if isinstance(pool, nn.AvgPool2d) else None
            ok = (len(x.maps) == 1 and k is not None and k[0] == k[1] and _pairs(pool.stride or k) == k
                  and _pairs(pool.padding) == (0, 0) and x.base_shape[1] % k[0] == 0 and x.base_shape[2] % k[0] == 0)
            if not ok:
                self.fail(name, "only one AvgPool2d(k, stride k, no padding, dividing the input) may precede a Conv2d")
                return UNKNOWN
            w, stride, padding = fold_avgpool_into_conv(w, stride, padding, k[0])
        return _Term(name, "conv", src, w, x.base_shape, stride, padding, m.groups)

    def batchnorm(self, m, x: Current, shape) -> Current:
        if not m.track_running_stats or m.running_mean is None:
            self.fail("batchnorm", "BatchNorm without running statistics cannot be folded")
            return x
        n = m.num_features
        g = m.weight.detach().double().cpu().numpy() if m.affine else np.ones(n)
        beta = m.bias.detach().double().cpu().numpy() if m.affine else np.zeros(n)
        mu, var = m.running_mean.double().cpu().numpy(), m.running_var.double().cpu().numpy()
        # BN(sum_i W_i x_i + b) = sum_i (k W_i) x_i + (k b + beta - k mu), per output channel
        per = (-1,) + (1,) * (len(shape) - 1)
        k, shift = bn_affine(g, beta, mu, var, m.eps)
        terms = [replace(t, weight=t.weight * k.reshape(-1, *([1] * (t.weight.ndim - 1)))) for t in x.terms]
        return Current(terms, x.bias * k.reshape(per) + shift.reshape(per))

    def population(self, path: str, m: nn.Module, x: Current, shape) -> _Spikes:
        from spikingjelly.activation_based.neuron import IFNode

        neuron = Neuron(
            kind="if" if isinstance(m, IFNode) else "lif",
            tau=float(getattr(m, "tau", 1.0)),
            decay_input=bool(getattr(m, "decay_input", False)),
            v_threshold=float(m.v_threshold),
            v_reset=None if m.v_reset is None else float(m.v_reset),
        )
        self.add_population(path, shape, neuron, x)
        return _Spikes([path], shape)

    def readout(self, node: fx.Node, x) -> None:
        if isinstance(x, Current):
            self.add_population("readout", tuple(x.bias.shape), Neuron("readout"), x)
        elif x is not UNKNOWN:
            self.fail("output", "the model must end with a Linear or Conv2d classifier (read out as an integrating population)")

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
        if walker.populations[-1].neuron.kind != "readout":
            walker.fail("output", "the model must end with a Linear or Conv2d classifier")
    if walker.violations:
        n = len(walker.violations)
        raise UnsupportedLayerError(
            f"{n} unsupported layer{'s' if n > 1 else ''}: " + "; ".join(walker.violations) + f" (supported: {SUPPORTED})"
        )
    _assign_depths(walker.populations, walker.synapses)
    return walker
