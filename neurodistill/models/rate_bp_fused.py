"""Rate backprop's per-neuron loop as one fused pass: the surrogates' derivatives in closed form,
the loop written once in plain tensor ops, compiled by torch.compile (C++ on the CPU, Triton on
CUDA) for large layers and run as it is otherwise.

Why fused: the loop is memory-bound. Run op by op it reads and writes the layer's activations
about fifteen times per step; compiled it reads the input once and writes the spikes once.

Exactness: the membrane and the spikes are computed with the same float operations in the same
order as spikingjelly's torch path (`lif_charge`, `voltage_reset`), so the spikes are identical
to the neuron's own forward, compiled or not (inductor keeps each operation's rounding: it does
not contract to FMA, `-ffp-contract=off`). Only the eligibility, a sum of products, may differ
in the last bits between the two.
"""

from __future__ import annotations

import logging
import math
import types
from collections.abc import Callable
from dataclasses import dataclass

import torch

Tensor = torch.Tensor
log = logging.getLogger(__name__)

# Below this many elements (T x neurons) a layer runs uncompiled: its tensors fit in cache, the
# loop costs little, and a compile (tens of seconds once per process) would not pay back on a
# small model or in a test.
COMPILE_MIN_ELEMENTS = 1 << 20


# --- surrogate derivatives ------------------------------------------------------------------------
# Each is spikingjelly's backward with grad_output = 1, operation for operation (surrogate.py:
# atan_backward, sigmoid_backward, erf_backward, piecewise_quadratic_backward), so eager results
# are bitwise those of autograd through the surrogate.
def atan_derivative(u: Tensor, alpha: float) -> Tensor:
    a = alpha / 2
    au = math.pi * a * u
    return a / (1 + au * au)


def sigmoid_derivative(u: Tensor, alpha: float) -> Tensor:
    s = torch.sigmoid(u * alpha)
    return (1.0 - s) * s * alpha


def erf_derivative(u: Tensor, alpha: float) -> Tensor:
    return torch.exp(-((u * alpha) ** 2)) * (alpha / math.sqrt(math.pi))


def piecewise_quadratic_derivative(u: Tensor, alpha: float) -> Tensor:
    ua = u.abs()
    return (-(alpha**2) * ua + alpha).masked_fill(ua > (1 / alpha), 0.0)


# spikingjelly surrogate class name -> its derivative; the package's surrogates (neurons.SURROGATES) all have one
DERIVATIVES: dict[str, Callable[[Tensor, float], Tensor]] = {
    "ATan": atan_derivative,
    "Sigmoid": sigmoid_derivative,
    "Erf": erf_derivative,
    "PiecewiseQuadratic": piecewise_quadratic_derivative,
}


def closed_form(fn) -> tuple[str, float] | None:
    """(class name, alpha) of a spikingjelly surrogate whose derivative is in DERIVATIVES, else None.

    The class must be spikingjelly's own (a subclass may change the backward) and in spiking
    mode (otherwise its forward is the smooth primitive, not a Heaviside step).
    """
    from spikingjelly.activation_based import surrogate

    name = type(fn).__name__
    if name not in DERIVATIVES or type(fn) is not getattr(surrogate, name, None) or not getattr(fn, "spiking", False):
        return None
    return name, float(fn.alpha)


# --- the loop ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NeuronSpec:
    """What the loop needs of a LIF/IF neuron with a closed-form surrogate; hashable, so one
    compiled loop serves every layer of the same kind."""

    lif: bool
    tau: float
    decay_input: bool
    theta: float
    v_reset: float | None  # None: soft reset
    detach: bool
    lam: float  # ∂H_t/∂V_{t-1}
    c: float  # ∂H_t/∂X_t
    surrogate: str
    alpha: float


