"""Spikes in NIR's data format (`nir.NIRGraphData`, written by `nir.write_data`): `spikes.h5`.

One `NIRNodeData` per population, keyed by the population's node name in the bundle's
`network.nir` (dots become underscores, as `deploy` names them); its observable `spikes` is
a `TimeGriddedData` of shape `(samples, steps, neurons)` (bool, neurons flattened in C, H, W
order) with the graph's `dt`. The readout population's voltage after each step is the
observable `v` of node `output` (float64, exact for 24-bit integers). Steps are chip steps:
`T + latency` for a Loihi-timed run (population at depth d sees input step t at chip step d + t).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...core.graph import DeployGraph
from ...io.output import atomic_write
from .deploy import node_name


def graph_data(graph: DeployGraph, spikes: dict[str, torch.Tensor], v_readout_steps: torch.Tensor | None):
    """`nir.NIRGraphData` of `spikes[pop] (steps, B, *shape)` and the readout voltage `(steps, B, *shape)`."""
    import nir

    nodes = {}
    for p in graph.populations:
        if p.name not in spikes:
            continue
        s = spikes[p.name]
        data = s.reshape(s.shape[0], s.shape[1], -1).transpose(0, 1).numpy().astype(bool)
        nodes[node_name(p.name)] = nir.NIRNodeData({"spikes": nir.TimeGriddedData(data, float(graph.dt))})
    if v_readout_steps is not None:
        v = v_readout_steps.reshape(v_readout_steps.shape[0], v_readout_steps.shape[1], -1).transpose(0, 1)
        nodes["output"] = nir.NIRNodeData({"v": nir.TimeGriddedData(v.numpy().astype(np.float64), float(graph.dt))})
    return nir.NIRGraphData(nodes)


def write_spikes(path: Path, graph: DeployGraph, spikes: dict[str, torch.Tensor],
                 v_readout_steps: torch.Tensor | None = None) -> None:
    import nir

    data = graph_data(graph, spikes, v_readout_steps)
    atomic_write(path, lambda tmp: nir.write_data(tmp, data))


def read_spikes(path: Path) -> dict[str, np.ndarray]:
    """`{node: (samples, steps, neurons)}` of the `spikes` observables, and `output/v`."""
    import nir

    data = nir.read_data(str(path))
    out = {k: n.observables["spikes"].data for k, n in data.nodes.items() if "spikes" in n.observables}
    if "output" in data.nodes and "v" in data.nodes["output"].observables:
        out["output/v"] = data.nodes["output"].observables["v"].data
    return out
