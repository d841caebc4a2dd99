"""Worst-case ranges of Loihi 2's 24-bit state (docs/loihi2.md#limits-of-the-24-bit-state).

Integer bounds over a quantized population's weights, bias and decays; no IO, no simulation.
On-chip synapses carry binary spikes, so one step's accumulation into a neuron is at most the
sum of its |weights| (the positive ones for the upward side). Past the limits Lava's arithmetic
is not the model's: a conv accumulation at or beyond 2^23 and a u beyond 2^23 wrap (sign flip),
v saturates at 2^23 - 1, and a readout whose v passes `vThMant << 6` fires and drops to 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .quantize import BIAS_BITS, BIAS_EXP, UV_MAX, V_TH_MAX, quantize_signed, quantize_weights

READOUT_LIMIT = V_TH_MAX << BIAS_EXP  # the readout fires above this; it is also below v's saturation
MAX_HALVINGS = 24  # every 8-bit weight and 13-bit bias rounds to 0 well before this


def acc_bound(w_int) -> int:
    """The largest |accumulation| one step of binary input can give a neuron of this layer."""
    w = np.abs(np.asarray(w_int, dtype=np.int64))
    return int(w.reshape(w.shape[0], -1).sum(1).max(initial=0))


def signed_acc_bounds(w_int) -> tuple[np.ndarray, np.ndarray]:
    """Per output channel: the largest upward and downward accumulation one step of binary input gives.

    Padding and borders only remove terms, so the full kernel's sums bound every position."""
    w = np.asarray(w_int, dtype=np.int64)
    w = w.reshape(w.shape[0], -1)
    return np.clip(w, 0, None).sum(1), np.clip(-w, 0, None).sum(1)


def u_bound(a_max: float, i_decay: int) -> float:
    """|u| before any wrap when |a| <= a_max every step.

    u_t = trunc(u_{t-1} (4096 - i_decay) / 4096) + a << 6 is at most the geometric sum
    a_max * 64 * 4096 / i_decay (truncation toward 0 only shrinks it); i_decay = 4096 gives a << 6."""
    if i_decay <= 0:
        return math.inf if a_max else 0.0
    return a_max * 64 * 4096 / i_decay


@dataclass
class PopulationRange:
    """One population's worst case, in the units Lava's registers hold (u and v: mantissa << 6)."""

    name: str
    accumulation: int  # largest |one-step accumulation| of a single conv synapse (wraps at 2^23)
    u: float  # |u| bound
    v: float | None  # readout only: |v| bound after `steps` steps of integration
    steps: int | None = None

    @property
    def limit(self) -> int:
        return READOUT_LIMIT if self.v is not None else UV_MAX

    @property
    def bound(self) -> float:
        """The figure compared with `limit`: the readout's v, else the larger of u and accumulation."""
        return self.v if self.v is not None else max(self.u, self.accumulation)

    @property
    def fits(self) -> bool:
        return self.accumulation < UV_MAX and self.u < UV_MAX and (self.v is None or self.v <= READOUT_LIMIT)


def population_range(name: str, weights: list[tuple[str, np.ndarray]], bias_mant, i_decay: int,
                     readout_steps: int | None = None) -> PopulationRange:
    """Bounds for a population fed by `weights` ((kind, w_int) per on-chip synapse, binary input).

    `readout_steps`: the readout integrates that many steps without leak (iDecay applies to u):
    |v| <= steps * max over neurons of (u bound of its accumulation + |bias| << 6), each side apart.
    Several synapses are bounded by the sum of their per-layer maxima."""
    sides = [(kind, *signed_acc_bounds(w)) for kind, w in weights]
    one_side = [max(int(up.max(initial=0)), int(down.max(initial=0))) for _, up, down in sides]
    conv = [m for (kind, _, _), m in zip(sides, one_side, strict=True) if kind == "conv"]
    u = u_bound(float(sum(one_side)), i_decay)
    v = None
    if readout_steps is not None:
        b = np.atleast_1d(np.asarray(bias_mant, dtype=np.int64))
        b = b.reshape(b.shape[0], -1)
        b_up, b_down = np.clip(b, 0, None).max(1), np.clip(-b, 0, None).max(1)
        if len(sides) == 1 and len(sides[0][1]) == len(b_up):
            up, down = sides[0][1:]
        else:  # per-neuron sums of layers of different shapes: the sum of their maxima bounds them
            up = down = np.full(len(b_up), sum(one_side))
        per_step = np.maximum(u_bound(1, i_decay) * up + (b_up << BIAS_EXP),
                              u_bound(1, i_decay) * down + (b_down << BIAS_EXP))
        v = float(readout_steps * per_step.max(initial=0))
    return PopulationRange(name, max(conv, default=0), u, v, readout_steps)


def quantized_at(weights: list[tuple[str, np.ndarray]], bias: np.ndarray, scale: float, weight_bits: int):
    """(kind, w_int) per synapse and the bias mantissas at `scale` (the mapping's rounding)."""
    return ([(k, quantize_weights(w, scale, weight_bits)[0]) for k, w in weights],
            quantize_signed(np.asarray(bias) * scale, BIAS_BITS)[0])


def safe_scale(name: str, weights: list[tuple[str, np.ndarray]], bias: np.ndarray, scale: float, weight_bits: int,
               i_decay: int, readout_steps: int | None = None) -> tuple[float, PopulationRange]:
    """The largest power-of-two scale <= `scale` at which the population's worst case fits, and its range.

    `weights` and `bias` are float (the mapping's input); rounding is re-done at each halving, as
    export would quantize at that scale, so the bound holds for the integers it will write."""
    for k in range(MAX_HALVINGS + 1):
        s = scale / 2**k
        w_int, b_int = quantized_at(weights, bias, s, weight_bits)
        r = population_range(name, w_int, b_int, i_decay, readout_steps)
        if r.fits:
            return s, r
    return s, r
