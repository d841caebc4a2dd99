"""Map the float deployment graph to Loihi 2 CUBA neurons and quantize it (docs/loihi2.md#spikingjelly-lif-to-cuba-lif).

spikingjelly's LIF and IF have no synaptic current, so their populations get `iDecay = 4096`
(u = a << 6 each step); a CUBALIFNode's current decay maps to `iDecay = round(4096 (1 - c_decay))`
and its `vDecay = round(4096 (1 - v_decay))`, its weights and threshold as decay_input=False LIF
(`check_cuba` says what has no exact form). With a per-population power-of-two scale s (weight LSBs per float unit):

- decay_input=True LIF: `v_loihi = 64 tau s V`, so weights and bias keep scale s and the
  threshold becomes `tau s (V_th - V_reset)`; decay_input=False and IF: `v_loihi = 64 s V`;
- a hard reset to V_reset != 0 is a shift of the state (leak toward 0, reset to 0);
- `vDecay = round(4096 / tau)` (0 for IF and the readout, which integrates and never fires);
- Loihi fires on `v > vth << 6`, spikingjelly on `H >= V_th`: without leak every state is a
  multiple of 64 and `vth = ceil(theta) - 1` is exact; with leak `round(theta)` leaves an
  error only when v lands exactly on the threshold.

The encoding population's input is the host-computed encoding current, given to Loihi as a
per-sample bias: its scale is chosen so the calibration currents fit the 13-bit bias mantissa.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import UnsupportedLayerError
from .bias_source import SOURCE, add_bias_sources
from .graph import DeployGraph, Population
from .quantize import (
    BIAS_BITS,
    DECAY_UNITY,
    V_TH_MAX,
    power_of_two_scale,
    quantize_signed,
    quantize_weights,
    weight_grid,
)


@dataclass
class LayerReport:
    name: str
    scale: float
    weight_bits: int
    weight_clipped: float
    bias_clipped: float
    threshold_float: float
    v_th_mant: int
    v_decay: int
    notes: list[str] = field(default_factory=list)


def threshold_units(p: Population) -> float:
    """Threshold relative to reset, in 'float units times v-scale' (multiply by s for LSBs)."""
    n = p.neuron
    vr = n.v_reset or 0.0
    tau = n.tau if (n.kind == "lif" and n.decay_input) else 1.0
    return tau * (n.v_threshold - vr)


def v_decay(p: Population) -> int:
    return round(DECAY_UNITY / p.neuron.tau) if p.neuron.kind in ("lif", "cuba") else 0


def i_decay(p: Population) -> int:
    """CUBALIFNode's current decay `1 - 1/tau_syn` as Loihi's iDecay; 4096 (no memory) for the rest."""
    return round(DECAY_UNITY / p.neuron.tau_syn) if p.neuron.kind == "cuba" else DECAY_UNITY


def check_cuba(graph: DeployGraph, bias_sources: bool = True) -> None:
    """Refuse what a CUBALIFNode population with a current decay cannot run exactly on Loihi 2.

    Loihi adds a bias (and the host's encoding current, given as the encoding population's bias)
    to v every step; spikingjelly adds it to the decaying current, where it builds up as
    b (1 - c_decay^t) / (1 - c_decay): a synapse bias is exact through a bias source population
    (`bias_source`; refused where `bias_sources` is False), the host's per-sample current is not.
    CUBALIFNode's v leaks toward 0, so only a reset to 0 maps.
    """
    encoding = graph.encoding[0].target if graph.encoding else None
    for p in graph.populations:
        n = p.neuron
        if n.kind != "cuba":
            continue
        where = f"{p.name}: CUBALIFNode population"
        if not (n.tau >= 1 and n.tau_syn >= 1):
            raise UnsupportedLayerError(f"{where} needs c_decay and v_decay in [0, 1] for Loihi 2's iDecay and vDecay")
        if math.isinf(n.tau_syn):
            raise UnsupportedLayerError(f"{where} has c_decay = 1: a current that never decays sums its input "
                                        "without bound, past Loihi 2's 24-bit u; allowed: c_decay < 1")
        if n.v_reset not in (None, 0.0):
            raise UnsupportedLayerError(f"{where} with v_reset = {n.v_reset} and a leak toward 0 has no Loihi 2 form; allowed: v_reset = 0")
        if i_decay(p) == DECAY_UNITY:
            continue
        if p.name == encoding:
            raise UnsupportedLayerError(
                f"{where} fed by the analog input gets it as a bias into v on Loihi 2, which cannot "
                "build up a decaying current; allowed there: c_decay = 0 (tau_syn = 1), LIFNode or IFNode")
        if not bias_sources and np.any(graph.biases[p.name] != 0):
            raise UnsupportedLayerError(
                f"{where} with a synapse bias (or BatchNorm shift) into its decaying current (c_decay > 0) has no exact "
                "Loihi 2 form (its bias enters v); allowed: bias-free synapses without BatchNorm, or c_decay = 0")


def v_th_mant(theta: float, decay: int) -> int:
    return max(0, math.ceil(theta) - 1) if decay == 0 else int(round(theta))


def population_scale(theta: float, weight_bits: int, *, weight_max: float | None = None,
                     encoding_peak: float | None = None) -> float:
    """A population's power-of-two scale: the export's rule, shared with quantization-aware training.

    On-chip populations: the largest s with `weight_max * s` on the weight grid's top; the
    encoding population (give `encoding_peak`, its largest |current|): the largest s that fits the
    13-bit bias mantissa. Either way reduced until the threshold mantissa fits 17 bits.
    """
    if encoding_peak is not None:
        scale = power_of_two_scale(encoding_peak, 2 ** (BIAS_BITS - 1) - 1)
    else:
        scale = power_of_two_scale(weight_max or 0.0, weight_grid(weight_bits)[2])
    if theta * scale > V_TH_MAX:
        scale = power_of_two_scale(theta, V_TH_MAX)
    return scale


def quantize_graph(
    graph: DeployGraph,
    weight_bits: int = 8,
    encoding_max: float | None = None,
    accept_reset_approximation: bool = False,
    scales: dict[str, float] | None = None,
) -> list[LayerReport]:
    """Fill in the integer fields of `graph` in place; return one report per population.

    `encoding_max` is the largest |encoding current| seen on the calibration samples (float
    units); it sets the encoding population's scale. `scales` (population name -> scale) replaces
    the chosen scale of the populations it names: a quantization-aware-trained checkpoint's own.
    """
    soft = [p.name for p in graph.populations if p.neuron.kind != "readout" and p.neuron.v_reset is None]
    if soft and not accept_reset_approximation:
        raise UnsupportedLayerError(
            f"populations {soft} use soft reset (v_reset=None), which Loihi 2 cannot run (it always resets v to 0); "
            "retrain with --reset hard (the default), or pass --accept-reset-approximation to export anyway and "
            "see the accuracy change in the manifest"
        )
    check_cuba(graph)
    moved = add_bias_sources(graph)
    reports = []
    for p in graph.populations:
        chip_in = [s for s in graph.incoming(p.name) if not s.host]
        is_encoding = not chip_in and p.neuron.kind != "source"
        decay = 0 if p.neuron.kind == "readout" else v_decay(p)
        theta = threshold_units(p) if p.neuron.kind != "readout" else 0.0
        bias = graph.biases[p.name]
        if scales is not None and p.name in scales:
            scale = float(scales[p.name])
        elif p.neuron.kind == "source":
            scale = 1.0  # bias 1, threshold 0: v = 64 > 0, a spike every step
        elif is_encoding:
            # the per-sample current (encoding output incl. its bias) becomes the bias mantissa
            peak = encoding_max if encoding_max is not None else float(np.abs(bias).max())
            scale = population_scale(theta, weight_bits, encoding_peak=peak)
        else:
            scale = population_scale(theta, weight_bits, weight_max=max(float(np.abs(s.weight).max()) for s in chip_in))
        notes = []
        p.i_decay, p.v_decay = i_decay(p), decay
        w_clip, b_clip = _quantize_at(graph, p, scale, weight_bits, theta)
        if is_encoding:
            p.bias_mant = np.zeros(p.shape, np.int64)  # its per-sample current is the bias, set per sample
        if p.neuron.v_reset is None and p.neuron.kind != "readout":
            notes.append("soft reset approximated by Loihi's reset to 0")
        if p.name in moved:
            notes.append(f"bias into the decaying current through {SOURCE}'s synapse (on the weight grid)")
        if p.neuron.kind != "readout" and p.v_th_mant == 0:
            notes.append("threshold quantized to 0: the population fires on any positive input")
        reports.append(LayerReport(p.name, scale, weight_bits, w_clip, 0.0 if is_encoding else b_clip,
                                   float(theta), int(p.v_th_mant), int(decay), notes))
    return reports


def encoding_current(graph: DeployGraph, x) -> np.ndarray:
    """The host-side encoding layer's output (float) for a batch of static inputs `x (B, C, H, W)`."""
    import torch

    from .float_graph import synapse_forward

    enc = graph.encoding[0]
    pop = graph.population(enc.target)
    xt = torch.as_tensor(x, dtype=torch.float64)
    cur = torch.as_tensor(graph.biases[pop.name], dtype=torch.float64).expand(xt.shape[0], *pop.shape).clone()
    for s in graph.encoding:
        cur += synapse_forward(s, xt, torch.as_tensor(s.weight, dtype=torch.float64))
    return cur.numpy()


