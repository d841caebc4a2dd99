"""The deployment graph: the one description of a network that every writer, simulator,
runner and counter reads (docs/design.md#the-deployment-graph). Plain dataclasses, no behaviour.

A graph is a set of neuron populations and the synapse layers between them. Several synapse
layers may feed one population (a residual add is a sum of synaptic input); a synapse whose
source is `INPUT` is the host-side encoding layer (direct encoding: it sees the analog input and
produces the same current every step). Parameters are float (after BatchNorm and average-pool
folding) until `quantize` fills in the integer fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

INPUT = "input"  # the source name of the analog input


@dataclass
class Neuron:
    """A population's neuron model in float units (spikingjelly's).

    kind: `lif`, `if`, `cuba` (spikingjelly's CUBALIFNode: a synaptic current decaying by
    `1 - 1/tau_syn` per step feeds v, which decays by `1 - 1/tau` toward 0), or `readout`
    (integrates its input, never fires; its value is the output).
    A hard reset to `v_reset` is kept as is here; mapping to Loihi shifts it to 0.
    """

    kind: str
    tau: float = 2.0
    decay_input: bool = True
    v_threshold: float = 1.0
    v_reset: float | None = 0.0  # None: soft reset (subtract the threshold)
    tau_syn: float | None = None  # cuba only: synaptic current time constant in steps (inf: no decay)


@dataclass
class Population:
    name: str
    shape: tuple[int, ...]  # per sample: (C, H, W) or (N,)
    neuron: Neuron
    depth: int = 0  # synapse layers between the encoding population and this one (longest path)
    # Filled in by quantization (Loihi units; see core/loihi2.py):
    scale: float | None = None  # power of two: weight LSBs per float unit
    i_decay: int | None = None
    v_decay: int | None = None
    v_th_mant: int | None = None
    bias_mant: np.ndarray | None = None  # per neuron (broadcast from per channel)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


@dataclass
class Synapse:
    """A conv or dense synapse layer from `source` (a population or INPUT) into `target`.

    Shape:
        conv: weight `(C_out, C_in / groups, kH, kW)` (PyTorch OIHW cross-correlation);
        dense: weight `(N_out, N_in)` over the source population flattened in C order.
    """

    name: str  # module path in the traced model
    kind: str  # conv | dense
    source: str
    target: str
    weight: np.ndarray
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    groups: int = 1
    delay: int = 0  # extra steps beyond the one every synapse layer adds (path-length matching)
    # Paper-convention operations of the original layer per step (k_h k_w C_in/groups C_out H_out W_out
    # or f_in f_out), before folding; 0 for identity shortcuts and for the extra copies of a SEW sum.
    dense_ops: int = 0
    weight_int: np.ndarray | None = None  # filled in by quantization

    @property
    def host(self) -> bool:
        return self.source == INPUT


@dataclass
class DeployGraph:
    input_shape: tuple[int, ...]
    populations: list[Population]  # in topological order; the last one is the readout (the output)
    synapses: list[Synapse]
    biases: dict[str, np.ndarray] = field(default_factory=dict)  # float bias per population, full shape
    timesteps: int = 1
    dt: float = 1.0  # seconds per step is the user's convention; 1.0 means "one time step"
    notes: list[str] = field(default_factory=list)

    def population(self, name: str) -> Population:
        return next(p for p in self.populations if p.name == name)

    def incoming(self, name: str) -> list[Synapse]:
        return [s for s in self.synapses if s.target == name]

    @property
    def readout(self) -> Population:
        return self.populations[-1]

    @property
    def readout_kind(self) -> str:
        """`voltage` (the last population integrates and never fires; the class is the argmax of its v
        after the last step) or `spikes` (it fires like any other; the class is the argmax of its spike
        counts over the T-step window, ties to the lowest class index: `core/readout.py`). The last
        population's neuron kind is the one home of this fact, so no file can contradict it."""
        return "voltage" if self.readout.neuron.kind == "readout" else "spikes"

    @property
    def encoding(self) -> list[Synapse]:
        return [s for s in self.synapses if s.host]

    @property
    def latency_steps(self) -> int:
        """Steps from an input step to the readout: one per synapse layer on the longest path."""
        return self.readout.depth

    def is_chain(self) -> bool:
        """Whether netx can express it: one on-chip synapse into each population, from the previous one."""
        chip = [s for s in self.synapses if not s.host]
        pops = self.populations
        return len(chip) == len(pops) - 1 and all(
            len([s for s in chip if s.target == p.name]) == 1 and self.incoming(p.name)[0].source == prev.name
            for prev, p in zip(pops, pops[1:], strict=False)
        )


def as_pair(v) -> tuple[int, int]:
    """(h, w) of a stride, padding or kernel size given as an int, a pair, or what nir.read gives
    back (numpy scalars and arrays): the one normalization every reader and writer uses."""
    a = np.asarray(v).reshape(-1)
    return int(a[0]), int(a[-1])
