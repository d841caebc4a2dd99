"""The deployed integers of the live weights: per term the weight mantissas, per population its
power-of-two scale, decay, threshold and bias mantissa (export's own choices)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..core.graph import Population
from ..core.loihi2 import i_decay, population_scale, threshold_units, v_decay, v_th_mant
from ..core.quantize import DECAY_UNITY, V_TH_MAX, weight_grid
from ..errors import UnsupportedLayerError
from .plan import Plan, PopPlan, fold_bias, fold_weight
from .ste import BIAS_HI, BIAS_LO, quantize_ste

Tensor = torch.Tensor


@dataclass
class PopValues:
    """One population's integers at this forward (Loihi units)."""

    scale: float
    v_decay: int
    v_th_mant: int
    tau_factor: float  # v_loihi = 64 s tau' V_float
    bias: Tensor  # mantissa, straight-through, float64, full shape (zeros for the encoding population)
    i_decay: int = 4096  # CUBALIFNode's current decay (4096: no current memory)


def as_population(p: PopPlan) -> Population:
    return Population(p.name, p.shape, p.neuron)


def deployed_values(plan: Plan, weight_bits: int, encoding_scale: float, model: nn.Module) -> dict:
    """Per term the straight-through integer weights, per population its `PopValues`."""
    modules = dict(model.named_modules())
    dev = next(model.parameters()).device
    folded = {n: fold_weight(t, modules, dev) for n, t in plan.terms.items()}
    weights: dict[str, Tensor] = {}
    pops: dict[str, PopValues] = {}
    for p in plan.populations:
        theta = threshold_units(as_population(p)) if p.neuron.kind != "readout" else 0.0
        chip = [n for n in p.terms if not plan.terms[n].host]
        if p.encoding:
            scale = encoding_scale
        else:
            scale = population_scale(theta, weight_bits,
                                     weight_max=max(float(folded[n].detach().abs().max()) for n in chip))
        weights.update(_term_weights(plan, p, folded, scale, weight_bits))
        pops[p.name] = _pop_values(p, modules, theta, scale, dev)
    return {"weights": weights, "pops": pops}


def _term_weights(plan: Plan, p: PopPlan, folded: dict[str, Tensor], scale: float, weight_bits: int) -> dict:
    step, lo, hi = weight_grid(weight_bits)
    weights: dict[str, Tensor] = {}
    for n in p.terms:
        t = plan.terms[n]
        if t.host:
            weights[n] = folded[n]  # the host computes the encoding current in float
            continue
        weights[n] = quantize_ste(folded[n] * scale, step, lo, hi)
        if t.kind == "identity" and not bool((weights[n].detach() == scale).all()):
            raise UnsupportedLayerError(
                f"{n}: the identity shortcut's weight 1 quantizes to {float(weights[n].detach().flatten()[0]):g} "
                f"at scale {scale:g} with {weight_bits}-bit weights, which quantization-aware training "
                "cannot express through the model's own add; use more weight bits")
    return weights


def _pop_values(p: PopPlan, modules: dict[str, nn.Module], theta: float, scale: float, dev) -> PopValues:
    decay = 0 if p.neuron.kind == "readout" else v_decay(as_population(p))
    if p.encoding:
        bias = torch.zeros(p.shape, dtype=torch.float64, device=dev)
    else:
        bias = quantize_ste(fold_bias(p.bias_expr, modules, p.shape) * scale, 1, BIAS_LO, BIAS_HI)
    n = p.neuron
    tf = n.tau if (n.kind == "lif" and n.decay_input) else 1.0
    idecay = i_decay(as_population(p))
    # as quantize_graph: a decaying current leaves v off the multiples of 64 like a v leak
    vth = V_TH_MAX if n.kind == "readout" else v_th_mant(theta * scale, decay or DECAY_UNITY - idecay)
    return PopValues(scale, decay, vth, tf, bias, idecay)


def calibrate_encoding(model: nn.Module, input_shape: tuple[int, ...], weight_bits: int, x_calib: Tensor) -> float:
    """The encoding population's scale export would choose on these calibration inputs."""
    from ..core.capture import capture
    from ..core.loihi2 import encoding_current

    graph = capture(model, input_shape)
    current = encoding_current(graph, x_calib.detach().cpu().numpy())
    pop = graph.population(graph.encoding[0].target)
    return population_scale(threshold_units(pop), weight_bits, encoding_peak=float(np.abs(current).max()))
