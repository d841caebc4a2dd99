"""The neuron side of rate-based backprop: a spikingjelly LIF/IF neuron's spikes, firing rate and
eligibility (the BPTT gradient of its rate), derived in `neurodistill.models.rate_bp`'s docstring."""

from __future__ import annotations

import torch
from torch import nn

from .rate_bp_fused import DERIVATIVES, NeuronSpec, closed_form, fused_record

Tensor = torch.Tensor


def neuron_record(node: nn.Module, x_seq: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Run one spikingjelly LIF/IF neuron over `(T, ...)` from rest: (spikes, rate, eligibility).

    The dynamics are spikingjelly's own (`functional.lif_charge`, `functional.voltage_reset`,
    the neuron's surrogate for the spike), computed in float32 (float64 for float64 input) as
    its CPU kernel does; see `neurodistill.models.rate_bp`'s docstring for the eligibility.
    With one of the package's surrogates (closed-form derivative) the loop is fused
    (`rate_bp_fused`); any other surrogate runs step by step with autograd for its derivative.

    Shape:
        Input: `(T, ...)`. Output: spikes `(T, ...)`, rate and eligibility `(...)`.
    """
    spec = neuron_spec(node)
    spikes, rate, elig = fused_record(x_seq, spec) if spec else _record_any(node, x_seq)
    return spikes.to(x_seq.dtype), rate.to(x_seq.dtype), elig.to(x_seq.dtype)


def neuron_spec(node: nn.Module) -> NeuronSpec | None:
    """The fused loop's description of `node`, or None if its surrogate has no closed form here."""
    sg = closed_form(node.surrogate_function)
    if sg is None:
        return None
    lam, c = neuron_leak(node)
    lif = _is_lif(node)
    return NeuronSpec(
        lif=lif, tau=float(node.tau) if lif else 1.0, decay_input=bool(lif and node.decay_input),
        theta=float(node.v_threshold), v_reset=None if node.v_reset is None else float(node.v_reset),
        detach=bool(node.detach_reset), lam=lam, c=c, surrogate=sg[0], alpha=sg[1],
    )  # fmt: skip


def _record_any(node: nn.Module, x_seq: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The loop for any surrogate: its forward for the spike, autograd for its derivative."""
    from spikingjelly.activation_based import functional

    lam, c = neuron_leak(node)
    theta, v_reset, detach = node.v_threshold, node.v_reset, node.detach_reset
    T = x_seq.shape[0]
    dtype = torch.promote_types(x_seq.dtype, torch.float32)
    v = torch.full_like(x_seq[0], 0.0 if v_reset is None else v_reset, dtype=dtype)
    spikes = torch.empty_like(x_seq, dtype=dtype)
    elig = torch.zeros_like(v)
    kappa = torch.ones_like(v)
    is_lif = _is_lif(node)
    for t in range(T):
        x = x_seq[t].to(dtype)
        h = functional.lif_charge(x, v, node.tau, node.decay_input, v_reset) if is_lif else v + x
        u = h - theta
        s = node.surrogate_function(u).to(dtype)
        sg = surrogate_grad(node.surrogate_function, u)
        elig += kappa * sg
        if v_reset is None:
            rho = 1.0 if detach else 1.0 - theta * sg
        else:
            rho = 1.0 - s if detach else 1.0 - s + (v_reset - h) * sg
        kappa = 1.0 + lam * rho * kappa
        v = functional.voltage_reset(h, s, theta, v_reset, detach)
        spikes[t] = s
    return spikes, spikes.sum(0) / T, elig * (c / T)


def neuron_leak(node: nn.Module) -> tuple[float, float]:
    """(λ, c) = (∂H_t/∂V_{t-1}, ∂H_t/∂X_t) of a spikingjelly LIF or IF neuron."""
    if _is_lif(node):
        return 1.0 - 1.0 / node.tau, (1.0 / node.tau if node.decay_input else 1.0)
    return 1.0, 1.0


def surrogate_grad(fn, u: Tensor) -> Tensor:
    """σ'(u): the derivative that `fn` (a spikingjelly surrogate) uses in its backward.

    In closed form for the package's surrogates (`rate_bp_fused.DERIVATIVES`), through autograd
    for any other.
    """
    sg = closed_form(fn)
    if sg is not None:
        return DERIVATIVES[sg[0]](u.detach(), sg[1])
    with torch.enable_grad():
        u = u.detach().requires_grad_(True)
        out = fn(u)
        (g,) = torch.autograd.grad(out, u, torch.ones_like(out))
    return g.detach()


def _is_lif(node: nn.Module) -> bool:
    from spikingjelly.activation_based import neuron

    return isinstance(node, neuron.LIFNode)
