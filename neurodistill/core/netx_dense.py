"""The weight Lava's bit-accurate Dense applies for a netx dense layer: netx's weight-bit
optimisation and Lava's sign mode, clipping and truncation (lava-dl 0.6.0, lava-nc 0.10.0).
The netx writer checks each dense layer against it, and the netx reader applies it."""

from __future__ import annotations

import numpy as np

from ..errors import UnsupportedLayerError


def _ints(x) -> np.ndarray:
    """As netx's NetDict reads weights: `.astype(int)` (truncation toward zero)."""
    return np.asarray(x).astype(np.int64)


def effective_dense_weight(w: np.ndarray, where: str) -> np.ndarray:
    """The integer weight Lava's bit-accurate Dense applies for a netx dense layer's file weight.

    netx `optimize_weight_bits` (lava-dl 0.6.0) then Lava 0.10.0 `PyDenseModelBitAcc`: the
    model's own sign mode (netx does not pass its one), `clip_weights(8)`, `truncate_weights`,
    and the accumulation shifted by `weight_exp`. Raises when the result is not one integer
    weight per synapse (a right shift that would floor sums, not weights) or netx itself fails.
    """
    w = _ints(w)
    wmax, wmin = int(w.max()), int(w.min())
    if wmax > 254 and wmin < 0:  # netx clips (with a printed warning), in this order
        w = np.clip(w, -256, 254)
        wmax = int(w.max())
    if wmin < -256 and wmax > 0:
        w = np.clip(w, -256, 254)
        wmin = int(w.min())
    if wmax == wmin == 0:
        raise UnsupportedLayerError(f"{where}: all dense weights are 0 (netx's optimize_weight_bits fails on it)")
    if wmax < 0:
        signed, scale = 0, -256 / wmin  # INHIBITORY
    elif wmin >= 0:
        signed, scale = 0, 255 / wmax  # EXCITATORY
    else:
        # MIXED (netx's numpy division gives inf for a maximum of 0)
        signed, scale = 1, min(127 / wmax if wmax else np.inf, -128 / wmin)
    scale_bits = int(np.floor(np.log2(scale))) + signed
    if scale_bits < 0:
        raise UnsupportedLayerError(f"{where}: dense weights {wmin}..{wmax} exceed Loihi's 8-bit range "
                                    f"(netx would shift them by {scale_bits} bits)")
    n = 8
    while n > 0 and np.any(w % (1 << n)):
        n -= 1
    n -= signed
    num_weight_bits = 8 - scale_bits - n  # and weight_exp = -scale_bits
    ws = w << scale_bits
    # Lava's Dense model: lava.utils.weightutils determine_sign_mode / clip_weights / truncate_weights
    mode = "exc" if ws.min() >= 0 else "inh" if ws.max() <= 0 else "mixed"
    if mode == "inh":
        ws = -ws
    ws = np.clip(ws, -256 if mode == "mixed" else 0, 255)
    k = 8 - num_weight_bits + (mode == "mixed")
    if k < 0:
        raise UnsupportedLayerError(f"{where}: netx chose {num_weight_bits} weight bits, more than Lava's 8")
    ws = (ws >> k) << k
    if mode == "inh":
        ws = -ws
    if np.any(ws % (1 << scale_bits)):
        raise UnsupportedLayerError(f"{where}: Lava's dense accumulation >> {scale_bits} floors sums, not weights")
    return ws >> scale_bits
