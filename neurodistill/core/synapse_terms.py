"""What capture's walk passes from node to node, and how each synapse layer kind (Conv2d,
Linear, the identity shortcut, a BatchNorm after them) folds into synaptic terms."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
from torch import nn

from .fold import bn_affine, fold_avgpool_into_conv, pooled_conv_is_exact, pull_back
from .graph import Neuron, as_pair

# where, what: a violation, collected so that every one is reported at once
Fail = Callable[[str, str], None]


@dataclass
class Spikes:
    """Spikes of populations (or the analog input), summed, then mapped by pooling/flatten."""

    sources: list[str]
    base_shape: tuple[int, ...]
    maps: list[nn.Module] = field(default_factory=list)


@dataclass
class Term:
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

    terms: list[Term]
    bias: np.ndarray


class Unknown:
    """The value after a violation: downstream layers are still checked, not their wiring."""


UNKNOWN = Unknown()


def synapse_current(path: str, m: nn.Conv2d | nn.Linear, x: Spikes, out_shape: tuple[int, ...],
                    fail: Fail) -> Current | Unknown:
    """The current a Conv2d or Linear makes of `x`: one term per summand of a SEW sum."""
    w = m.weight.detach().double().cpu().numpy()
    b = m.bias.detach().double().cpu().numpy() if m.bias is not None else np.zeros(w.shape[0])
    bias = np.broadcast_to(b.reshape(-1, *([1] * (len(out_shape) - 1))), out_shape).copy()
    terms = []
    for i, src in enumerate(x.sources):
        name = path if len(x.sources) == 1 else f"{path}[{i}]"
        if isinstance(m, nn.Linear):
            terms.append(dense_term(name, src, w, x))
        else:
            terms.append(conv_term(name, src, m, w, x, fail))
    if any(t is UNKNOWN for t in terms):
        return UNKNOWN
    # the original layer's operations, counted once however many copies a SEW sum makes
    terms[0].dense_ops = int(np.prod(w.shape) * (np.prod(out_shape[1:]) if isinstance(m, nn.Conv2d) else 1))
    return Current(terms, bias)


def identity_terms(where: str, x: Spikes) -> list[Term]:
    """Spikes added to synaptic input: a depthwise 1x1 synapse of weight 1 per source."""
    shape = x.base_shape
    terms = []
    for i, src in enumerate(x.sources):
        name = f"{src}>{where}" if len(x.sources) == 1 else f"{src}>{where}[{i}]"
        if len(shape) == 3:
            terms.append(Term(name, "conv", src, np.ones((shape[0], 1, 1, 1)), shape, groups=shape[0]))
        else:
            terms.append(Term(name, "dense", src, np.eye(int(np.prod(shape))), shape))
    return terms


class SumPool(nn.Module):
    """A sum pool as the linear map it is on spikes (k^2 times the average). sinabs' SumPool2d is
    torch's LPPool2d with p = 1, whose derivative at 0 is 0 (it takes |x|): the weights pulled back
    through it would all vanish."""

    def __init__(self, pool: nn.LPPool2d) -> None:
        super().__init__()
        self.k, self.stride = as_pair(pool.kernel_size), as_pair(pool.stride or pool.kernel_size)

    def forward(self, x):
        return nn.functional.avg_pool2d(x, self.k, self.stride) * (self.k[0] * self.k[1])


def is_sum_pool(m: nn.Module) -> bool:
    """torch's LPPool2d with p = 1 (sinabs' SumPool2d): a sum over each window of non-negative spikes."""
    return isinstance(m, nn.LPPool2d) and float(m.norm_type) == 1.0 and not m.ceil_mode


def _pool_window(pool: nn.Module) -> tuple[int, float] | None:
    """(k, gain) of a k x k pool of stride k and no padding that `fold_avgpool_into_conv` folds,
    else None."""
    if is_sum_pool(pool):
        k, stride, gain = as_pair(pool.kernel_size), pool.stride, 1.0
    elif isinstance(pool, nn.AvgPool2d) and not pool.ceil_mode and as_pair(pool.padding) == (0, 0):
        k, stride = as_pair(pool.kernel_size), pool.stride
        gain = 1.0 / (pool.divisor_override or k[0] * k[1])
    else:
        return None
    ok = k[0] == k[1] and as_pair(stride or k) == k
    return (k[0], gain) if ok else None


def dense_term(name: str, src: str, w: np.ndarray, x: Spikes) -> Term:
    if x.maps:
        seq = nn.Sequential(*(SumPool(m) if isinstance(m, nn.LPPool2d) else m for m in x.maps)).double()
        w = pull_back(seq, x.base_shape, w)
    return Term(name, "dense", src, w, x.base_shape)


def conv_term(name: str, src: str, m: nn.Conv2d, w: np.ndarray, x: Spikes, fail: Fail) -> Term | Unknown:
    if as_pair(m.dilation) != (1, 1) or m.padding_mode != "zeros" or isinstance(m.padding, str):
        fail(name, "Conv2d with dilation, non-zero padding mode or string padding is not supported")
        return UNKNOWN
    stride, padding = as_pair(m.stride), as_pair(m.padding)
    if x.maps:
        window = _pool_window(x.maps[0]) if len(x.maps) == 1 else None
        if window is None:
            fail(name, "only one AvgPool2d(k) or sum pool (k), stride k, no padding, may precede a Conv2d")
            return UNKNOWN
        k, gain = window
        if not pooled_conv_is_exact(x.base_shape[1:], k, w.shape[2:], stride, padding):
            fail(name, f"the {k}x{k} pool before it drops the last rows/columns of its {x.base_shape[1]}x"
                       f"{x.base_shape[2]} input and this Conv2d's padding {padding} reaches past them; "
                       f"allowed: an input divisible by {k}, or a padding whose windows end inside the pooled map")
            return UNKNOWN
        w, stride, padding = fold_avgpool_into_conv(w, stride, padding, k, gain)
    return Term(name, "conv", src, w, x.base_shape, stride, padding, m.groups)


def fold_batchnorm(m: nn.BatchNorm1d | nn.BatchNorm2d, x: Current, shape: tuple[int, ...], fail: Fail) -> Current:
    """`x` with the BatchNorm `m` folded into its terms and bias (`x` itself if it cannot be)."""
    if not m.track_running_stats or m.running_mean is None:
        fail("batchnorm", "BatchNorm without running statistics cannot be folded")
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


def neuron_of(m: nn.Module) -> Neuron:
    """The deployment graph's neuron of a spikingjelly LIFNode, IFNode or CUBALIFNode."""
    from spikingjelly.activation_based.neuron import CUBALIFNode, IFNode

    v_reset = None if m.v_reset is None else float(m.v_reset)
    if isinstance(m, CUBALIFNode):
        # decay factors d as time constants 1 / (1 - d); a factor of 1 (no decay) is tau = inf
        return Neuron(kind="cuba", tau=_time_constant(m.v_decay), decay_input=False,
                      v_threshold=float(m.v_threshold), v_reset=v_reset, tau_syn=_time_constant(m.c_decay))
    return Neuron(
        kind="if" if isinstance(m, IFNode) else "lif",
        tau=float(getattr(m, "tau", 1.0)),
        decay_input=bool(getattr(m, "decay_input", False)),
        v_threshold=float(m.v_threshold),
        v_reset=v_reset,
    )


def _time_constant(decay: float) -> float:
    decay = float(decay)
    return math.inf if decay >= 1.0 else 1.0 / (1.0 - decay)
