"""A synapse bias into a decaying current, made exact on Loihi 2: a bias source population.

spikingjelly's CUBALIFNode adds a bias b (a synapse's, a folded BatchNorm shift) to its current
`C = c_decay C + X + b`, where it builds up as `b (1 - c_decay^t) / (1 - c_decay)`. Loihi adds
`bias_mant` to v, the same every step, so no constant bias reproduces it. A spike that arrives
every step with weight b is exactly `+ b` in the current: one neuron that fires every step
(no input, `bias_mant = 1`, `vThMant = 0`: v = 64 > 0 each step, reset to 0), connected to every
such population by a dense synapse whose weights are the biases, on the weight grid at the
population's scale.

Timing: the source sits at depth 0 and fires from its first step; a synapse into a population
at depth d gets the path-matching delay d - 1, so its spikes of steps 0, 1, ... arrive at steps
d, d + 1, ..., the population's window from its staggered reset on (the same schedule as every
other synapse; `fxp.windows_suffice` holds). In float the source fires every step too, so the
float graph computes the same `+ b`. The population is not on the chain, so a graph with one
has no `network.net` (Lava runs it from `deploy.h5`) and no NIR form.
"""

from __future__ import annotations

import numpy as np

from .graph import DeployGraph, Neuron, Population, Synapse
from .quantize import DECAY_UNITY

SOURCE = "bias_source"


def needs_source(graph: DeployGraph, p: Population, encoding: str | None) -> bool:
    """A CUBALIFNode population with current memory, not fed by the host, with a nonzero bias."""
    return (p.neuron.kind == "cuba" and round(DECAY_UNITY / p.neuron.tau_syn) != DECAY_UNITY and p.name != encoding
            and bool(np.any(graph.biases[p.name] != 0)))


def add_bias_sources(graph: DeployGraph) -> list[str]:
    """Move the biases of the populations `needs_source` names onto synapses from one source
    population (added once, after the encoding population); returns the populations moved."""
    encoding = graph.encoding[0].target if graph.encoding else None
    moved = [p for p in graph.populations if needs_source(graph, p, encoding)]
    if not moved:
        return []
    if all(p.name != SOURCE for p in graph.populations):
        src = Population(SOURCE, (1,), Neuron("source", tau=1.0, decay_input=False, v_threshold=1.0, v_reset=0.0))
        at = next(i for i, p in enumerate(graph.populations) if p.name == encoding) + 1
        graph.populations.insert(at, src)
        graph.biases[SOURCE] = np.ones(1)
    for p in moved:
        b = np.asarray(graph.biases[p.name], dtype=np.float64).reshape(-1, 1)
        graph.synapses.append(Synapse(f"{p.name}.bias", "dense", SOURCE, p.name, b.copy(), (1,), tuple(p.shape),
                                      delay=p.depth - 1))
        graph.biases[p.name] = np.zeros_like(graph.biases[p.name])
    return [p.name for p in moved]
