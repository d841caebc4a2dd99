"""NIR's CubaLIF with a synaptic current that decays (tau_syn > dt), read as each exporter computes it.

Every framework runs the same two-state update, with its own gains (read in their installed sources):

    c[t] = a_c c[t-1] + g_c x[t]
    v[t] = a_v v[t-1] + g_v c[t] + (1 - a_v) v_leak,   spike when v crosses v_threshold, v -> v_reset

* forward Euler of NIR's ODEs (`tau_syn dI/dt = -I + w_in x`, `tau_mem dv/dt = v_leak - v + r I`),
  what neurodistill, spikingjelly 2.0 (`map_cuba_lif`) and snnTorch 1.0 (`Synaptic`) write:
  `a_c = 1 - dt/tau_syn`, `g_c = w_in dt/tau_syn`, `a_v = 1 - dt/tau_mem`, `g_v = r dt/tau_mem`.
  spikingjelly writes `w_in = tau_syn/dt`, `r = tau_mem/dt` and snnTorch the same, so both get
  unit gains: CUBALIFNode's `c = c_decay c + x; v = v_decay v + c` and Synaptic's
  `syn = alpha syn + x; mem = beta mem + syn`, exactly.
* Norse 1.1 (`LIFCell`, `lif_feed_forward_step`): the input jumps into the current unscaled
  (`i += x`), v integrates it by forward Euler (`v += dt tau_mem_inv (v_leak - v + i)`), then i
  decays: `a_c = 1 - dt/tau_syn`, `g_c = w_in` (1: Norse has none), `g_v = r dt/tau_mem`. Its
  exporter writes `dt/tau_*_inv`, dt times the true constants (norse/norse#411): read as Norse
  computes it, `tau = tau_file/dt`, as for its LIF.

With `v_leak = 0` the update is linear below the threshold, so v divided by `g = g_c g_v` is
spikingjelly's unit-gain CUBALIFNode with threshold and reset divided by g: that is the
canonical node returned (dt = one step, `tau_syn`, `tau_mem` in steps, `w_in = tau_syn`,
`r = tau_mem`, `v_leak = 0`, neurodistill's own CubaLIF convention), which `cuba_module` builds.
"""

from __future__ import annotations

import math
from typing import Any

import nir

from ...errors import UnsupportedLayerError
from .params import filled, uniform

REL = 1e-5  # exporters write float32


def read_cuba(name: str, node: Any, source: str, dt: float) -> nir.CubaLIF:
    """The canonical (dt = one step) CubaLIF of `node`, written by `source`'s exporter with step `dt` seconds."""
    tau_syn, tau_mem = uniform(name, node, "tau_syn"), uniform(name, node, "tau_mem")
    if source == "norse":
        tau_syn, tau_mem = tau_syn / dt, tau_mem / dt  # norse/norse#411
    if source == "sinabs":
        raise UnsupportedLayerError(f"NIR node {name!r} (CubaLIF) from sinabs: sinabs writes no CubaLIF that this "
                                    "reader knows the discretization of; allowed from sinabs: LIF, IF")
    if not (tau_syn >= dt and tau_mem >= dt):
        raise UnsupportedLayerError(
            f"NIR node {name!r} (CubaLIF): tau_syn = {tau_syn:g} s, tau_mem = {tau_mem:g} s with dt = {dt:g} s; "
            f"a CUBA neuron decays by a factor in [0, 1] per step only with time constants >= dt (check --source-dt)")
    a_c, a_v = 1.0 - dt / tau_syn, 1.0 - dt / tau_mem
    w_in, r = uniform(name, node, "w_in"), uniform(name, node, "r")
    g_c = w_in if source == "norse" else w_in * dt / tau_syn
    g = g_c * r * dt / tau_mem
    v_leak = uniform(name, node, "v_leak")
    v_reset = uniform(name, node, "v_reset") if node.v_reset is not None else 0.0
    if v_leak != 0.0:
        raise UnsupportedLayerError(f"NIR node {name!r} (CubaLIF): v_leak = {v_leak:g}; spikingjelly's CUBALIFNode "
                                    "and Loihi 2 leak toward 0; allowed: v_leak = 0")
    if not g > 0:
        raise UnsupportedLayerError(f"NIR node {name!r} (CubaLIF): input gain w_in*r*... = {g:g} per step; allowed: > 0")
    steps_syn, steps_mem = 1.0 / (1.0 - a_c) if a_c < 1 else math.inf, 1.0 / (1.0 - a_v) if a_v < 1 else math.inf
    return nir.CubaLIF(tau_syn=filled(node, "tau_mem", steps_syn), tau_mem=filled(node, "tau_mem", steps_mem), r=filled(node, "tau_mem", steps_mem),
                       v_leak=filled(node, "tau_mem", 0.0), v_threshold=filled(node, "tau_mem", uniform(name, node, "v_threshold") / g),
                       v_reset=filled(node, "tau_mem", v_reset / g), w_in=filled(node, "tau_mem", steps_syn))


def cuba_module(n: nir.CubaLIF, dt: float):
    """spikingjelly's multi-step CUBALIFNode of a CubaLIF in neurodistill's convention (`conventions`)."""
    from spikingjelly.activation_based import neuron

    tau_syn, tau_mem = uniform("CubaLIF", n, "tau_syn") / dt, uniform("CubaLIF", n, "tau_mem") / dt
    w_in, r, v_leak = uniform("CubaLIF", n, "w_in"), uniform("CubaLIF", n, "r"), uniform("CubaLIF", n, "v_leak")
    if not (tau_syn >= 1 and tau_mem >= 1 and math.isclose(w_in, tau_syn, rel_tol=REL)
            and math.isclose(r, tau_mem, rel_tol=REL) and v_leak == 0.0):
        raise UnsupportedLayerError(
            f"nir.CubaLIF(tau_syn/dt={tau_syn:g}, tau_mem/dt={tau_mem:g}, w_in={w_in:g}, r={r:g}, v_leak={v_leak:g}) is "
            "not a spikingjelly CUBALIFNode; allowed: w_in = tau_syn/dt, r = tau_mem/dt, v_leak = 0, time constants >= dt")
    v_reset = uniform("CubaLIF", n, "v_reset") if n.v_reset is not None else 0.0
    node = neuron.CUBALIFNode(c_decay=1.0 - 1.0 / tau_syn, v_decay=1.0 - 1.0 / tau_mem,
                              v_threshold=uniform("CubaLIF", n, "v_threshold"), v_reset=v_reset)
    node.step_mode = "m"
    return node
