"""Rockpool 3.1.0's `rockpool.nn.modules.from_nir(graph)`: refused for every spiking graph.

What the importer does (rockpool/nn/modules/torch/nir.py, `_convert_nir_to_rockpool`, loaded by
`nirtorch.load`; it imports without samna):

* `nir.LIF` -> `LIFNeuronTorch(tau_mem=node.tau_mem, ...)`: nir.LIF's field is `tau`, so every
  LIF fails with AttributeError before a module exists.
* `nir.CubaLIF` -> `LIFTorch(tau_mem, tau_syn, threshold=v_threshold, bias=v_leak,
  dt=min(tau_mem/(1 + r)))`: `isyn = exp(-dt/tau_syn)*(isyn + I)`, `v = exp(-dt/tau_mem)*v + isyn + bias`,
  `floor(v/threshold)` spikes for `v >= threshold`, `v -= spikes*threshold`. The synaptic state's
  decay also scales its input (a single-state LIF needs decay 0 and gain 1 at once) and the reset
  subtracts, so no CubaLIF equals the graph's LIF with reset to v_reset and one spike per step.
* Affine/Linear -> `LinearTorch`, LI -> `ExpSynTorch`; nothing else (Conv2d, Flatten, pools, IF):
  NotImplementedError. Modules take `(batch, time, channels)`.

So `adapt` refuses instead of writing a file that fails to load or runs wrong.
"""

from __future__ import annotations

from collections import defaultdict

import nir

from . import Consumer
from .common import grouped, misordered_joins, refuse
from .sinabs import LOAD_ORDER_BUG

FOUND_IN = "Rockpool 3.1.0"
IMPORTER = "rockpool.nn.modules.from_nir"
_MAPPED = (nir.Input, nir.Output, nir.Affine, nir.Linear, nir.LI, nir.CubaLIF)
LIF_BUG = (
    "from_nir reads node.tau_mem, which nir.LIF does not have (its field is tau), and fails with AttributeError; "
    "its CubaLIF (LIFTorch) cannot stand in: the synaptic decay also scales the input, and it resets by "
    "subtracting v_threshold with several spikes a step"
)
CUBA_RULE = "LIFTorch resets by subtracting the threshold (v_reset never read) and fires floor(v/threshold) spikes a step"


def problems(graph: nir.NIRGraph) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for name, node in graph.nodes.items():
        if isinstance(node, nir.LIF):
            out[f"LIF: {LIF_BUG}"].append(name)
        elif isinstance(node, nir.CubaLIF):
            out[f"CubaLIF: {CUBA_RULE}"].append(name)
        elif not isinstance(node, _MAPPED):
            out[f"{type(node).__name__}: from_nir has no mapping for it (NotImplementedError)"].append(name)
    for node, late in misordered_joins(graph).items():
        out[LOAD_ORDER_BUG.format(late=late)].append(node)
    return dict(out)


def adapt(graph: nir.NIRGraph) -> nir.NIRGraph:
    refuse("rockpool", FOUND_IN, IMPORTER, grouped(problems(graph)))
    return graph


CONSUMER = Consumer(
    name="rockpool", package="rockpool", importer=IMPORTER, adapt=adapt,
    conventions="refused: rockpool's from_nir cannot read nir.LIF (tau_mem) and has no Conv2d/Flatten/IF",
)
