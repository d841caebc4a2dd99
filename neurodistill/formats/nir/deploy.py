"""`network.nir` of a bundle: the deployment graph as a NIR graph (float, BN and pooling folded).

Written from the deployment graph, not from torch (Decision 1), with the conventions of
`conventions` (dt explicit, LIF: tau = tau_sj dt, r = 1 or tau_sj, v_leak = v_reset). Each synapse
layer is a Conv2d or Affine node (a Flatten node before an Affine that reads a (C, H, W)
population); a population's bias rides on its first incoming synapse; several edges into one
node are summed (residual adds). The readout is Affine -> Output (logits per step), or a spike
readout's output neuron -> Output (spikes per step). Synaptic
delays are Loihi timing (path matching) with no meaning in the latency-free float semantics,
so they are not NIR nodes; the quantized integers are in network.net and deploy.h5.
"""

from __future__ import annotations

import nir
import numpy as np

from ...core.graph import INPUT, DeployGraph
from ...errors import UnsupportedLayerError
from .conventions import READOUT_LOGITS, READOUT_SPIKES, graph_metadata, neuron_node

MAX_NIR_CONV_WEIGHTS = 2**24  # 64 MB of float32 for one conv written densely


def _f32(w: np.ndarray) -> np.ndarray:
    """Weights as the model holds them (float32), the same values deploy.h5 stores."""
    return np.asarray(w, dtype=np.float32)


def _unit_scale(s) -> bool:
    """A depthwise 1x1 conv with stride 1 and no padding: a per-channel scale."""
    return (s.kind == "conv" and s.weight.shape[1:] == (1, 1, 1) and s.groups == s.weight.shape[0]
            and tuple(s.stride) == (1, 1) and tuple(s.padding) == (0, 0))


def _nir_conv_weight(s) -> tuple[np.ndarray, tuple[int, int]]:
    """The conv as nir 1.0.8 types it: groups=1 and a square kernel, the same map.

    nir takes weight.shape[1] (C_in / groups) as the input channels and weight.shape[2] as the kernel
    size of both axes, so a grouped conv is written with its block-diagonal weight and a kh x kw
    kernel is centred in a square one of zeros, its padding grown by as much (same outputs, same
    output shape). Kernel sizes of different parity cannot be centred: no NIR form then.
    """
    w = _f32(s.weight)
    co, cig, kh, kw = w.shape
    k = max(kh, kw)
    if (kh - kw) % 2:
        raise UnsupportedLayerError(f"conv {s.name!r}: nir 1.0's Conv2d has one kernel size for both axes, and a "
                                    f"{kh}x{kw} kernel cannot be centred in a square one (sizes of different parity)")
    if co * cig * s.groups * k * k > MAX_NIR_CONV_WEIGHTS:
        raise UnsupportedLayerError(f"conv {s.name!r}: the dense square weight nir 1.0 needs for groups={s.groups} "
                                    f"would hold {co * cig * s.groups * k * k} values (limit {MAX_NIR_CONV_WEIGHTS})")
    full = np.zeros((co, cig * s.groups, k, k), np.float32)
    dh, dw, cog = (k - kh) // 2, (k - kw) // 2, co // s.groups
    for g in range(s.groups):
        full[g * cog:(g + 1) * cog, g * cig:(g + 1) * cig, dh:dh + kh, dw:dw + kw] = w[g * cog:(g + 1) * cog]
    return full, (int(s.padding[0]) + dh, int(s.padding[1]) + dw)


def node_name(name: str) -> str:
    return name.replace(".", "_").replace(">", "__").replace("[", "_").replace("]", "")


def to_nir(graph: DeployGraph) -> nir.NIRGraph:
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(input_type={"input": np.array(graph.input_shape)})}
    edges: list[tuple[str, str]] = []
    out_name = "output"
    for p in graph.populations:
        readout = p.neuron.kind == "readout"
        target = out_name if readout else node_name(p.name)
        if readout:
            nodes[out_name] = nir.Output(output_type={"output": np.array(p.shape)})
        else:
            n = p.neuron
            if n.kind == "source":
                raise UnsupportedLayerError(f"{p.name}: a population that fires every step (a bias into a decaying "
                                            "current) has no NIR node; the float NIR export holds the bias as it is")
            nodes[target] = neuron_node(n.kind, p.shape, tau=n.tau, v_threshold=n.v_threshold, decay_input=n.decay_input,
                                        v_reset=0.0 if n.v_reset is None else n.v_reset, dt=graph.dt,
                                        tau_syn=n.tau_syn)
        incoming = graph.incoming(p.name)
        carrier = next((i for i, s in enumerate(incoming) if not _unit_scale(s)), 0)
        for i, s in enumerate(incoming):
            bias = graph.biases[p.name] if i == carrier else np.zeros(p.shape)
            src = "input" if s.source == INPUT else node_name(s.source)
            name = node_name(s.name)
            if _unit_scale(s):  # a per-channel scale (identity shortcut): NIR's Scale, which type-checks
                nodes[name] = nir.Scale(scale=np.broadcast_to(s.weight.reshape(-1, 1, 1), p.shape).astype(np.float64))
            elif s.kind == "conv":
                weight, padding = _nir_conv_weight(s)
                nodes[name] = nir.Conv2d(input_shape=tuple(s.in_shape[1:]), weight=weight, stride=s.stride,
                                         padding=padding, dilation=(1, 1), groups=1,
                                         bias=bias.reshape(bias.shape[0], -1)[:, 0].copy())
            else:
                if len(s.in_shape) > 1:
                    flat = f"{name}_flatten"
                    nodes[flat] = nir.Flatten(input_type={"input": np.array(s.in_shape)}, start_dim=0, end_dim=-1)
                    edges.append((src, flat))
                    src = flat
                nodes[name] = nir.Affine(weight=_f32(s.weight), bias=bias.reshape(-1).copy())
            edges += [(src, name), (name, target)]
    if graph.readout_kind == "spikes":  # the output population's spikes are the graph's output
        nodes[out_name] = nir.Output(output_type={"output": np.array(graph.readout.shape)})
        edges.append((node_name(graph.readout.name), out_name))
    readout = READOUT_SPIKES if graph.readout_kind == "spikes" else READOUT_LOGITS
    meta = graph_metadata(graph.dt, graph.timesteps, readout=readout, latency_steps_on_loihi=graph.latency_steps,
                          source="neurodistill deployment graph")
    try:
        return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)
    except ValueError as e:  # nir's type inference disagrees with the graph's shapes
        raise UnsupportedLayerError(f"nir cannot type this graph ({' '.join(str(e).split())[:200]})") from None


def nir_unsupported_reason(graph: DeployGraph) -> str | None:
    """Why the deployment graph has no NIR form that nir 1.0 reads back (None if it has)."""
    try:
        to_nir(graph)
    except UnsupportedLayerError as e:
        return str(e)
    return None
