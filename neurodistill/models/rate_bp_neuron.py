"""The neuron side of rate-based backprop: a spikingjelly LIF/IF neuron's spikes, firing rate and
eligibility (the BPTT gradient of its rate), derived in `neurodistill.models.rate_bp`'s docstring."""

from __future__ import annotations

import torch
from torch import nn

Tensor = torch.Tensor


def neuron_record(node: nn.Module, x_seq: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Run one spikingjelly LIF/IF neuron over `(T, ...)` from rest: (spikes, rate, eligibility).

    The dynamics are spikingjelly's own (`functional.lif_charge`, `functional.voltage_reset`,
    the neuron's surrogate for the spike), computed in float32 (float64 for float64 input) as
    its CPU kernel does; see `neurodistill.models.rate_bp`'s docstring for the eligibility.

    Shape:
        Input: `(T, ...)`. Output: spikes `(T, ...)`, rate and eligibility `(...)`.
    """
    from spikingjelly.activation_based import functional

    lam, c = neuron_leak(node)
    theta, v_reset, detach = node.v_threshold, node.v_reset, node.detach_reset
    T = x_seq.shape[0]
    dtype = torch.promote_types(x_seq.dtype, torch.float32)
    v = torch.full_like(x_seq[0], 0.0 if v_reset is None else v_reset, dtype=dtype)
    spikes = torch.empty_like(x_seq)
    elig = torch.zeros_like(v)
    rate = torch.zeros_like(v)
    kappa = torch.ones_like(v)
    is_lif = _is_lif(node)
    for t in range(T):
        x = x_seq[t].to(dtype)
        h = functional.lif_charge(x, v, node.tau, node.decay_input, v_reset) if is_lif else v + x
        u = h - theta
        s = node.surrogate_function(u).to(dtype)
        sg = surrogate_grad(node.surrogate_function, u)
        elig += kappa * sg
        rate += s
        if v_reset is None:
            rho = 1.0 if detach else 1.0 - theta * sg
        else:
            rho = 1.0 - s if detach else 1.0 - s + (v_reset - h) * sg
        kappa = 1.0 + lam * rho * kappa
        v = functional.voltage_reset(h, s, theta, v_reset, detach)
        spikes[t] = s
    return spikes, (rate / T).to(x_seq.dtype), (elig * (c / T)).to(x_seq.dtype)


def neuron_leak(node: nn.Module) -> tuple[float, float]:
    """(λ, c) = (∂H_t/∂V_{t-1}, ∂H_t/∂X_t) of a spikingjelly LIF or IF neuron."""
    if _is_lif(node):
        return 1.0 - 1.0 / node.tau, (1.0 / node.tau if node.decay_input else 1.0)
    return 1.0, 1.0


def surrogate_grad(fn, u: Tensor) -> Tensor:
    """σ'(u): the derivative that `fn` (a spikingjelly surrogate) uses in its backward."""
    with torch.enable_grad():
        u = u.detach().requires_grad_(True)
        out = fn(u)
        (g,) = torch.autograd.grad(out, u, torch.ones_like(out))
    return g.detach()


def _is_lif(node: nn.Module) -> bool:
    from spikingjelly.activation_based import neuron

    return isinstance(node, neuron.LIFNode)
