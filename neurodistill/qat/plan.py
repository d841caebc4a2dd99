"""Which modules compute each synapse, bias and population of the deployment graph.

`core/capture.py` folds BatchNorm, pooling and residual adds into float arrays. Training
needs the same folding as a function of the live parameters, so this walker runs capture's
trace and records, per synapse term, the conv/linear module, the BatchNorm modules folded
into it and the pooling before it, and per population the expression its bias was built from.
`fold_weight` and `fold_bias` recompute capture's float64 arrays from those modules with the
same operations in the same order (so the integers quantization derives from them are the
export's), differentiably.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import fx, nn

from ..core.capture import Current, Walker, walk
from ..core.fold import pull_back
from ..core.graph import INPUT, DeployGraph, Neuron
from ..core.loihi2 import check_cuba
from ..errors import UnsupportedLayerError

Tensor = torch.Tensor


@dataclass
class TermPlan:
    """One synapse term of the graph and the modules that compute it."""

    name: str
    kind: str  # conv | dense | identity
    source: str
    target: str
    module: str | None  # conv/linear module path (None: identity shortcut)
    in_shape: tuple[int, ...]  # the source's shape (before pooling)
    bns: list[str] = field(default_factory=list)  # BatchNorm modules folded into it, in order
    pool: int = 1  # conv: the AvgPool2d(k) before it (1: none)
    maps: list[nn.Module] = field(default_factory=list)  # dense: pooling/flatten before it
    rep: Tensor | None = None  # dense after pooling: one source position per pooled feature
    mult: Tensor | None = None  # ... and how many positions each pooled feature averages

    @property
    def host(self) -> bool:
        return self.source == INPUT


@dataclass
class PopPlan:
    name: str  # the neuron module's path; "readout" for the classifier
    shape: tuple[int, ...]
    neuron: Neuron
    terms: list[str]
    bias_expr: tuple
    encoding: bool = False


@dataclass
class Plan:
    input_shape: tuple[int, ...]
    populations: list[PopPlan]
    terms: dict[str, TermPlan]

    def population(self, name: str) -> PopPlan:
        return next(p for p in self.populations if p.name == name)

    @property
    def encoding(self) -> PopPlan:
        return next(p for p in self.populations if p.encoding)


class _PlanWalker(Walker):
    def __init__(self, gm: fx.GraphModule, input_shape: tuple[int, ...]) -> None:
        super().__init__(gm, input_shape)
        self.prov: dict[str, dict] = {}
        self.exprs: dict[str, tuple] = {}
        self._path = ""

    def module(self, node, m, x):
        self._path = node.target
        return super().module(node, m, x)

    def synapse(self, node, m, x):
        cur = super().synapse(node, m, x)
        if isinstance(cur, Current):
            for t in cur.terms:
                self.prov[t.name] = {"module": node.target, "bns": [], "maps": list(x.maps)}
            cur.expr = ("lin", node.target)
        return cur

    def identity_terms(self, where, x):
        terms = super().identity_terms(where, x)
        for t in terms:
            self.prov[t.name] = {"module": None, "bns": [], "maps": []}
        return terms

    def batchnorm(self, m, x, shape):
        out = super().batchnorm(m, x, shape)
        if out is not x:
            for t in out.terms:
                self.prov[t.name]["bns"].append(self._path)
            out.expr = ("bn", self._path, x.expr)
        return out

    def function(self, node, values):
        out = super().function(node, values)
        if isinstance(out, Current):
            args = [values.get(a) if isinstance(a, fx.Node) else a for a in node.args]
            curs = [a for a in args if isinstance(a, Current)]
            out.expr = curs[0].expr if len(curs) == 1 else ("add", curs[0].expr, curs[1].expr)
        return out

    def add_population(self, name, shape, neuron, x):
        super().add_population(name, shape, neuron, x)
        self.exprs[name] = x.expr


def _pooled_windows(maps: list[nn.Module], in_shape: tuple[int, ...], out_features: int, where: str):
    """(rep, mult) when the maps average disjoint windows with equal weights, else a refusal.

    Then `W @ P` has one value per window, so the quantized layer is the pooled layer with
    weights `round(W s / n)` applied to window sums `n * pooled`: the exported integers exactly.
    """
    seq = nn.Sequential(*maps).double()
    p = pull_back(seq, in_shape, np.eye(out_features))  # (pooled features, source positions)
    nz = p != 0
    rep, mult = np.zeros(out_features, np.int64), np.zeros(out_features, np.int64)
    ok = bool((nz.sum(0) <= 1).all())
    for j in range(out_features):
        idx = np.flatnonzero(nz[j])
        if not ok or idx.size == 0 or not np.all(p[j, idx] == p[j, idx[0]]) or abs(p[j, idx[0]] * idx.size - 1) > 1e-12:
            raise UnsupportedLayerError(
                f"{where}: quantization-aware training needs the pooling before a dense layer to average disjoint "
                "windows with equal weights (AvgPool2d(k, stride k), AdaptiveAvgPool2d to a divisor of the input)")
        rep[j], mult[j] = idx[0], idx.size
    return torch.as_tensor(rep), torch.as_tensor(mult)


def build_plan(model: nn.Module, input_shape: tuple[int, ...]) -> Plan:
    """The plan of a spiking model, or `UnsupportedLayerError` (capture's, or a QAT limit)."""
    walker = walk(model, tuple(input_shape), _PlanWalker)
    # a CUBALIFNode that export refuses (a bias into a decaying current, ...) is refused before training
    check_cuba(DeployGraph(tuple(input_shape), walker.populations, walker.synapses, walker.biases), bias_sources=False)
    terms: dict[str, TermPlan] = {}
    for s in walker.synapses:
        prov = walker.prov[s.name]
        t = TermPlan(s.name, "identity" if prov["module"] is None else s.kind, s.source, s.target, prov["module"],
                     tuple(s.in_shape), list(prov["bns"]))
        maps = prov["maps"]
        if t.kind == "conv" and maps:
            t.pool = int(maps[0].kernel_size if isinstance(maps[0].kernel_size, int) else maps[0].kernel_size[0])
        elif t.kind == "dense" and any(not isinstance(m, nn.Flatten) for m in maps):
            t.maps = maps
            t.rep, t.mult = _pooled_windows(maps, t.in_shape, int(walker.modules[t.module].weight.shape[1]), s.name)
        terms[s.name] = t
    owners: dict[str, str] = {}
    for t in terms.values():
        if t.module is not None and owners.setdefault(t.module, t.target) != t.target:
            raise UnsupportedLayerError(f"{t.module}: quantization-aware training needs each conv/linear module to feed "
                                        "one population (it feeds two)")
    hosts = [t for t in terms.values() if t.host]
    for t in hosts:
        if t.pool > 1 or t.maps:
            raise UnsupportedLayerError(f"{t.name}: quantization-aware training needs the encoding layer to read the "
                                        "input itself, not pooled")
    if len({t.module for t in hosts}) != 1:
        raise UnsupportedLayerError("quantization-aware training needs exactly one encoding layer (a conv or linear "
                                    "that reads the input)")
    pops = []
    for p in walker.populations:
        if p.neuron.kind != "readout" and p.neuron.v_reset is None:
            raise UnsupportedLayerError(
                f"{p.name}: quantization-aware training deploys Loihi's reset to 0; this neuron has a soft reset "
                "(train with --reset hard, the default)")
        names = [s.name for s in walker.synapses if s.target == p.name]
        pops.append(PopPlan(p.name, tuple(p.shape), p.neuron, names, walker.exprs[p.name],
                            encoding=any(terms[n].host for n in names)))
    return Plan(tuple(input_shape), pops, terms)


# -- capture's float64 arrays, recomputed from the live modules -----------------------------------
def _f64(t: Tensor) -> Tensor:
    # capture folds a float32 copy of the model: so does this, whatever the model's dtype
    return t.float().double()


def bn_affine(bn: nn.Module) -> tuple[Tensor, Tensor]:
    """`export.fold.bn_affine` in torch: `k = g / sqrt(var + eps)`, `shift = beta - mu k`."""
    n = bn.num_features
    dev = bn.running_mean.device
    g = _f64(bn.weight) if bn.affine else torch.ones(n, dtype=torch.float64, device=dev)
    beta = _f64(bn.bias) if bn.affine else torch.zeros(n, dtype=torch.float64, device=dev)
    k = g / torch.sqrt(_f64(bn.running_var) + bn.eps)
    return k, beta - _f64(bn.running_mean) * k


def fold_bias(expr: tuple, modules: dict[str, nn.Module], shape: tuple[int, ...]) -> Tensor:
    """A population's folded float64 bias, full shape, as capture builds it."""
    per = (-1,) + (1,) * (len(shape) - 1)
    kind = expr[0]
    if kind == "lin":
        m = modules[expr[1]]
        b = _f64(m.bias) if m.bias is not None else torch.zeros(m.weight.shape[0], dtype=torch.float64,
                                                                   device=m.weight.device)
        return b.reshape(per).expand(shape)
    if kind == "bn":
        k, shift = bn_affine(modules[expr[1]])
        return fold_bias(expr[2], modules, shape) * k.reshape(per) + shift.reshape(per)
    return fold_bias(expr[1], modules, shape) + fold_bias(expr[2], modules, shape)


def fold_weight(t: TermPlan, modules: dict[str, nn.Module], device: torch.device) -> Tensor:
    """The term's folded float64 weight, differentiable: capture's array, except that a conv
    after AvgPool2d(k) keeps its own kernel (divided by k^2; capture repeats each tap k x k times)
    and a dense layer after pooling keeps one column per pooled feature (capture's `W @ P` has
    that value at every position of the window)."""
    if t.kind == "identity":
        if len(t.in_shape) == 3:
            w = torch.ones(t.in_shape[0], 1, 1, 1, dtype=torch.float64, device=device)
        else:
            w = torch.eye(math.prod(t.in_shape), dtype=torch.float64, device=device)
    else:
        m = modules[t.module]
        w = _f64(m.weight)
        if t.kind == "conv" and t.pool > 1:
            w = w / (t.pool * t.pool)
        elif t.rep is not None:
            w = _pooled_exact(t, w)
    for path in t.bns:
        k, _ = bn_affine(modules[path])
        w = w * k.reshape(-1, *([1] * (w.dim() - 1)))
    return w


def _pooled_exact(t: TermPlan, w: Tensor) -> Tensor:
    """`W @ P` at one position per window: pull_back's own values, with the gradient of `W / n`."""
    with torch.no_grad():
        full = pull_back(nn.Sequential(*t.maps).double(), t.in_shape, w.detach().cpu().numpy())
        val = torch.as_tensor(full[:, t.rep.numpy()], dtype=torch.float64, device=w.device)
    diff = w / t.mult.to(w.device, torch.float64)
    return val + (diff - diff.detach())