def encoding_bias(graph: DeployGraph, current: np.ndarray) -> tuple[np.ndarray, float]:
    """Per-sample bias mantissas of the encoding population (and the clipped fraction)."""
    pop = graph.population(graph.encoding[0].target)
    return quantize_signed(current * pop.scale, BIAS_BITS)


def rescale_population(graph: DeployGraph, report: LayerReport, scale: float) -> None:
    """Quantize one population fed on chip again at another power-of-two `scale` (export's range safety).

    The float mapping is the same; weights, bias and threshold are rounded again at `scale`, so
    the population's behaviour changes only by quantization. Not for the encoding population,
    whose bias is the per-sample host current."""
    p = graph.population(report.name)
    w_clip, b_clip = _quantize_at(graph, p, scale, report.weight_bits, report.threshold_float)
    report.scale, report.weight_clipped, report.bias_clipped = scale, w_clip, b_clip
    report.v_th_mant = int(p.v_th_mant)


def _quantize_at(graph: DeployGraph, p: Population, scale: float, weight_bits: int, theta: float) -> tuple[float, float]:
    """Weights into `p`, its bias and threshold on the integer grid of `scale` (its decays already
    set); returns the clipped fractions of weights and bias."""
    w_clip = 0.0
    for s in graph.incoming(p.name):
        if not s.host:
            s.weight_int, c = quantize_weights(s.weight, scale, weight_bits)
            w_clip = max(w_clip, c)
    b_int, b_clip = quantize_signed(graph.biases[p.name] * scale, BIAS_BITS)
    p.scale, p.bias_mant = scale, b_int.reshape(p.shape)
    # a decaying current leaves v off the multiples of 64 even without a v leak
    leak = p.v_decay or DECAY_UNITY - p.i_decay
    p.v_th_mant = V_TH_MAX if p.neuron.kind == "readout" else v_th_mant(theta * scale, leak)
    return w_clip, b_clip
