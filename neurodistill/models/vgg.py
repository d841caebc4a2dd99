"""VGG-11/16, CIFAR style: conv 3x3 + BN + act, average pooling (exportable to Loihi as sum-pool)."""

from __future__ import annotations

from torch import nn

from .base import Net, activation, classifier_head, conv_bn
from .neurons import NeuronConfig
from .registry import register_twins

CONFIGS = {
    "vgg11": (64, "P", 128, "P", 256, 256, "P", 512, 512, "P", 512, 512, "P"),
    "vgg16": (64, 64, "P", 128, 128, "P", 256, 256, 256, "P", 512, 512, 512, "P", 512, 512, 512, "P"),
}


def vgg(cfg, num_classes: int, in_channels: int, neuron: NeuronConfig | None) -> Net:
    from spikingjelly.activation_based import layer

    act = activation(neuron)
    layers: list[nn.Module] = []
    cin = in_channels
    for v in cfg:
        if v == "P":
            layers.append(layer.AvgPool2d(2))
        else:
            layers += [*conv_bn(cin, v), act()]
            cin = v
    # The adaptive pool makes the head independent of the input size (1x1 already at 32x32).
    return Net(nn.Sequential(*layers, *classifier_head(cin, num_classes)), spiking=neuron is not None)


for _name, _cfg in CONFIGS.items():
    register_twins(_name, lambda k, c, n, cfg=_cfg: vgg(cfg, k, c, n), f"{_name.upper()[:3]}-{_name[3:]} (CIFAR style)")
