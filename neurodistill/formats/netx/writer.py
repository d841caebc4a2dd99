"""lava-dl netx HDF5 (`network.net`) for chain graphs (docs/loihi2.md#the-netx-hdf5-file-networknet).

Layer 0 is an `input` layer *with* a neuron group: the encoding population, whose input is
the host-computed encoding current, set per sample as its bias (netx leaves the input
block's port unconnected and says input goes through the neuron's bias). Then one `conv` or
`dense` layer per population, with a `flatten` layer before a dense that reads a (C, H, W)
population. Weights, biases and thresholds are integers stored as floats, as slayer writes them.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from ...core.graph import DeployGraph, Population
from ...errors import UnsupportedLayerError
from ...io.output import atomic_write

NETX_MAX_GROUPS = 128  # lava-dl 0.6.0 netx Conv: groups is stored in an 8-bit (signed) variable


def _type(g: h5py.Group, name: str) -> None:
    g.create_dataset("type", (1,), "S10", [name.encode("ascii")])


def _neuron(g: h5py.Group, p: Population) -> None:
    n = g.create_group("neuron")
    n.create_dataset("type", data="CUBA")
    for key, value in (("iDecay", p.i_decay), ("vDecay", p.v_decay), ("vThMant", p.v_th_mant), ("refDelay", 1)):
        n.create_dataset(key, data=int(value))
    n.create_dataset("gradedSpike", data=False)


def _channel_bias(p: Population) -> np.ndarray:
    b = np.asarray(p.bias_mant)
    if b.ndim == 1:
        return b.astype(np.float64)
    per = b.reshape(b.shape[0], -1)
    if not (per == per[:, :1]).all():
        raise UnsupportedLayerError(f"population {p.name}: netx conv layers take one bias per channel")
    return per[:, 0].astype(np.float64)


def netx_unsupported_reason(graph: DeployGraph) -> str | None:
    """Why netx cannot express this graph (None if it can)."""
    if not graph.is_chain():
        return "netx wires layers strictly in sequence; this graph has residual or branching connections"
    if any(s.delay for s in graph.synapses):
        return "netx conv layers have no synaptic delays"
    from ...core.netx_dense import effective_dense_weight

    for s in graph.synapses:
        if s.kind == "conv" and not s.host and s.groups >= NETX_MAX_GROUPS:
            return (f"netx's Conv keeps groups in an 8-bit variable: conv {s.name!r} with groups={s.groups} "
                    "would receive no input in Lava")
        if s.kind != "dense" or s.host or s.weight_int is None:
            continue
        if not (s.weight_int > 0).any():
            # all zero: netx's optimize_weight_bits raises OverflowError; only negative: Lava's Dense
            # picks its inhibitory sign mode at run time, whose clipping and truncation differ
            return (f"dense layer {s.name!r} has no positive weight"
                    f"{' (all 0)' if not s.weight_int.any() else ''}, which netx and Lava's Dense do not run as quantized")
        # Lava's Dense decides its sign mode, clipping and truncation from the weights at run time
        try:
            same = np.array_equal(effective_dense_weight(s.weight_int, s.name), s.weight_int)
        except UnsupportedLayerError:
            same = False
        if not same:
            return f"Lava's Dense would run layer {s.name!r} with other weights than quantized"
    return None


def write_netx(graph: DeployGraph, path: str | Path) -> None:
    reason = netx_unsupported_reason(graph)
    if reason:
        raise UnsupportedLayerError(reason)

    def write(tmp: str) -> None:
        with h5py.File(tmp, "w") as f:
            layers = f.create_group("layer")
            pops = graph.populations
            g = layers.create_group("0")
            _type(g, "input")
            g.create_dataset("shape", data=np.array(pops[0].shape))
            _neuron(g, pops[0])
            i = 1
            for prev, p in zip(pops, pops[1:], strict=False):
                syn = graph.incoming(p.name)[0]
                if syn.kind == "dense" and len(prev.shape) > 1:
                    g = layers.create_group(str(i))
                    _type(g, "flatten")
                    g.create_dataset("shape", data=np.array([prev.size, 1, 1]))
                    i += 1
                g = layers.create_group(str(i))
                _type(g, syn.kind)
                g.create_dataset("shape", data=np.array(p.shape))
                g.create_dataset("weight", data=syn.weight_int.astype(np.float64))
                g.create_dataset("bias", data=_channel_bias(p) if syn.kind == "conv" else p.bias_mant.astype(np.float64))
                if syn.kind == "conv":
                    g.create_dataset("inChannels", data=syn.in_shape[0])
                    g.create_dataset("outChannels", data=p.shape[0])
                    g.create_dataset("kernelSize", data=np.array(syn.weight_int.shape[2:]))
                    g.create_dataset("stride", data=np.array(syn.stride))
                    g.create_dataset("padding", data=np.array(syn.padding))
                    g.create_dataset("dilation", data=np.array([1, 1]))
                    g.create_dataset("groups", data=syn.groups)
                else:
                    g.create_dataset("inFeatures", data=syn.weight_int.shape[1])
                    g.create_dataset("outFeatures", data=syn.weight_int.shape[0])
                _neuron(g, p)
                i += 1
            sim = f.create_group("simulation")
            sim.create_dataset("Ts", data=graph.dt)
            sim.create_dataset("tSample", data=graph.timesteps + graph.latency_steps)

    atomic_write(path, write)
