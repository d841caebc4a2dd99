"""snnTorch 1.0.0's `snntorch.import_nir.import_from_nir(graph)`: the canonical graph at dt = 1e-4 s.

What the importer reads (snntorch/import_nir.py, `_nir_to_snntorch_module`; the graph is wired by
nirtorch 2.6's `nir_to_torch`, nirtorch/nir_interpreter.py):

* `nir.LIF` -> `snn.Leaky(beta = 1 - dt/tau, threshold = v_threshold / (r*dt/tau), reset_mechanism="zero",
  reset_delay=False, init_hidden=True)` with dt fixed at 1e-4 whatever the file says. Dividing the threshold
  by the input gain `r*dt/tau` instead of scaling the input is exact for `v_leak = v_reset = 0` (the membrane
  is `v*tau/(r*dt)`); `v_leak != 0` is an assertion, `v_reset` is ignored (always reset to 0), a threshold or
  gain that varies within the layer is an assertion or silently takes the first value.
* Spikes: `Leaky.fire` is `(mem - threshold) > 0`, strictly greater (surrogate.ATan.forward).
* `nir.IF` -> `snn.Leaky(beta=0.9, init_hidden=False)`: a leaky neuron, reset by subtraction, that returns a
  tuple the next module cannot take; no rewrite of the file avoids it.
* `nir.Flatten` -> `torch.nn.Flatten(start_dim, end_dim)` on the per-step input `[B, ...]`: dims count the
  batch axis, so the canonical dims (without batch) are rewritten to count from the end (valid both ways).
* Conv2d, Affine (Linear + bias), Linear, AvgPool2d map one to one; Conv2d's `input_shape` is not read.
* Several edges into one node are summed by `torch.add`, in the order of a Python set of edges.
"""

from __future__ import annotations

import nir
import numpy as np

from . import Consumer
from .common import below_f32, flatten_from_end, refuse, sums_of_more_than_two, uniform

NAME = "snntorch"
FOUND_IN = "snnTorch 1.0.0"
IMPORTER = "snntorch.import_nir.import_from_nir"
DT = 1e-4  # hard-coded in every branch of _nir_to_snntorch_module
MAPPED = (nir.Input, nir.Output, nir.Affine, nir.Linear, nir.Conv2d, nir.Flatten, nir.AvgPool2d, nir.LIF)


# ----------------------------------------------------------------------------- snnTorch


def _lif_problem(n: nir.LIF) -> str | None:
    if not np.allclose(n.v_leak, 0.0) or not np.allclose(n.v_reset, 0.0):
        return "v_leak/v_reset != 0 (snnTorch asserts v_leak = 0 and always resets to 0)"
    if not uniform(n.v_threshold) or not uniform(n.r / n.tau):
        return "v_threshold or r/tau varies within the layer (snnTorch takes one threshold and one input gain per layer)"
    return None


def _problems(graph: nir.NIRGraph) -> list[str]:
    out = []
    for name, n in graph.nodes.items():
        if isinstance(n, nir.IF):
            out.append(f"{name} (nir.IF: snnTorch 1.0.0 builds it as Leaky(beta=0.9) with reset by subtraction and "
                       "init_hidden=False, a leaky neuron whose (spikes, mem) output the next layer cannot take)")
        elif not isinstance(n, MAPPED):
            out.append(f"{name} (nir.{type(n).__name__}: import_from_nir has no mapping for it)")
        elif isinstance(n, nir.LIF) and (why := _lif_problem(n)):
            out.append(f"{name} (nir.LIF: {why})")
    return out + sums_of_more_than_two(graph, "nirtorch adds them in the order of a Python set")


def adapt(graph: nir.NIRGraph) -> nir.NIRGraph:
    refuse(NAME, FOUND_IN, IMPORTER, _problems(graph))
    scale = DT / float(graph.metadata["dt"])
    for n in graph.nodes.values():
        if isinstance(n, nir.LIF):
            # Same dt/tau, hence the same beta and input gain, at the importer's fixed dt.
            n.tau = np.asarray(n.tau, dtype=np.float64) * scale
            gain = n.r * DT / n.tau  # exactly the importer's w_scale
            n.v_threshold = below_f32(n.v_threshold / gain) * gain
        elif isinstance(n, nir.Flatten):
            flatten_from_end(n)
    graph.metadata.update({
        "dt": DT, "time_unit": "s",
        "threshold_comparison": "snnTorch fires on mem > threshold; v_threshold is one float32 step below the "
                                "trained threshold (after snnTorch divides it by r*dt/tau), so it fires where v >= it",
    })
    return graph


CONSUMER = Consumer(
    name=NAME, package="snntorch", importer=IMPORTER, adapt=adapt,
    conventions="dt = 1e-4 s (snnTorch's fixed dt: tau scaled to keep dt/tau); v_threshold one float32 step "
                "lower for its strict v > threshold; Flatten dims counted from the end; nir.IF refused",
)
