"""Norse 1.1.0's `norse.torch.from_nir(graph)`: the canonical graph at Norse's default dt = 1e-3 s.

What the importer reads (norse/torch/utils/import_nir.py, `_import_norse_module`; the graph runs in
nirtorch 2.6's deprecated `nirtorch.load` -> `GraphExecutor`, nirtorch/graph_executor.py):

* `nir.LIF` -> `LIFBoxCell(LIFBoxParameters(tau_mem_inv = 1/tau, v_th, v_leak), dt)`, dt = from_nir's
  argument (default 1e-3): `v += dt*tau_mem_inv*(I + v_leak - v)` in float32 (functional/lif_box.py,
  `lif_box_feed_forward_step`). `r` is not read (a logged warning when != 1), `v_reset` is not passed
  (LIFBoxParameters' default 0), the start state is `v_leak`.
* `nir.IF` -> `IAFCell(IAFParameters(v_th))`: `v += I` (neither `r` nor dt is read), reset to 0.
* Spikes: `threshold(v - v_th, "super")`, whose forward is `heaviside`: `v - v_th > 0`, strictly greater.
* `nir.Flatten` -> `torch.nn.Flatten(start_dim, end_dim)` on `[B, ...]`: dims count the batch axis.
* Conv2d, Affine and Linear map one to one (`input_shape` is not read); `nir.AvgPool2d` maps to None, and
  the executor skips a None node: its input passes through unpooled.
* Execution order: `trace_execution`, a depth-first preorder from the input (graph_utils.py). A node with
  two incoming paths of different lengths (a residual block with a conv shortcut) runs before one of its
  inputs exists; that input then enters one step late (the previous step's cache), and the executor returns
  the last node it ran, which is then not the output. Edge order cannot fix a conv shortcut, so it is refused.
* Several inputs are summed as `torch.stack(inputs).sum(0)`.
"""

from __future__ import annotations

import nir
import numpy as np
import torch

from . import Consumer
from .common import below_f32, flatten_from_end, misordered_joins, refuse, sums_of_more_than_two

NAME = "norse"
FOUND_IN = "Norse 1.1.0"
IMPORTER = "norse.torch.from_nir"
DT = 1e-3  # from_nir's default dt; the file says so too, so from_nir(g, dt=g.metadata["dt"]) is the same
MAPPED = (nir.Input, nir.Output, nir.Affine, nir.Linear, nir.Conv2d, nir.Flatten, nir.LIF, nir.IF)


def _neuron_problem(n: nir.NIRNode, dt: float) -> str | None:
    if not np.allclose(n.v_reset, 0.0):
        return "v_reset != 0 (from_nir does not pass v_reset: Norse resets to 0)"
    if isinstance(n, nir.LIF) and not np.allclose(n.r, 1.0):
        return "r != 1 (from_nir ignores r; a model trained with decay_input=False has r = tau)"
    if isinstance(n, nir.IF) and not np.allclose(np.asarray(n.r) * dt, 1.0):
        return "r*dt != 1 (Norse's IAF adds its input unscaled)"
    return None


def _order_problems(graph: nir.NIRGraph) -> list[str]:
    return [f"{dst} (its input {src} would arrive one step late: nirtorch's GraphExecutor runs nodes "
            "depth first, not in dependency order, and no edge order fixes a residual block with a conv shortcut)"
            for dst, src in misordered_joins(graph).items()]


def _problems(graph: nir.NIRGraph) -> list[str]:
    dt = float(graph.metadata["dt"])
    out = []
    for name, n in graph.nodes.items():
        if isinstance(n, nir.AvgPool2d):
            out.append(f"{name} (nir.AvgPool2d: from_nir maps it to None and the executor skips it, unpooled)")
        elif not isinstance(n, MAPPED):
            out.append(f"{name} (nir.{type(n).__name__}: from_nir has no mapping for it)")
        elif isinstance(n, nir.LIF | nir.IF) and (why := _neuron_problem(n, dt)):
            out.append(f"{name} (nir.{type(n).__name__}: {why})")
    return out + sums_of_more_than_two(graph, "Norse sums torch.stack of them in the executor's node order") \
        + _order_problems(graph)


def norse_tau(tau: np.ndarray, dt: float) -> np.ndarray:
    """tau for Norse's dt such that its float32 step factor `DT * (1/float32(tau))` equals the canonical
    `float32(dt/tau)`, the factor spikingjelly divides by; a plain rescale is often one float32 step off."""
    tau = np.asarray(tau, dtype=np.float64)
    out = tau * (DT / dt)
    for t in np.unique(tau):
        want = torch.tensor(dt / t, dtype=torch.float32)
        c = np.float32(t * (DT / dt))
        below, above = c, c
        for _ in range(8):  # the exact factor, if any, is within a few float32 steps of the plain rescale
            hit = next((x for x in (below, above) if DT * (1 / torch.tensor(x)) == want), None)
            if hit is not None:
                out[tau == t] = float(hit)
                break
            below, above = np.nextafter(below, np.float32(0)), np.nextafter(above, np.float32(np.inf))
    return out


def rewrite(graph: nir.NIRGraph) -> nir.NIRGraph:
    """The rewrite alone, without the refusals (tests use it to show that a refused graph runs wrong)."""
    dt = float(graph.metadata["dt"])
    for n in graph.nodes.values():
        if isinstance(n, nir.LIF):
            n.tau = norse_tau(n.tau, dt)
            n.v_threshold = below_f32(n.v_threshold)
        elif isinstance(n, nir.IF):
            n.r = np.asarray(n.r, dtype=np.float64) * (dt / DT)
            n.v_threshold = below_f32(n.v_threshold)
        elif isinstance(n, nir.Flatten):
            flatten_from_end(n)
    graph.metadata.update({
        "dt": DT, "time_unit": "s",
        "threshold_comparison": "Norse fires on v - v_th > 0; v_threshold is one float32 step below the trained "
                                "threshold, so it fires where v >= it",
    })
    return graph


def adapt(graph: nir.NIRGraph) -> nir.NIRGraph:
    refuse(NAME, FOUND_IN, IMPORTER, _problems(graph))
    return rewrite(graph)


CONSUMER = Consumer(
    name=NAME, package="norse", importer=IMPORTER, adapt=adapt,
    conventions="dt = 1e-3 s (from_nir's default: tau scaled so that Norse's float32 dt/tau is the trained one); "
                "v_threshold one float32 step lower for its strict v > v_th; Flatten dims counted from the end; "
                "AvgPool2d, r != 1, v_reset != 0 and joins the depth-first executor runs early refused",
)
