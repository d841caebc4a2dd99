"""Small nets for the built-in 8x8 digits: fast enough to train on a 2-core CPU in seconds.

conv3x3(C->16) BN act, conv3x3 stride 2 (16->32) BN act, flatten, linear(32*4*4 -> K).
Chain topology, no pooling: it exports to a netx `.net` as it is.
"""

from __future__ import annotations

from torch import nn

from .base import Net, activation, conv_bn
from .neurons import NeuronConfig
from .registry import register_twins


def digits_net(num_classes: int, in_channels: int, neuron: NeuronConfig | None, size: int = 8) -> Net:
    from spikingjelly.activation_based import layer

    act = activation(neuron)
    body = nn.Sequential(
        *conv_bn(in_channels, 16), act(),
        *conv_bn(16, 32, 3, 2), act(),
        layer.Flatten(1),
        layer.Linear(32 * (size // 2) ** 2, num_classes),
    )
    return Net(body, spiking=neuron is not None)


register_twins("digits", digits_net, "small conv net for 8x8 digits")
