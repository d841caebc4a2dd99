"""The NIR conventions every neurodistill NIR file follows, and the one mapping of a neuron to a NIR node.

A neurodistill NIR graph is the float network, BatchNorm folded into the synapse layer before
it (NIR has no BatchNorm node). NIR carries no time step, so everything a reader needs to re-run
the graph is in `graph.metadata` (docs/loihi2.md#nir-conventions). The conventions:

* Time. `dt` is explicit, default 1.0 meaning "one simulation step" (`time_unit = "step"`);
  any other dt is taken as seconds (`time_unit = "s"`), the unit most NIR readers assume
  (spikingjelly and snnTorch default to dt = 1e-4 s). Time constants scale with it.
* Integration: forward Euler with that dt, `v[t] = v[t-1] + dt/tau * (v_leak - v[t-1] + r*I[t])`,
  the convention of every PyTorch-family NIR exporter.
* spikingjelly `LIFNode(tau_sj, decay_input, v_threshold, v_reset)` -> `nir.LIF` with
  `tau = tau_sj * dt`, `r = 1 if decay_input else tau_sj`, `v_leak = v_reset`, `v_threshold`,
  `v_reset`, so that `dt/tau = 1/tau_sj` reproduces spikingjelly's update exactly.
  `IFNode` -> `nir.IF(r = 1/dt, v_threshold, v_reset)`.
* spikingjelly `CUBALIFNode(c_decay, v_decay)`: `c = c_decay c + x; v = v_decay v + c` ->
  `nir.CubaLIF` with `tau_syn = tau_syn_sj*dt`, `tau_mem = tau_sj*dt` (tau_sj = 1/(1 - decay)),
  `w_in = tau_syn_sj`, `r = tau_sj`, `v_leak = 0`: forward Euler of NIR's current and voltage
  ODEs then gives spikingjelly's unit-gain update exactly (as spikingjelly's own exporter writes it).
* Spikes: spikingjelly fires when `v >= v_threshold`; NIR's nominal rule is `v > v_threshold`.
  The values are exported unchanged and the difference is recorded (`threshold_comparison`).
* Reset: NIR only knows "reset to v_reset". A soft reset (`v -= v_threshold`) is refused unless
  `accept_reset_approximation=True`, in which case it is written as a hard reset to 0 and the
  layers are listed in `metadata["reset_approximated"]`.
* Shapes exclude time and batch: the model runs on `[T, B, *input_shape]`, NIR shapes are
  `input_shape`-like, and `Flatten.start_dim` counts from the first non-batch axis.
* Readout: the final Linear becomes `Affine -> Output`: logits per step, which the model's user
  averages over time (`metadata["readout"]`).
* Residual adds become several edges into one node; a NIR node sums its inputs.
"""

from __future__ import annotations

import math
from typing import Any

import nir
import numpy as np

from ... import __version__
from ...errors import UnsupportedLayerError

READOUT_LOGITS = "affine logits per step"
READOUT_SPIKES = "spikes per step"  # a spike-count readout: the class is the argmax of the output's counts
LIF_CONVENTION = (
    "nir.LIF: tau = tau_sj*dt, r = 1 if decay_input else tau_sj, v_leak = v_reset, "
    "v_threshold, v_reset; nir.IF: r = 1/dt; nir.CubaLIF: tau_syn = tau_syn_sj*dt, tau_mem = tau_sj*dt, "
    "w_in = tau_syn_sj, r = tau_sj, v_leak = 0"
)
INTEGRATION = "forward Euler with dt: v[t] = v[t-1] + dt/tau*(v_leak - v[t-1] + r*I[t])"
THRESHOLD_RULE = "v >= v_threshold (spikingjelly); NIR nominal is v > v_threshold; values unchanged"
BN_RULE = "folded into the preceding Conv2d/Linear: W' = W*g/s, b' = beta + (b - mu)*g/s, s = sqrt(var + eps)"
HARD_RESET = "hard reset to v_reset"


def neuron_node(kind: str, shape: tuple[int, ...], *, tau: float | None, v_threshold: float, v_reset: float,
                decay_input: bool, dt: float, tau_syn: float | None = None) -> nir.NIRNode:
    """A spikingjelly-style LIF, IF or CUBA neuron as a NIR node (LIF_CONVENTION); float64 keeps the
    Python-float parameters exact through the file."""
    def full(v: float) -> np.ndarray:
        return np.full(shape, v, dtype=np.float64)

    if kind == "cuba":
        if not (math.isfinite(tau) and math.isfinite(tau_syn)):
            raise UnsupportedLayerError(
                "CUBALIFNode with v_decay or c_decay = 1 (no decay) has no NIR CubaLIF form (infinite time "
                "constant); allowed: decays in [0, 1)")
        return nir.CubaLIF(tau_syn=full(tau_syn * dt), tau_mem=full(tau * dt), r=full(tau), v_leak=full(0.0),
                           v_threshold=full(v_threshold), v_reset=full(v_reset), w_in=full(tau_syn))
    if kind == "if":
        return nir.IF(r=full(1.0 / dt), v_threshold=full(v_threshold), v_reset=full(v_reset))
    return nir.LIF(tau=full(tau * dt), r=full(1.0 if decay_input else tau), v_leak=full(v_reset),
                   v_threshold=full(v_threshold), v_reset=full(v_reset))


def graph_metadata(dt: float, timesteps: int, **extra: Any) -> dict[str, Any]:
    """The metadata every neurodistill NIR graph carries (NIR itself has no time step), plus `extra`."""
    return {"neurodistill_version": __version__, "nir_version": nir.version, "dt": dt,
            "time_unit": "step" if dt == 1.0 else "s", "timesteps": timesteps, "integration": INTEGRATION,
            "lif_convention": LIF_CONVENTION, "threshold_comparison": THRESHOLD_RULE, **extra}
