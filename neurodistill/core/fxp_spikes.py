"""Fixed-point simulation of a netx graph read from a `.net` file (see `formats.netx.reader`), batched.

The per-step schedule of `fxp.run_fxp` (its engine `run_populations`): at step t every population receives what its synapses accumulated at step t-1
(plus any synaptic delay), updates, and spikes; every synapse then accumulates this step's
spikes. Two differences, both because this is how `netx.hdf5.Network(net_config=...)` runs a
file that lava-dl wrote:

* Input. A synapse whose source is `INPUT` reads the given binary input spikes of step t
  (Lava: a RingBuffer into `net.inp`, then the first Dense/Conv, so one step of latency like
  every synapse). A graph whose notes say `input: bias` instead takes per-sample bias
  mantissas for its first population (the input layer's neuron; `net.in_layer.neuron.bias_mant`
  in Lava), constant over the steps.
* Reset. All populations start at rest and are never reset: netx resets nothing unless
  `Network(reset_interval=...)` is given (no staggered reset as in `run_fxp`).
"""

from __future__ import annotations

import torch

from .fxp import run_populations
from .graph import INPUT, DeployGraph


def input_mode(graph: DeployGraph) -> str:
    """`spikes` or `bias`: how the graph's input enters (from `DeployGraph.notes`)."""
    if any(s.source == INPUT for s in graph.synapses):
        return "spikes"
    if any(n.startswith("input: bias") for n in graph.notes):
        return "bias"
    raise ValueError("graph has neither an INPUT synapse nor an 'input: bias' note; use fxp.run_fxp for bundles")


@torch.no_grad()
def run_fxp_spike_input(graph: DeployGraph, in_spikes: torch.Tensor | None, steps: int, *,
                        in_bias: torch.Tensor | None = None) -> dict:
    """Run a graph read by `read_netx` for `steps` steps from rest.

    Shape:
        in_spikes: `(steps, B, *graph.input_shape)` bool, for graphs with `input: spikes`.
        in_bias: `(B, *graph.input_shape)` int bias mantissas of the first population, for
            graphs with `input: bias` (then `in_spikes` is None).
        Returns `spikes[pop] (steps, B, *shape)` bool for every population (readouts too),
        `v_readout_steps (steps, B, *shape)` int64, the last population's voltage after each
        step, `v_readout` its value after the last step, and `steps`.
    """
    mode = input_mode(graph)
    if mode == "spikes":
        if in_spikes is None or in_spikes.shape[0] < steps or tuple(in_spikes.shape[2:]) != tuple(graph.input_shape):
            raise ValueError(f"in_spikes must be (>= {steps}, B, *{tuple(graph.input_shape)}), got "
                             f"{None if in_spikes is None else tuple(in_spikes.shape)}")
        if in_spikes.dtype != torch.bool and not bool(((in_spikes == 0) | (in_spikes == 1)).all()):
            raise ValueError("in_spikes must be binary")
        B = in_spikes.shape[1]
    else:
        if in_bias is None or tuple(in_bias.shape[1:]) != tuple(graph.populations[0].shape):
            raise ValueError(f"in_bias must be (B, *{graph.populations[0].shape}) for a graph fed by bias")
        B = in_bias.shape[0]
    first = graph.populations[0].name
    bias = {p.name: (in_bias if mode == "bias" and p.name == first else torch.as_tensor(p.bias_mant))
            for p in graph.populations}
    return run_populations(graph, steps, B, bias=bias, staggered_reset=False,
                           input_spikes=in_spikes[:steps].bool() if mode == "spikes" else None)
