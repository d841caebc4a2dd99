"""Loihi's CUBA neuron in integer units of `v`, with the neuron's own surrogate gradient: the
deployed forward of every LIF/IF/CUBALIFNode population (a CUBALIFNode's current decays in u as
Lava's), and rate backprop's spike pass through it (LIF/IF)."""

from __future__ import annotations

import torch
from torch import nn

from ..core.fxp import UV_MAX, wrap_u
from ..core.quantize import DECAY_UNITY
from ..errors import UnsupportedLayerError
from .ste import ste
from .values import PopValues

Tensor = torch.Tensor


def neuron_forward(node: nn.Module, pv: PopValues, x: Tensor) -> Tensor:
    """The spikes of the deployed neuron for the synaptic input `x (T, ...)` in float units."""
    with torch.autocast(x.device.type, enabled=False):
        return run_cuba(node, pv, x.float() if x.dtype in (torch.float16, torch.bfloat16) else x)


def run_cuba(node: nn.Module, pv: PopValues, x: Tensor, keep_u: bool = False):
    """Spikes `(T, ...)`, and with `keep_u` also the float membrane the surrogate saw at each step."""
    cur = x.double() * pv.scale
    cur = ste(torch.round(cur), cur)  # a + B: integers already, up to float error
    a64 = (cur - pv.bias) * 64
    if pv.i_decay != DECAY_UNITY:
        return _run(node, pv, _decaying_current(a64, pv.i_decay) + pv.bias * 64, x, keep_u)
    lo, hi = torch.aminmax(a64.detach())
    if -float(lo) > UV_MAX or float(hi) > UV_MAX:
        a64 = ste(wrap_u(a64.detach()), a64)  # Lava's one-correction wrap of u
    return _run(node, pv, a64 + pv.bias * 64, x, keep_u)


def _decaying_current(a64: Tensor, i_decay: int) -> Tensor:
    """Loihi's u with current memory (CUBALIFNode): `u = trunc(u (4096 - iDecay) / 4096) + a << 6`, wrapped."""
    f = (DECAY_UNITY - i_decay) / DECAY_UNITY
    u = torch.zeros_like(a64[0])
    out = []
    for t in range(a64.shape[0]):
        ud = u * f
        u = ste(torch.trunc(ud.detach()), ud) + a64[t]
        lo, hi = torch.aminmax(u.detach())
        if -float(lo) >= UV_MAX or float(hi) > UV_MAX:
            u = ste(wrap_u(u.detach()), u)
        out.append(u)
    return torch.stack(out)


def _run(node: nn.Module, pv: PopValues, c: Tensor, x: Tensor, keep_u: bool):
    """v's update, fire and reset on the current entering v each step, `c (T, ...)` (Loihi units)."""
    th = float(pv.v_th_mant << 6)
    f = (DECAY_UNITY - pv.v_decay) / DECAY_UNITY
    norm = 64.0 * pv.scale * pv.tau_factor
    v = torch.zeros_like(c[0])
    out, us = [], []
    for t in range(c.shape[0]):
        if pv.v_decay == DECAY_UNITY:
            v = v * 0.0
        elif pv.v_decay:
            vd = v * f
            v = ste(torch.trunc(vd.detach()), vd)
        v = v + c[t]
        v = ste(v.detach().clamp(-(UV_MAX - 1), UV_MAX - 1), v)
        u = (v - th) / norm
        sg = node.surrogate_function(u)
        spike = ste(torch.gt(v.detach(), th).to(v.dtype), sg)
        out.append(spike)
        if keep_u:
            us.append(u)
        v = v * (1.0 - (spike.detach() if node.detach_reset else spike))
    if keep_u:
        return torch.stack(out), torch.stack(us)
    return torch.stack(out).to(x.dtype)


@torch.no_grad()
def record(node: nn.Module, pv: PopValues, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Rate backprop's spike pass through the deployed neuron: (spikes, rate, eligibility).

    The eligibility is `train.rate_bp`'s, for these dynamics: the BPTT gradient of the firing
    rate with respect to an input constant over the steps, `e = (c/T) sum_t kappa_t sg'(u_t)`,
    with leak `lambda = (4096 - vDecay) / 4096`, `c = 1 / tau'` and `u_t` the float membrane
    the surrogate sees (tests/test_qat_forward.py checks it against autograd).
    """
    from ..models.rate_bp import surrogate_grad

    if pv.i_decay != DECAY_UNITY:
        raise UnsupportedLayerError("rate backprop's eligibility is derived for neurons without current memory; "
                                    "a CUBALIFNode with c_decay > 0 trains with BPTT")
    spikes, u = run_cuba(node, pv, x, keep_u=True)
    lam = (DECAY_UNITY - pv.v_decay) / DECAY_UNITY
    T = x.shape[0]
    kappa = torch.ones_like(u[0])
    elig = torch.zeros_like(u[0])
    for t in range(T):
        sg = surrogate_grad(node.surrogate_function, u[t])
        elig += kappa * sg
        s = spikes[t].double()
        # u = (v - th) / norm, so the pre-reset float membrane relative to the reset (0) is u + th / norm
        rho = 1.0 - s if node.detach_reset else 1.0 - s - (u[t] + pv.v_th_mant * 64 / (64.0 * pv.scale * pv.tau_factor)) * sg
        kappa = 1.0 + lam * rho * kappa
    rate = spikes.double().mean(0)
    return spikes.to(x.dtype), rate.to(x.dtype), (elig / (pv.tau_factor * T)).to(x.dtype)
