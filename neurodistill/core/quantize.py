"""Loihi fixed-point formats: power-of-two scales, even 8-bit weights, 13-bit biases, 17-bit thresholds.

The one home of Loihi 2's number formats (every reader, writer and simulator imports them from here).

Pure functions over numpy arrays (docs/loihi2.md#decisions, item 6; docs/loihi2.md#fixed-point-neuron-update).
"""

from __future__ import annotations

import math

import numpy as np

WEIGHT_MIN = -256  # Loihi's mixed-sign 8-bit weights: even integers in [-256, 254]
WEIGHT_MAX = 255  # what Lava's clip_weights keeps of an 8-bit weight: [-256, 255]
BIAS_BITS = 13  # signed bias mantissa: [-4096, 4095], applied as bias << 6
V_TH_MAX = 2**17 - 1  # 17-bit threshold mantissa, compared as vth << 6
BIAS_EXP = 6  # bias mantissas and thresholds act shifted left by 6
DECAY_UNITY = 4096  # iDecay/vDecay of 4096: the state decays to 0 in one step
UV_MAX = 2**23  # 24-bit u and v
DELAY_MAX = 62  # netx clamps synaptic delays to 62 steps


def weight_grid(bits: int) -> tuple[int, int, int]:
    """(step, lo, hi) of the weight grid for `bits`-bit mixed-sign weights.

    Lava keeps the top `bits` bits of an 8-bit mixed-sign weight and drops the rest
    ((W >> k) << k with k = 9 - bits), so a weight survives exactly when it is a multiple of
    2^(9 - bits) in [-256, 256 - step]."""
    if not 2 <= bits <= 8:
        raise ValueError(f"weight bits {bits} not in 2..8")
    step = 2 ** (9 - bits)
    return step, WEIGHT_MIN, 256 - step


def power_of_two_scale(max_abs: float, limit: float) -> float:
    """The largest power of two s with max_abs * s <= limit (1.0 when max_abs is 0)."""
    if max_abs <= 0 or not math.isfinite(max_abs):
        return 1.0
    return 2.0 ** math.floor(math.log2(limit / max_abs))


def quantize_weights(w: np.ndarray, scale: float, bits: int) -> tuple[np.ndarray, float]:
    """`w * scale` rounded to the weight grid and clipped; returns (integers, clipped fraction)."""
    step, lo, hi = weight_grid(bits)
    q = np.round(w * scale / step) * step
    clipped = float(np.mean((q < lo) | (q > hi))) if q.size else 0.0
    return np.clip(q, lo, hi).astype(np.int64), clipped


def quantize_signed(x: np.ndarray, bits: int) -> tuple[np.ndarray, float]:
    """Round to integers and clip to a signed `bits`-bit range; returns (integers, clipped fraction)."""
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    q = np.round(x)
    clipped = float(np.mean((q < lo) | (q > hi))) if q.size else 0.0
    return np.clip(q, lo, hi).astype(np.int64), clipped
