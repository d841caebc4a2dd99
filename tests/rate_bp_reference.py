"""Rate backprop's spike pass as it was before the fused loop (commit bddfe90): a step-by-step
loop with autograd for the surrogate's derivative. The tests compare the fused loop with it."""

from __future__ import annotations

import torch
from torch import nn

from neurodistill.models.rate_bp_neuron import neuron_leak

Tensor = torch.Tensor


def reference_record(node: nn.Module, x_seq: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(spikes, rate, eligibility) of one neuron, computed as before (verbatim but for the names)."""
    from spikingjelly.activation_based import functional, neuron

    lam, c = neuron_leak(node)
    theta, v_reset, detach = node.v_threshold, node.v_reset, node.detach_reset
    T = x_seq.shape[0]
    dtype = torch.promote_types(x_seq.dtype, torch.float32)
    v = torch.full_like(x_seq[0], 0.0 if v_reset is None else v_reset, dtype=dtype)
    spikes = torch.empty_like(x_seq)
    elig = torch.zeros_like(v)
    rate = torch.zeros_like(v)
    kappa = torch.ones_like(v)
    is_lif = isinstance(node, neuron.LIFNode)
    for t in range(T):
        x = x_seq[t].to(dtype)
        h = functional.lif_charge(x, v, node.tau, node.decay_input, v_reset) if is_lif else v + x
        u = h - theta
        s = node.surrogate_function(u).to(dtype)
        sg = autograd_surrogate_grad(node.surrogate_function, u)
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


def autograd_surrogate_grad(fn, u: Tensor) -> Tensor:
    """σ'(u) through autograd and the surrogate's own backward."""
    with torch.enable_grad():
        u = u.detach().requires_grad_(True)
        out = fn(u)
        (g,) = torch.autograd.grad(out, u, torch.ones_like(out))
    return g.detach()
