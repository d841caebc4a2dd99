"""Rate backprop as it was before the fused loop (commit bddfe90): the spike pass's step-by-step
neuron loop with autograd for the surrogate's derivative, the rate pass's neurons and BatchNorms
through autograd, and a RateBackprop built at every step. The tests compare the package with it;
benchmarks/memory_vs_T.py times it as the "before"."""

from __future__ import annotations

import torch
from torch import nn

from neurodistill.models import rate_bp
from neurodistill.models.rate_bp_layers import batch_stats, norm_dims
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


def reference_rate_neuron(self, node: nn.Module, x: Tensor) -> Tensor:
    """RateBackprop._rate_neuron as it was."""
    rate, elig = self._pop(node)
    xe = x * elig
    return (rate.detach() + xe - xe.detach()).to(x.dtype)


def reference_rate_norm(self, bn: nn.Module, x: Tensor, _forward) -> Tensor:
    """RateBackprop._rate_norm as it was."""
    if not batch_stats(bn):
        return _forward(x)
    mu_s, var_s = self._pop(bn)
    dims = norm_dims(x)
    xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    var_r, mu_r = torch.var_mean(xf, dims, unbiased=False)
    mu = mu_s + (mu_r - mu_r.detach())
    var = var_s + (var_r - var_r.detach())
    shape = [1] * x.dim()
    shape[2] = -1
    y = (xf - mu.view(shape)) * torch.rsqrt(var.view(shape) + bn.eps)
    if bn.weight is not None:
        y = y * bn.weight.view(shape) + bn.bias.view(shape)
    return y.to(x.dtype)


def use_reference(setattr_=setattr, record=reference_record) -> None:
    """Make the package run rate backprop as before (`setattr_`: e.g. a pytest MonkeyPatch's, to undo it)."""
    setattr_(rate_bp, "neuron_record", record)
    setattr_(rate_bp.RateBackprop, "_rate_neuron", reference_rate_neuron)
    setattr_(rate_bp.RateBackprop, "_rate_norm", reference_rate_norm)
    setattr_(rate_bp.RateBackprop, "of", classmethod(lambda cls, model: cls(model)))
