"""The deployed forward of a conv/linear: its integer accumulation over the weight grid divided by
the population's scale, the host's encoding current, and BatchNorm statistics learnt from it."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..core.fxp import UV_MAX, wrap24
from .plan import PopPlan, TermPlan
from .ste import BIAS_HI, BIAS_LO, is_pow2, quantize_ste, ste
from .values import PopValues

Tensor = torch.Tensor


def integer_synapse(m: nn.Module, t: TermPlan, pv: PopValues, w: Tensor, x: Tensor, owns_bias: bool) -> Tensor:
    """`(Q x + B) / s` of an on-chip term (`B` only where the term carries its population's bias)."""
    lead, feat = (x.shape[:-3], x.shape[-3:]) if t.kind == "conv" else (x.shape[:-1], x.shape[-1:])
    xs = x.reshape(-1, *feat)
    mult = t.pool * t.pool if t.kind == "conv" else (t.mult.to(x.device, x.dtype) if t.rep is not None else 1)
    if t.rep is not None or t.pool > 1:
        xs = xs * mult  # window sums: exact for power-of-two windows
        if not (t.kind == "conv" and is_pow2(t.pool * t.pool)) and not (t.rep is not None and
                                                                         all(is_pow2(int(v)) for v in t.mult)):
            xs = ste(torch.round(xs), xs)
    wmax = float(w.detach().abs().max())
    exact32 = wmax * float(xs.detach().abs().max() if xs.numel() else 0) * (w[0].numel()) < 2**24
    dt = x.dtype if (exact32 and x.dtype != torch.float16) else torch.float64
    if t.kind == "conv":
        acc = F.conv2d(xs.to(dt), w.to(dt), stride=m.stride, padding=m.padding, groups=m.groups)
        lo, hi = torch.aminmax(acc.detach())
        if float(lo) < -UV_MAX or float(hi) >= UV_MAX:
            acc = ste(wrap24(acc.detach().double()).to(acc.dtype), acc)
    else:
        acc = xs.to(dt) @ w.to(dt).T
    if owns_bias:
        acc = acc + pv.bias.to(acc.device, acc.dtype).reshape(1, *acc.shape[1:])
    out = acc / pv.scale
    return out.reshape(*lead, *out.shape[1:]).to(x.dtype)


def encoding_forward(m: nn.Module, t: TermPlan, p: PopPlan, pv: PopValues, w: Tensor, x: Tensor, bias: Tensor,
                     input_ndim: int) -> Tensor:
    """The host's float64 current `bias + conv(x, W)` (export's encoding_current), rounded to the
    bias mantissa; `bias` is the population's folded float bias, `input_ndim` one sample's rank."""
    feat = x.shape[-input_ndim:]
    lead = x.shape[: x.dim() - len(feat)]
    xs = x.reshape(-1, *feat).double()
    if t.kind == "conv":
        conv = F.conv2d(xs, w, stride=m.stride, padding=m.padding, groups=m.groups)
    else:
        conv = (xs.reshape(xs.shape[0], -1) @ w.T).reshape(xs.shape[0], *p.shape)
    cur = bias.unsqueeze(0) + conv
    mant = quantize_ste(cur * pv.scale, 1, BIAS_LO, BIAS_HI)
    return (mant / pv.scale).reshape(*lead, *p.shape).to(x.dtype)


@torch.no_grad()
def update_bn_stats(m: nn.Module, t: TermPlan, bn: nn.Module, xs: Tensor) -> None:
    """The running-statistics update BatchNorm `bn` makes in training mode, on the float output of
    `m` for this input (weights unquantized, as the float model's BatchNorm sees it). Only a
    BatchNorm right after its conv/linear: through a folded pooling there is no such output."""
    if len(t.bns) != 1 or t.pool > 1 or t.rep is not None:
        return
    if not bn.track_running_stats or bn.running_mean is None:
        return
    if t.kind == "conv":
        y = F.conv2d(xs.to(m.weight.dtype), m.weight, m.bias, m.stride, m.padding, m.dilation, m.groups)
    else:
        y = F.linear(xs.to(m.weight.dtype), m.weight, m.bias)
    bn.num_batches_tracked.add_(1)
    momentum = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
    F.batch_norm(y, bn.running_mean, bn.running_var, None, None, True, momentum, bn.eps)
