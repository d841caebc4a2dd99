"""NIR in: a NIR graph written by another framework's exporter, rewritten into neurodistill's
canonical NIR conventions (`conventions`, dt = one step) so that `to_torch` turns it
into a spikingjelly module that `export_module_loihi2` deploys.

NIR's neuron nodes are ODEs, and a file carries no time step: each exporter assumes its own dt
and its own discretization. What each one writes (read in its installed source):

* spikingjelly 2.0 (`nir_exchange.export_to_nir`, dt = 1e-4 unless given): `tau = tau_sj*dt`,
  `r = 1` (decay_input) or `tau_sj`, `v_leak = v_reset`; forward Euler reproduces it exactly.
* snnTorch 1.0 (`export_to_nir`, dt = 1e-4 hard-coded): Leaky -> LIF `tau = dt/(1-beta)`,
  `r = tau/dt`, `v_leak = 0`, `v_reset = 0` whatever its `reset_mechanism`; forward Euler gives
  snnTorch's `U = beta*U + I` exactly. Synaptic -> CubaLIF; RLeaky/RSynaptic -> nested graphs.
* Norse 1.1 (`to_nir`, dt = 1e-3): LIFBoxCell -> LIF with `tau = dt/tau_mem_inv`, `r = 1`, no
  v_reset (NIR's default 0); LIFCell -> CubaLIF likewise. Norse's own step is forward Euler with
  `dt*tau_mem_inv`, so the written tau is dt times the true one (norse/norse#411, open); taken
  at its word a Norse tau gives tau/dt << 1, which no discretization runs. Read here as Norse
  computes it: `tau_true = tau_file/dt`.
* sinabs 2.0 (`sinabs.nir.to_nir`): LIF `tau = tau_mem` in steps, `r = 1`, `v_leak = 0`; sinabs
  decays exactly, `v = a*v + (1-a)*I` with `a = exp(-1/tau)` (its default `norm_input=True`),
  which is the exact solution of NIR's ODE for an input held over the step; read that way
  (dt = 1 step). IAF -> IF `r = 1`. Its exporter does not record reset or multi-spike
  functions: NIR's reset to `v_reset` (0) is what is deployed.

A neuron becomes a spikingjelly LIFNode when its per-step update `v <- a*v + g*I` has
`g = 1 - a` (decay_input) or `g = 1`; `tau_sj = 1/(1 - a)`.

Firing rule (`FIRES_ABOVE`, read in each framework's source): snnTorch (`spike_grad(mem - threshold)`,
`> 0`) and Norse (`heaviside`: `torch.gt(x, 0)`) fire on `v > threshold`; spikingjelly (`>= 0`) and
sinabs (`SingleSpike`: `v - threshold >= 0`) on `>=`. The rebuilt neuron is spikingjelly's (`>=`), so a
strict threshold is read as the next float32 above it: the frameworks compare float32 states, where
`v >= next(th)` is exactly `v > th`, and the deployment's mapping then lands on Loihi's strict `>` at the
same integer (docs/export.md, "NIR in"). That threshold is the one home of the rule downstream.

Reset (`--source-reset`): snnTorch's and sinabs' exporters write `v_reset = 0` whatever reset the
network used, and both frameworks default to subtracting the threshold; the file cannot say which,
so for them the user says it. Reset by subtraction is refused: Loihi 2's CUBA neuron sets v to 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import nir
import numpy as np

from ...errors import ConfigError, UnsupportedLayerError
from ...io.limits import MAX_TIMESTEPS, check_range
from .cuba import read_cuba
from .params import filled, node_line, uniform

# producer -> (seconds per step its exporter assumes, discretization, how it writes tau)
SOURCES: dict[str, tuple[float | None, str]] = {
    "neurodistill": (None, "euler"),  # dt in the graph's metadata
    "spikingjelly": (1e-4, "euler"),
    "snntorch": (1e-4, "euler"),
    "norse": (1e-3, "euler"),
    "sinabs": (1.0, "exact"),
}
PASS_THROUGH = (nir.Input, nir.Output, nir.Conv2d, nir.Affine, nir.Linear, nir.Flatten, nir.AvgPool2d)
ALLOWED = ("Input, Output, Conv2d, Affine, Linear, Flatten, AvgPool2d, SumPool2d (no padding), LIF, IF, "
           "CubaLIF")
FIRES_ABOVE = {"neurodistill": False, "spikingjelly": False, "snntorch": True, "norse": True, "sinabs": False}
RESETS = ("zero", "subtract")
# producer -> the reset its framework uses by default, which its exporter does not write (None: it does,
# or the default is the file's reset to v_reset)
UNRECORDED_RESET = {
    "snntorch": "snnTorch's default reset_mechanism='subtract'",
    "sinabs": "sinabs' default MembraneSubtract with MultiSpike",
    "norse": None,
}
CLASSIFIERS = (nir.Affine, nir.Linear, nir.Conv2d)
OUTPUT_NEURONS = (nir.LIF, nir.IF, nir.CubaLIF)  # a spike-count readout's output population
REL = 1e-5  # exporters write float32: tau*(1 - beta) and r*dt/tau are 1 to about 1e-7


@dataclass
class Translated:
    graph: nir.NIRGraph  # canonical: dt = 1 step
    input_shape: tuple[int, ...]
    timesteps: int | None  # the graph's own T (neurodistill files), else None
    dt: float  # seconds per step of the source
    notes: dict[str, str]  # node -> how it was read


def _meta_number(meta: dict, key: str) -> float:
    v = meta[key]
    v = v.item() if isinstance(v, np.ndarray) and v.size == 1 else v
    if isinstance(v, bool) or not isinstance(v, int | float | np.number) or not math.isfinite(float(v)) or v <= 0:
        raise ConfigError(f"the NIR file's metadata {key} = {str(v)[:40]} is not allowed; allowed: a positive number")
    return float(v)


def _meta_int(meta: dict, key: str) -> int:
    v = meta[key]
    v = v.item() if isinstance(v, np.ndarray) and v.size == 1 else v
    if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating) or not math.isfinite(float(v)) \
            or float(v) != int(v):
        raise ConfigError(f"the NIR file's metadata {key} = {str(v)[:40]} is not allowed; allowed: an integer")
    return int(v)


def in_nir_terms(message: str, graph: nir.NIRGraph) -> str:
    """A deployment refusal of the imported module told in the NIR file's terms: its nodes by their
    NIR names (not `graph_module._3`, the torch module nirtorch built) and NIR node types as the
    allowed list (not the checkpoint export's torch modules, which a NIR user never wrote)."""
    import re

    from ...core.capture import SUPPORTED

    names: dict[str, str] = {}
    for name in graph.nodes:
        sane = str(name).replace(".", "_")  # nirtorch's sanitizing; fx prefixes names that start with a digit
        for alias in (str(name), sane, f"_{sane}", f"nir_node_{sane}"):
            names.setdefault(alias, name)

    def node(m: re.Match) -> str:
        name = names.get(m.group(1), names.get(m.group(1).split(".")[0]))
        return m.group(0) if name is None else node_line(name, graph.nodes[name])

    message = re.sub(r"graph_module\.([\w.]+?)(?=: )", node, message)
    return message.replace(f"(supported: {SUPPORTED})",
                           f"(allowed NIR nodes: {ALLOWED}; pooling of spikes, before a synapse)")


def _cycle_edge(graph: nir.NIRGraph) -> tuple[str, str] | None:
    succ: dict[str, list[str]] = {}
    for a, b in graph.edges:
        succ.setdefault(a, []).append(b)
    state: dict[str, int] = {}

    def visit(n: str) -> tuple[str, str] | None:
        state[n] = 1
        for m in succ.get(n, []):
            if state.get(m) == 1:
                return (n, m)
            if m not in state and (e := visit(m)):
                return e
        state[n] = 2
        return None

    for n in graph.nodes:
        if n not in state and (e := visit(n)):
            return e
    return None


def strict_threshold(v_th: float) -> float:
    """The threshold a `>=` neuron needs to fire exactly where a float32 `v > v_th` does."""
    return float(np.nextafter(np.float32(v_th), np.float32(np.inf)))


class _Reader:
    def __init__(self, source: str, dt: float) -> None:
        self.source, self.dt = source, dt
        self.discretization = SOURCES[source][1]

    def threshold(self, name: str, node: Any) -> float:
        v_th = uniform(name, node, "v_threshold")
        return strict_threshold(v_th) if FIRES_ABOVE[self.source] else v_th

    def step(self, name: str, node: Any, tau: float, r: float) -> tuple[float, float]:
        """(a, g) of the per-step update v <- a*v + g*I + (1 - a)*v_leak."""
        if not (math.isfinite(tau) and tau > 0):
            raise UnsupportedLayerError(f"{node_line(name, node)}: tau = {tau:g} is not a positive finite time constant")
        if self.source == "norse":
            tau = tau / self.dt  # norse/norse#411: its exporter writes dt/tau_mem_inv
        x = self.dt / tau
        if not math.isfinite(x) or x <= 0:
            raise UnsupportedLayerError(f"{node_line(name, node)}: tau = {tau:g} is not a positive finite time constant")
        if self.discretization == "exact":
            a = math.exp(-x)
            return a, (1.0 - a) * r
        return 1.0 - x, x * r

    def lif(self, name: str, node: Any, tau: float, r: float) -> nir.LIF:
        v_th = self.threshold(name, node)
        v_reset = uniform(name, node, "v_reset")
        v_leak = uniform(name, node, "v_leak")
        a, g = self.step(name, node, tau, r)
        if not 0.0 < a < 1.0:
            raise UnsupportedLayerError(
                f"{node_line(name, node)}: tau = {tau:g} s with dt = {self.dt:g} s decays by {a:.4g} per step; "
                f"spikingjelly/Loihi LIF needs tau > dt (check --source-dt)")
        if not math.isclose(v_leak, v_reset, rel_tol=REL, abs_tol=1e-9):
            raise UnsupportedLayerError(
                f"{node_line(name, node)}: v_leak = {v_leak:g} differs from v_reset = {v_reset:g}; "
                f"spikingjelly/Loihi LIF leaks towards its reset value (v_leak = v_reset)")
        tau_sj = 1.0 / (1.0 - a)
        if math.isclose(g, 1.0 - a, rel_tol=REL):
            r_c = 1.0  # decay_input=True: H = V + (X - V)/tau
        elif math.isclose(g, 1.0, rel_tol=REL):
            r_c = tau_sj  # decay_input=False: H = V - V/tau + X
        else:
            raise UnsupportedLayerError(
                f"{node_line(name, node)}: input gain r*dt/tau = {g:.6g} per step; spikingjelly/Loihi LIF takes "
                f"1 (r = tau/dt) or dt/tau = {1.0 - a:.6g} (r = 1)")
        return nir.LIF(tau=filled(node, "v_threshold", tau_sj), r=filled(node, "v_threshold", r_c), v_leak=filled(node, "v_threshold", v_reset),
                       v_threshold=filled(node, "v_threshold", v_th), v_reset=filled(node, "v_threshold", v_reset))

    def node(self, name: str, node: Any) -> nir.NIRNode:
        if isinstance(node, nir.NIRGraph):
            raise UnsupportedLayerError(
                f"{node_line(name, node)} is a nested graph (snnTorch writes RLeaky/RSynaptic so: a recurrent "
                f"layer); recurrent layers are not supported; allowed: {ALLOWED}")
        if isinstance(node, PASS_THROUGH):
            return node
        if isinstance(node, nir.LIF):
            return self.lif(name, node, uniform(name, node, "tau"), uniform(name, node, "r"))
        if isinstance(node, nir.SumPool2d):
            return _sum_pool(name, node)
        if isinstance(node, nir.CubaLIF):
            if self.source == "snntorch":
                # Synaptic's reset 'zero' clears the whole next membrane, that step's input included (a
                # refractory step); 'subtract' is refused for every snnTorch neuron
                raise UnsupportedLayerError(
                    f"{node_line(name, node)}: snnTorch's Synaptic with reset_mechanism='zero' sets the membrane "
                    f"to 0 on the step after a spike, that step's input included, which Loihi 2's CUBA neuron "
                    f"does not do; allowed: Leaky with reset_mechanism='zero'")
            tau_syn = uniform(name, node, "tau_syn")
            if self.source == "norse":
                tau_syn = tau_syn / self.dt
            if not math.isclose(tau_syn, self.dt, rel_tol=REL):
                cuba = read_cuba(name, node, self.source, self.dt)  # a decaying current: CUBALIFNode
                if FIRES_ABOVE[self.source]:  # Norse's LIFCell: `>` on its own v, here v/g against v_threshold/g
                    cuba.v_threshold = filled(cuba, "v_threshold", strict_threshold(uniform(name, cuba, "v_threshold")))
                return cuba
            # tau_syn = dt: the current is w_in*I each step, a LIF with input gain r*w_in
            r = uniform(name, node, "r") * uniform(name, node, "w_in")
            return self.lif(name, node, uniform(name, node, "tau_mem"), r)
        if isinstance(node, nir.IF):
            # Norse's IAF adds its input unscaled whatever dt, and its exporter writes r = 1
            g = uniform(name, node, "r") * (1.0 if self.source == "norse" else self.dt)
            if not math.isclose(g, 1.0, rel_tol=REL):
                raise UnsupportedLayerError(
                    f"{node_line(name, node)}: r*dt = {g:g} per step; spikingjelly/Loihi IF adds its input "
                    f"unscaled (r = 1/dt = {1 / self.dt:g})")
            th, vr = self.threshold(name, node), uniform(name, node, "v_reset")
            return nir.IF(r=filled(node, "v_threshold", 1.0), v_threshold=filled(node, "v_threshold", th), v_reset=filled(node, "v_threshold", vr))
        what = "synaptic delays" if type(node).__name__ == "Delay" else "this node type"
        raise UnsupportedLayerError(f"{node_line(name, node)}: {what} is not supported; allowed: {ALLOWED}")


def _sum_pool(name: str, node: nir.SumPool2d) -> nir.SumPool2d:
    """sinabs' SumPool2d is torch's LPPool2d with p = 1, which has no padding."""
    if np.any(np.asarray(node.padding)):
        raise UnsupportedLayerError(f"{node_line(name, node)}: padding {np.asarray(node.padding).tolist()} is not "
                                    f"supported; allowed: a sum pool without padding (sinabs' SumPool2d)")
    return node


def _input_shape(graph: nir.NIRGraph) -> tuple[int, ...]:
    inputs = [(k, n) for k, n in graph.nodes.items() if isinstance(n, nir.Input)]
    if len(inputs) != 1:
        raise UnsupportedLayerError(f"the NIR graph has {len(inputs)} Input nodes; exactly one is allowed")
    name, node = inputs[0]
    types = node.input_type if isinstance(node.input_type, dict) else {"input": node.input_type}
    shape = tuple(int(s) for s in np.asarray(next(iter(types.values()))).reshape(-1))
    if not shape or any(s < 1 for s in shape):
        raise UnsupportedLayerError(f"NIR Input node {name!r} has no usable shape ({list(shape)})")
    return shape


def _check_readout(graph: nir.NIRGraph) -> None:
    outputs = [k for k, n in graph.nodes.items() if isinstance(n, nir.Output)]
    if len(outputs) != 1:
        raise UnsupportedLayerError(f"the NIR graph has {len(outputs)} Output nodes; exactly one is allowed")
    feeding = [a for a, b in graph.edges if b == outputs[0]]
    for a in feeding:
        node = graph.nodes[a]
        if isinstance(node, CLASSIFIERS):
            continue
        into = [graph.nodes[b] for b, c in graph.edges if c == a]
        if isinstance(node, OUTPUT_NEURONS) and len(feeding) == 1 and into and all(isinstance(n, CLASSIFIERS) for n in into):
            continue  # a spike-count readout: the class is the argmax of this neuron's spike counts
        raise UnsupportedLayerError(
            f"{node_line(a, node)} feeds the Output; allowed: a final Affine, Linear or Conv2d classifier (its "
            f"voltage is read out), or one LIF, IF or CubaLIF fed by such a classifier (its spike counts are)")


def _conv_readout_as_affine(nodes: dict[str, Any], edges: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """A Conv2d classifier whose kernel covers its whole input (Norse has no Flatten to write a Linear
    after a conv) as Flatten -> Affine: the same sums, read out as K classes instead of (K, 1, 1)."""
    out = next(k for k, n in nodes.items() if isinstance(n, nir.Output))
    for name in [a for a, b in edges if b == out]:
        conv = nodes[name]
        if not isinstance(conv, nir.Conv2d) or not isinstance(conv.input_type, dict):
            continue
        shape = np.asarray(conv.input_type.get("input", ()), dtype=np.int64).reshape(-1)
        w = np.asarray(conv.weight)
        if len(shape) != 3 or int(np.asarray(conv.groups).reshape(-1)[0]) != 1 or tuple(shape[1:]) != w.shape[2:] or np.any(conv.padding):
            continue
        flat = f"{name}_flatten"
        nodes[flat] = nir.Flatten(input_type={"input": shape}, start_dim=0, end_dim=-1)
        nodes[name] = nir.Affine(weight=w.reshape(w.shape[0], -1), bias=np.asarray(conv.bias))
        nodes[out] = nir.Output(output_type=np.array([w.shape[0]]))
        edges = [(a, flat) if b == name else (a, b) for a, b in edges] + [(flat, name)]
    return edges


def check_reset(source: str, reset: str | None) -> str:
    """The reset the network used: the file's own, or `reset` (--source-reset) where the file cannot say."""
    if reset is not None and reset not in RESETS:
        raise ConfigError(f"--source-reset {reset!r} is not known; choose one of {', '.join(RESETS)}")
    if source not in UNRECORDED_RESET:
        if reset is not None:
            raise ConfigError(f"--source-reset is for files that do not record their reset ({', '.join(UNRECORDED_RESET)}); "
                              f"a {source} file records v_reset")
        return "the file's v_reset"
    if reset is None:
        if UNRECORDED_RESET[source] is not None:
            raise ConfigError(f"a {source} NIR file does not record the neurons' reset (its exporter writes v_reset = 0 "
                              f"also for {UNRECORDED_RESET[source]}); say which the network used: "
                              f"--source-reset {'|'.join(RESETS)}")
        return "zero"
    if reset == "subtract":
        raise UnsupportedLayerError(
            "--source-reset subtract: reset by subtracting the threshold is not supported (Loihi 2's CUBA neuron sets "
            "v to 0 after a spike, and NIR has no such reset); allowed: a network trained with reset to zero, "
            "--source-reset zero")
    return reset


def translate(graph: nir.NIRGraph, source: str, dt: float | None = None, reset: str | None = None) -> Translated:
    """`graph` as written by `source`'s exporter -> the canonical graph (dt = one step); `reset`: the
    network's reset where the file does not record it (`check_reset`)."""
    if source not in SOURCES:
        raise ConfigError(f"--from {source!r} is not known; choose one of {', '.join(SOURCES)}")
    reset = check_reset(source, reset)
    meta = graph.metadata if isinstance(graph.metadata, dict) else {}
    timesteps = None
    if source == "neurodistill":
        if "dt" not in meta:
            raise ConfigError("this NIR file records no dt in its metadata, so it was not written by neurodistill; "
                              f"say which exporter wrote it: --from {'|'.join(s for s in SOURCES if s != 'neurodistill')}")
        dt = _meta_number(meta, "dt") if dt is None else dt
        timesteps = None
        if "timesteps" in meta:
            timesteps = check_range("the NIR file's metadata", "timesteps", _meta_int(meta, "timesteps"), 1,
                                    MAX_TIMESTEPS)
    dt = dt if dt is not None else SOURCES[source][0]
    if not (dt > 0 and math.isfinite(dt)):
        raise ConfigError(f"--source-dt {dt} is not allowed; it must be a positive number of seconds")
    edge = _cycle_edge(graph)
    if edge is not None:
        raise UnsupportedLayerError(
            f"NIR edge {edge[0]!r} -> {edge[1]!r} closes a cycle (a recurrent connection); only feed-forward graphs "
            f"are supported")
    reader = _Reader(source, dt)
    nodes = {k: reader.node(k, n) for k, n in graph.nodes.items()}
    _check_readout(graph)
    rule = "fires on v > v_threshold (read as >= the next float32)" if FIRES_ABOVE[source] else "fires on v >= v_threshold"
    notes = {k: f"{type(graph.nodes[k]).__name__} -> {type(n).__name__}(tau_sj={float(np.ravel(n.tau)[0]):.6g}, "
                f"{'decay_input' if float(np.ravel(n.r)[0]) == 1.0 else 'no decay_input'}); {rule}"
             for k, n in nodes.items() if isinstance(n, nir.LIF)}
    notes.update({k: f"IF; {rule}" for k, n in nodes.items() if isinstance(n, nir.IF)})
    edges = _conv_readout_as_affine(nodes, list(graph.edges))
    out = nir.NIRGraph(nodes=nodes, edges=edges,
                       metadata={"dt": 1.0, "time_unit": "step", "source_exporter": source, "source_dt": dt,
                                 "source_reset": reset})
    return Translated(out, _input_shape(graph), timesteps, dt, notes)
