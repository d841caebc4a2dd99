"""spikingjelly's `nir_exchange.import_from_nir(graph, dt=metadata['dt'])`: the canonical graph as is.

The canonical conventions are spikingjelly's own reading (forward Euler with `dt/tau`,
`r = 1` or `tau/dt`, Flatten dims without the batch axis, `v >= v_threshold`), so nothing is
rewritten; neurodistill's own importer (`formats.nir.to_torch.from_nir_to_torch`) reads the same file.
"""

from __future__ import annotations

import nir

from . import Consumer


def adapt(graph: nir.NIRGraph) -> nir.NIRGraph:
    return graph


CONSUMER = Consumer(
    name="spikingjelly", package="spikingjelly", importer="spikingjelly.activation_based.nir_exchange.import_from_nir",
    adapt=adapt, conventions="canonical: forward Euler dt/tau with the graph's dt; pass dt=metadata['dt'] to the importer",
)
