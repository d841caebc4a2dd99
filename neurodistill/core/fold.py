"""Folding BatchNorm and average pooling into the synapse layers (docs/loihi2.md#batchnorm-and-pooling).

Pure functions over numpy arrays (float64, so that folding adds no rounding of its own).
"""

from __future__ import annotations

import numpy as np


def bn_affine(gamma, beta, mean, var, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Eval-mode BatchNorm as `y = k x + shift` per channel: `k = g / sqrt(var + eps)`,
    `shift = beta - mu k`."""
    k = np.asarray(gamma, np.float64) / np.sqrt(np.asarray(var, np.float64) + eps)
    return k, np.asarray(beta, np.float64) - np.asarray(mean, np.float64) * k


def fold_bn(weight: np.ndarray, bias: np.ndarray, gamma, beta, mean, var, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """`BN(W x + b)` as `W' x + b'`: per output channel c, `W'[c] = W[c] g_c / s_c`,
    `b'_c = beta_c + (b_c - mu_c) g_c / s_c`, with `s = sqrt(var + eps)`."""
    k, shift = bn_affine(gamma, beta, mean, var, eps)
    return weight * k.reshape(-1, *([1] * (weight.ndim - 1))), bias * k + shift


def fold_avgpool_into_conv(weight: np.ndarray, stride, padding, k: int, gain: float | None = None):
    """conv(pool_k(x)) as one conv on x, for a pool that sums each k x k window times `gain`
    (`1/k^2`, an average, unless given; 1 for a sum pool): kernel `kron(K, ones(k, k)) * gain`,
    stride and padding times k. Exact when the input's height and width are multiples of k, and
    otherwise when no window of the conv reaches the pooled map's far padding
    (`pooled_conv_is_exact`): the rows and columns the pool leaves out are then never read."""
    w = np.kron(weight, np.ones((k, k))) * (1.0 / (k * k) if gain is None else gain)
    return w, (stride[0] * k, stride[1] * k), (padding[0] * k, padding[1] * k)


def pooled_conv_is_exact(in_hw, k: int, kernel, stride, padding) -> bool:
    """Whether `fold_avgpool_into_conv` equals conv(pool_k(x)) on an `in_hw` input: true when k
    divides it, or when the conv's last window ends inside the pooled map (so it never reads the
    zero padding that, in the folded conv, would instead hold the rows the pool dropped)."""
    for n, kn, s, p in zip(in_hw, kernel, stride, padding, strict=True):
        if n % k == 0:
            continue
        pooled = n // k
        last = (pooled + 2 * p - kn) // s  # index of the conv's last output along this axis
        if last * s - p + kn > pooled:
            return False
    return True


def pull_back(fn, in_shape: tuple[int, ...], weight: np.ndarray) -> np.ndarray:
    """`W @ P` where `P` is the matrix of a linear map `fn` (pooling, flatten) on one sample.

    Row o of the result is the adjoint of `fn` applied to `W[o]` (a vector-Jacobian product),
    so nothing of size `|in|^2` is ever built.

    Shape:
        weight: `(K, |fn(x)|)`; returns `(K, prod(in_shape))`.
    """
    import torch
    from torch.func import vjp, vmap

    x0 = torch.zeros(1, *in_shape, dtype=torch.float64)
    _, pull = vjp(lambda x: fn(x).reshape(-1), x0)
    w = torch.as_tensor(weight, dtype=torch.float64)
    return vmap(lambda row: pull(row)[0])(w).reshape(w.shape[0], -1).numpy()
