"""sinabs 2.0.3's `sinabs.from_nir(graph, batch_size, num_timesteps)`: refused for every spiking graph.

What the importer does (sinabs/nir.py, `_import_sinabs_module`, loaded by `nirtorch.load`):

* `nir.LIF` -> `LIFSqueeze(tau_mem=tau, spike_threshold=v_threshold, norm_input=False,
  min_v_mem=None)` with sinabs' defaults `spike_fn=MultiSpike`, `reset_fn=MembraneSubtract()`:
  `v = exp(-1/tau)*v + I` per step (no dt, `r` unused, no `(1 - alpha)` input factor), then
  `trunc(v/v_threshold)` spikes for `v > 0` and `v -= spikes*v_threshold`. `v_reset` is never read;
  `v_leak` must be 0, checked as `any(v_leak) != 0`, which raises ValueError for parameters of
  two or more non-trivial dimensions (every LIF after a Conv2d).
* `nir.IF` -> `IAFSqueeze` with the same spike and reset rule, `min_v_mem = -v_threshold`, `r` unused.
* Conv2d, Conv1d, Affine, SumPool2d, Flatten (start/end + 1 for the batch axis), LI, Input, Output;
  any other node gets no module and `nirtorch.load` fails or skips it.
* Layers take `(batch*time, ...)`, batch-major, and split it with batch_size / num_timesteps.

A neurodistill graph's neurons reset to `v_reset` and fire once per step, which no value in the
file makes MembraneSubtract/MultiSpike do, so `adapt` refuses instead of writing a file that runs
wrong. Everything else is expressible: with `tau' = -1/ln(1 - dt/tau)` (exact in float32 for
tau_sj = 2), `v_threshold' = v_threshold*tau/(dt*r)` and each imported LIF given
`reset_fn=MembraneReset()`, `spike_fn=SingleSpike` by hand, sinabs runs the digits student spike
for spike (tests/test_nir_consumer_sinabs.py shows it), so the neuron rule is the only obstacle.
"""

from __future__ import annotations

from collections import defaultdict

import nir
import numpy as np

from . import Consumer
from .common import grouped, misordered_joins, refuse

FOUND_IN = "sinabs 2.0.3"
IMPORTER = "sinabs.from_nir"
_MAPPED = (nir.Input, nir.Output, nir.Affine, nir.Conv1d, nir.Conv2d, nir.SumPool2d, nir.Flatten, nir.LI, nir.LIF, nir.IF)
RESET_RULE = (
    "from_nir builds it with sinabs' MembraneSubtract reset and MultiSpike (v -= v_threshold per spike, "
    "trunc(v/v_threshold) spikes a step) and never reads v_reset, so the graph's reset to v_reset and "
    "single spike per step cannot be written"
)
LEAK_CHECK_BUG = "its check any(v_leak) != 0 raises ValueError on parameters with 2+ non-trivial dimensions"
LOAD_ORDER_BUG = (
    "nirtorch.load orders nodes by a depth-first walk, so it runs this node before {late}, "
    "one of the two non-empty branches it sums"
)


def _spans_2d(a: np.ndarray) -> bool:
    return np.ndim(a) >= 2 and any(d > 1 for d in np.shape(a)[1:])


def problems(graph: nir.NIRGraph) -> dict[str, list[str]]:
    """Why, for each reason, these nodes cannot run in sinabs.from_nir as the graph means."""
    out: dict[str, list[str]] = defaultdict(list)
    for name, node in graph.nodes.items():
        if not isinstance(node, _MAPPED):
            out[f"{type(node).__name__}: from_nir has no mapping for it"].append(name)
        if isinstance(node, nir.LIF | nir.IF):
            out[f"{type(node).__name__}: {RESET_RULE}"].append(name)
        if isinstance(node, nir.LIF) and _spans_2d(node.v_leak):
            out[f"LIF after a conv: {LEAK_CHECK_BUG}"].append(name)
    for node, late in misordered_joins(graph).items():
        out[LOAD_ORDER_BUG.format(late=late)].append(node)
    return dict(out)


def adapt(graph: nir.NIRGraph) -> nir.NIRGraph:
    refuse("sinabs", FOUND_IN, IMPORTER, grouped(problems(graph)))
    return graph


CONSUMER = Consumer(
    name="sinabs", package="sinabs", importer=IMPORTER, adapt=adapt,
    conventions="refused: sinabs.from_nir resets by subtraction with multi-spike and ignores v_reset",
)
