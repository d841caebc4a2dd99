"""The model's forward as the exported Loihi 2 network computes it, with straight-through gradients.

Inside `Deployment.active()` the model's own modules are swapped (as rate backprop swaps
neuron forwards), so its forward, the methods' hooks and extra passes all see the deployed
network:

- every conv/linear returns its integer accumulation `Q * x` over the weight grid, divided by
  its population's power-of-two scale `s` (exact in float: integers times a power of two), and
  one of a population's synapse modules adds the population's 13-bit bias mantissa `B / s`;
  BatchNorm is folded into them with its running statistics and runs as identity (the
  statistics stay frozen in a fine-tune; `learn_bn_stats` updates them as float training would);
  pooling runs as it is (a window's sum is recovered exactly from its mean);
- the encoding layer computes the host's float64 current and rounds it to the bias mantissa
  with the encoding scale fixed at the start (from calibration samples, as export chooses it);
- every LIF/IF neuron runs Loihi's CUBA update in integer units of `v`: truncating decay
  `trunc(v (4096 - vDecay) / 4096)`, input `(a + B) << 6`, 24-bit saturation, spike on
  `v > vThMant << 6`, reset to 0, latency-free (the export's staggered reset makes the
  deployed network this one delayed); the spike's gradient is the neuron's own surrogate at
  the float membrane `(v - vth) / (64 s tau')`;
- the model's output per step is the readout's input `(a + B) / s`: its sum over the steps is
  the readout voltage Loihi ends with, divided by `64 s` (until that voltage would saturate).

Rounding, truncation and saturation pass gradients straight through; clipping to the weight
grid and the bias range passes none. Scales of on-chip populations are recomputed at each
forward from the live weights with the export's `population_scale`, so export reproduces
them; every value is computed in float64 from a float32 copy of the parameters, as capture
folds them, so the integers are the export's (tests/test_qat_forward.py).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from ..core.quantize import weight_grid
from .neuron import neuron_forward
from .neuron import record as record_neuron
from .plan import Plan, PopPlan, build_plan
from .ste import quantize_ste, ste
from .swap import SwappedForwards
from .values import PopValues, calibrate_encoding, deployed_values

Tensor = torch.Tensor


class Deployment:
    """Quantization-aware training state of one model: plan, weight bits, the encoding scale.

    `active(model)` runs the model as deployed; `scales(model)` gives every population's scale
    for the current weights (what the checkpoint stores and export uses).
    """

    def __init__(self, plan: Plan, weight_bits: int, encoding_scale: float) -> None:
        weight_grid(weight_bits)  # a ValueError for bits outside 2..8
        self.plan = plan
        self.weight_bits = weight_bits
        self.encoding_scale = float(encoding_scale)
        # False (a fine-tune): BatchNorm's running statistics stay the float model's. True (training
        # from the start): in training mode each BatchNorm's statistics follow the float output of
        # its conv/linear on the deployed network's own inputs, as float training would update them.
        self.learn_bn_stats = False

    @classmethod
    def for_model(cls, model: nn.Module, input_shape: tuple[int, ...], weight_bits: int, x_calib: Tensor,
                  encoding_scale: float | None = None) -> Deployment:
        """Plan the model; the encoding scale is `encoding_scale` (a checkpoint's) or export's
        choice on the calibration inputs `x_calib (N, *input_shape)`."""
        plan = build_plan(model, input_shape)
        if encoding_scale is None:
            encoding_scale = calibrate_encoding(model, input_shape, weight_bits, x_calib)
        return cls(plan, weight_bits, encoding_scale)

    def state(self, model: nn.Module) -> dict:
        """What a checkpoint stores: plain Python."""
        return {"target": "loihi2", "weight_bits": self.weight_bits, "encoding_scale": self.encoding_scale,
                "input_shape": list(self.plan.input_shape), "scales": self.scales(model)}

    def values(self, model: nn.Module) -> dict:
        """Per term the straight-through integer weights, per population its `PopValues`."""
        return deployed_values(self.plan, self.weight_bits, self.encoding_scale, model)

    def scales(self, model: nn.Module) -> dict[str, float]:
        with torch.no_grad():
            return {k: v.scale for k, v in self.values(model)["pops"].items()}

    @contextmanager
    def active(self, model: nn.Module):
        """Run `model` as deployed inside the block (its modules' forwards swapped, BN frozen)."""
        forwards = SwappedForwards(self.plan, model, self.values, lambda: self.learn_bn_stats)
        try:
            forwards.install()
            yield self
        finally:
            forwards.restore()

    def _neuron(self, node: nn.Module, p: PopPlan | None, pv: PopValues, x: Tensor) -> Tensor:
        """The deployed neuron's spikes for the input `x (T, ...)` (`p` is not needed)."""
        return neuron_forward(node, pv, x)

    def record(self, node: nn.Module, pv: PopValues, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Rate backprop's spike pass through the deployed neuron: (spikes, rate, eligibility)."""
        return record_neuron(node, pv, x)


__all__ = ["Deployment", "PopValues", "build_plan", "calibrate_encoding", "quantize_ste", "ste"]
