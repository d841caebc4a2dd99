"""SEW-ResNet-18/34 for ImageNet, assembled from spikingjelly's SEW BasicBlock (cnf='ADD').

ImageNet stem as in the SEW paper and torchvision: 7x7 stride-2 conv, BN, act, 3x3 max pool.
The ANN twin is the same graph with ReLU in place of every neuron.
"""

from __future__ import annotations

from torch import nn

from .base import Net, activation, conv_bn
from .neurons import NeuronConfig
from .registry import register_twins


def sew_resnet(blocks, num_classes: int, in_channels: int, neuron: NeuronConfig | None) -> Net:
    from spikingjelly.activation_based import layer
    from spikingjelly.activation_based.model.sew_resnet import BasicBlock

    act = activation(neuron)
    spiking_neuron = lambda **_: act()  # noqa: E731  spikingjelly passes neuron kwargs; ours are bound
    layers: list[nn.Module] = [*conv_bn(in_channels, 64, 7, 2, 3), act(), layer.MaxPool2d(3, 2, 1)]
    cin = 64
    for width, n, stride in zip((64, 128, 256, 512), blocks, (1, 2, 2, 2), strict=True):
        for i in range(n):
            s = stride if i == 0 else 1
            down = nn.Sequential(*conv_bn(cin, width, 1, s, 0)) if s != 1 or cin != width else None
            layers.append(BasicBlock(cin, width, s, down, cnf="ADD", spiking_neuron=spiking_neuron))
            cin = width
    layers += [layer.AdaptiveAvgPool2d((1, 1)), layer.Flatten(1), layer.Linear(512, num_classes)]
    return Net(nn.Sequential(*layers), spiking=neuron is not None)


register_twins("sew_resnet18", lambda k, c, n: sew_resnet((2, 2, 2, 2), k, c, n), "SEW-ResNet-18 (ImageNet, ADD)")
register_twins("sew_resnet34", lambda k, c, n: sew_resnet((3, 4, 6, 3), k, c, n), "SEW-ResNet-34 (ImageNet, ADD)")
