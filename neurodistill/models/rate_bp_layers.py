"""The layers rate-based backprop supports, and their pieces of its two passes: BatchNorm statistics,
max-pool winners, swapped forwards."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import MethodError

Tensor = torch.Tensor

# Leaf modules that are linear (affine) in their input, so rates pass through them unchanged.
_LINEAR = (
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear,
    nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.Flatten, nn.Identity,
)  # fmt: skip


def classify(root: nn.Module) -> tuple[list[nn.Module], list[nn.Module], list[nn.Module]]:
    """(neurons, batch norms, max pools) of a model, or MethodError naming what is unsupported."""
    from spikingjelly.activation_based import base, neuron

    neurons, norms, pools, bad = [], [], [], []
    inside: list[str] = []  # neurons' own submodules (their surrogate functions) are theirs
    for name, m in root.named_modules():
        label = name or type(root).__name__
        if any(name.startswith(p + ".") for p in inside):
            continue
        if isinstance(m, (neuron.LIFNode, neuron.IFNode)):
            if getattr(m, "step_mode", "m") != "m":
                bad.append(f"{label} ({type(m).__name__} in single-step mode; set step_mode='m')")
            neurons.append(m)
            inside.append(name)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            if _is_plain_bn(m):
                norms.append(m)
            else:  # e.g. threshold-dependent or temporal-effective BN: not a per-channel affine map of batch stats
                bad.append(f"{label} ({type(m).__name__})")
        elif isinstance(m, nn.MaxPool2d):
            if m.ceil_mode or m.return_indices:
                bad.append(f"{label} (MaxPool2d with ceil_mode or return_indices)")
            pools.append(m)
        elif getattr(m, "cnf", "ADD") != "ADD":
            bad.append(f"{label} (SEW block with cnf={m.cnf!r}; only 'ADD' is linear)")
        elif isinstance(m, base.MemoryModule) or (_is_leaf(m) and not isinstance(m, _LINEAR)):
            bad.append(f"{label} ({type(m).__name__})")
    if not neurons:
        raise MethodError("rate backprop needs a spiking model (spikingjelly neurons); this model has none")
    if bad:
        raise MethodError(
            f"rate backprop does not support {', '.join(bad)}; supported: spikingjelly LIFNode/IFNode (multi-step), "
            "BatchNorm1d/2d/3d, MaxPool2d, and linear layers (conv, linear, avg pools, flatten, residual add)"
        )
    return neurons, norms, pools


def _is_leaf(m: nn.Module) -> bool:
    """A module with no children, other than an empty Sequential (an identity shortcut)."""
    return not isinstance(m, nn.Sequential) and next(m.children(), None) is None


def _is_plain_bn(m: nn.Module) -> bool:
    """nn.BatchNorm*d or spikingjelly's layer.BatchNorm*d (which only folds T into the batch)."""
    from spikingjelly.activation_based import layer

    return type(m) in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, layer.BatchNorm1d, layer.BatchNorm2d, layer.BatchNorm3d)


def batch_stats(bn: nn.Module) -> bool:
    """Whether the BatchNorm normalises with batch statistics (torch's rule)."""
    return bn.training or bn.running_mean is None


def norm_dims(x: Tensor) -> list[int]:
    """All dims but the channel dim 2 of a multi-step `(T, B, C, ...)` tensor."""
    return [d for d in range(x.dim()) if d != 2]


def swap_forward(m: nn.Module, fn):
    old = m.__dict__.get("forward")
    m.forward = fn
    return m, old


def restore_forward(m: nn.Module, old) -> None:
    if old is None:
        m.__dict__.pop("forward", None)
    else:
        m.forward = old


def pool_geometry(pool: nn.MaxPool2d):
    pair = torch.nn.modules.utils._pair
    k, s, p, d = pair(pool.kernel_size), pair(pool.stride or pool.kernel_size), pair(pool.padding), pair(pool.dilation)
    return k, s, p, d


def maxpool_selection(pool: nn.MaxPool2d, x_seq: Tensor) -> Tensor:
    """Fraction of steps in which each window position held the max: `(B*C, k*k, L)`."""
    k, s, p, d = pool_geometry(pool)
    kk = math.prod(k)
    acc = None
    for t in range(x_seq.shape[0]):
        xt = F.pad(x_seq[t].flatten(0, 1).unsqueeze(1), (p[1], p[1], p[0], p[0]), value=float("-inf"))
        cols = F.unfold(xt, k, dilation=d, stride=s)  # (B*C, k*k, L)
        win = F.one_hot(cols.argmax(1), kk).transpose(1, 2).to(x_seq.dtype)
        acc = win if acc is None else acc + win
    return acc / x_seq.shape[0]
