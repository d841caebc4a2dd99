"""Straight-through rounding: the deployed integers forward, the float gradient backward."""

from __future__ import annotations

import torch

from ..core.quantize import BIAS_BITS

Tensor = torch.Tensor
BIAS_LO, BIAS_HI = -(2 ** (BIAS_BITS - 1)), 2 ** (BIAS_BITS - 1) - 1


def ste(value: Tensor, like: Tensor) -> Tensor:
    """`value` forward, the gradient of `like` backward."""
    return like + (value - like).detach()


def quantize_ste(x: Tensor, step: int, lo: int, hi: int) -> Tensor:
    """`clip(round(x / step) * step, lo, hi)` (numpy's rounding: half to even), straight through
    inside the range, no gradient where clipped."""
    r = torch.round(x.detach() / step) * step
    inside = (r >= lo) & (r <= hi)
    return torch.clamp(r, lo, hi) + (x - x.detach()) * inside


def is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0
