"""CIFAR-style ResNet-18/19/34, spiking and ANN (docs/training.md#models---model-neurodistill-models).

The neuron comes after the residual add: `act(BN(conv2(act(BN(conv1 x)))) + shortcut(x))`,
so a residual add is a sum of synaptic input into one population (what Loihi 2 can run).
"""

from __future__ import annotations

from torch import nn

from .base import Act, Net, activation, classifier_head, conv_bn
from .neurons import NeuronConfig
from .registry import register_twins


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, act: Act) -> None:
        super().__init__()
        self.conv1, self.bn1 = conv_bn(cin, cout, 3, stride)
        self.sn1 = act()
        self.conv2, self.bn2 = conv_bn(cout, cout, 3, 1)
        self.shortcut = (
            nn.Sequential(*conv_bn(cin, cout, 1, stride, 0)) if stride != 1 or cin != cout else nn.Sequential()
        )
        self.sn2 = act()

    def forward(self, x):
        out = self.sn1(self.bn1(self.conv1(x)))
        return self.sn2(self.bn2(self.conv2(out)) + self.shortcut(x))


def _stages(cin: int, widths, blocks, strides, act: Act) -> list[nn.Module]:
    layers = []
    for width, n, stride in zip(widths, blocks, strides, strict=True):
        for i in range(n):
            layers.append(BasicBlock(cin, width, stride if i == 0 else 1, act))
            cin = width
    return layers


def cifar_resnet(blocks, num_classes: int, in_channels: int, neuron: NeuronConfig | None) -> Net:
    """ResNet-18 ([2,2,2,2]) or -34 ([3,4,6,3]): 3x3 stem to 64, no max pool."""
    act = activation(neuron)
    body = nn.Sequential(
        *conv_bn(in_channels, 64), act(),
        *_stages(64, (64, 128, 256, 512), blocks, (1, 2, 2, 2), act),
        *classifier_head(512, num_classes),
    )
    return Net(body, spiking=neuron is not None)


def cifar_resnet19(num_classes: int, in_channels: int, neuron: NeuronConfig | None) -> Net:
    """ResNet-19: stem to 128, stages [3,3,2], average pool, Linear(512,256), act, Linear(256,K)."""
    from spikingjelly.activation_based import layer

    act = activation(neuron)
    body = nn.Sequential(
        *conv_bn(in_channels, 128), act(),
        *_stages(128, (128, 256, 512), (3, 3, 2), (1, 2, 2), act),
        *classifier_head(512, 256), act(),
        layer.Linear(256, num_classes),
    )
    return Net(body, spiking=neuron is not None)


register_twins("resnet18", lambda k, c, n: cifar_resnet((2, 2, 2, 2), k, c, n), "ResNet-18 (CIFAR style)")
register_twins("resnet34", lambda k, c, n: cifar_resnet((3, 4, 6, 3), k, c, n), "ResNet-34 (CIFAR style)")
register_twins("resnet19", cifar_resnet19, "ResNet-19 (CIFAR style)")