def record_steps(x_seq: Tensor, p: NeuronSpec) -> tuple[Tensor, Tensor, Tensor]:
    """Spikes `(T, ...)`, rate and eligibility `(...)` in the compute dtype (see neuron_record)."""
    T = x_seq.shape[0]
    dtype = torch.promote_types(x_seq.dtype, torch.float32)
    sg_of = DERIVATIVES[p.surrogate]
    rv = 0.0 if p.v_reset is None else p.v_reset
    v = torch.full_like(x_seq[0], rv, dtype=dtype)
    # With a soft detached reset κ_t = 1 + λ κ_{t-1} is the same for every neuron: a number.
    kappa: Tensor | float = 1.0 if p.v_reset is None and p.detach else torch.ones_like(v)
    elig = torch.zeros_like(v)
    spikes = []
    for t in range(T):
        x = x_seq[t].to(dtype)
        if not p.lif:
            h = v + x
        elif p.decay_input:  # spikingjelly's lif_charge, same operations and order
            h = v + (x - (v - rv if rv else v)) / p.tau
        else:
            h = v - (v - rv if rv else v) / p.tau + x
        u = h - p.theta
        fire = u >= 0  # the surrogates' forward: heaviside(u)
        s = fire.to(dtype)
        g = sg_of(u, p.alpha)
        elig = elig + g * kappa
        kappa = _next_kappa(p, kappa, fire, s, h, g)
        # voltage_reset's value: h - s·θ is u where s = 1; s·V_r + (1 - s)·h is V_r there (up to a zero's sign)
        v = torch.where(fire, u, h) if p.v_reset is None else torch.where(fire, p.v_reset, h)
        spikes.append(s)
    spike_seq = torch.stack(spikes)
    return spike_seq, spike_seq.sum(0) / T, elig * (p.c / T)


def _next_kappa(p: NeuronSpec, kappa, fire: Tensor, s: Tensor, h: Tensor, g: Tensor):
    """κ_t = 1 + λ ρ_{t-1} κ_{t-1}, ρ per reset as in models.rate_bp's docstring."""
    if p.v_reset is None:
        if p.detach:
            return 1.0 + p.lam * kappa
        return 1.0 + p.lam * (1.0 - p.theta * g) * kappa
    if p.detach:
        return torch.where(fire, 1.0, 1.0 + p.lam * kappa)  # ρ = 1 - s: a spike restarts κ at 1
    return 1.0 + p.lam * (1.0 - s + (p.v_reset - h) * g) * kappa


# --- compiled dispatch ------------------------------------------------------------------------------
_compiled: dict[NeuronSpec, Callable | None] = {}  # None: its compile failed, it runs uncompiled


def fused_record(x_seq: Tensor, p: NeuronSpec) -> tuple[Tensor, Tensor, Tensor]:
    """record_steps, compiled when the layer is large enough and torch.compile works here."""
    if x_seq.numel() < COMPILE_MIN_ELEMENTS or torch.compiler.is_compiling():
        return record_steps(x_seq, p)
    if p not in _compiled:
        _compiled[p] = torch.compile(_bind(p, len(_compiled)), dynamic=True, fullgraph=True)
    fn = _compiled[p]
    if fn is None:
        return record_steps(x_seq, p)
    try:
        spikes, rate, elig = fn(_flat(x_seq))
    except Exception as e:  # noqa: BLE001 - no compiler, no Triton, an unsupported platform: run it uncompiled
        _compiled[p] = None
        log.warning("rate backprop: torch.compile failed (%s: %s); this neuron kind's spike pass runs uncompiled",
                    type(e).__name__, str(e)[:300])
        return record_steps(x_seq, p)
    shape = x_seq.shape[1:]
    return spikes.view(x_seq.shape), rate.view(shape), elig.view(shape)


def _flat(x_seq: Tensor) -> Tensor:
    """`x_seq` as `(T, N)`, not as a view: torch.compile guards a view on its base's shape, and
    would compile again for every layer whose (B, C, H, W) differ in which sizes are equal;
    on a plain `(T, N)` tensor one graph (N dynamic) serves every layer."""
    x = x_seq.detach().contiguous()
    T = x.shape[0]
    n = x.numel() // max(T, 1)
    return x.new_empty(0).set_(x.untyped_storage(), x.storage_offset(), (T, n), (n, 1))


def _bind(p: NeuronSpec, n: int) -> Callable[[Tensor], tuple[Tensor, Tensor, Tensor]]:
    """record_steps for `p` as a function with its own code object: torch.compile keeps its
    graphs and its recompile limit per code object, so each neuron kind gets its own."""

    def steps(x_seq: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return record_steps(x_seq, p)

    code = steps.__code__.replace(co_name=f"rate_bp_steps_{n}")
    return types.FunctionType(code, steps.__globals__, code.co_name, None, steps.__closure__)
