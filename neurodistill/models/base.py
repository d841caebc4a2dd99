"""What spiking models and their ANN twins share: one graph definition serves both.

A model is built from spikingjelly's stateless layers (`layer.Conv2d`, `layer.BatchNorm2d`, ...)
and an activation factory. The ANN twin uses `nn.ReLU` and single-step layers; the spiking
model uses spikingjelly neurons and every layer in multi-step mode, so the time axis stays
first (`[T, B, ...]`) and stateless layers fold it into the batch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .neurons import NeuronConfig, make_neuron

Act = Callable[[], nn.Module]


def activation(neuron: NeuronConfig | None) -> Act:
    """ReLU for an ANN (neuron=None), else a factory of fresh spiking neurons."""
    if neuron is None:
        return lambda: nn.ReLU(inplace=False)
    return lambda: make_neuron(neuron)


class Net(nn.Module):
    """Root of every registered model.

    Shape:
        spiking: Input `(T, B, C, H, W)`, output `(T, B, K)`: the classifier's output per step, or
        with `output_neuron` (a spike-count readout, `--readout spikes`) that neuron's spikes.
        ANN: Input `(B, C, H, W)`, output `(B, K)`.
    """

    def __init__(self, body: nn.Module, spiking: bool) -> None:
        super().__init__()
        self.body = body
        self.spiking = spiking
        # outside `body`, so that its parameter names (and checkpoints) are the voltage readout's
        self.output_neuron: nn.Module | None = None
        if spiking:
            from spikingjelly.activation_based import functional

            functional.set_step_mode(self, "m")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.spiking:
            from spikingjelly.activation_based import functional

            # Each call is one whole sequence: start every neuron from rest.
            functional.reset_net(self)
        z = self.body(x)
        return z if self.output_neuron is None else self.output_neuron(z)


def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, padding: int | None = None) -> list[nn.Module]:
    from spikingjelly.activation_based import layer

    pad = k // 2 if padding is None else padding
    return [layer.Conv2d(cin, cout, k, stride, pad, bias=False), layer.BatchNorm2d(cout)]


def classifier_head(features: int, num_classes: int) -> list[nn.Module]:
    """Global average pool, flatten, linear: logits per time step for a spiking model."""
    from spikingjelly.activation_based import layer

    return [layer.AdaptiveAvgPool2d((1, 1)), layer.Flatten(1), layer.Linear(features, num_classes)]
