"""Model registry: `@register_model` factories and `create_model(name, **kwargs)` (as timm).

A leaf of the models package: the families (resnet, sew_resnet, small, vgg) import it to
register themselves, and `neurodistill/models/__init__.py` imports every family, so the registry
is full whenever the package is imported and never imports a family itself."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from ..errors import ModelError
from .neurons import NeuronConfig, loihi_cuba, make_neuron

READOUTS = ("voltage", "spikes")  # the classifier's output per step, or the spikes of a neuron after it


@dataclass(frozen=True)
class ModelSpec:
    name: str
    factory: Callable[..., nn.Module]
    spiking: bool
    description: str
    twin: str  # the ANN twin of a spiking model, or the spiking twin of an ANN


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(name: str, *, spiking: bool, twin: str, description: str):
    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = ModelSpec(name, fn, spiking, description, twin)
        return fn

    return deco


def list_models() -> list[ModelSpec]:
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def get_spec(name: str) -> ModelSpec:
    if name not in _REGISTRY:
        raise ModelError(
            f"unknown model {name!r}; available: {', '.join(sorted(_REGISTRY))} "
            "(run 'neurodistill models' for descriptions)"
        )
    return _REGISTRY[name]


def create_model(
    name: str,
    num_classes: int = 10,
    in_channels: int = 3,
    neuron: NeuronConfig | dict | None = None,
    readout: str = "voltage",
) -> nn.Module:
    """Build a registered model.

    `readout`: `voltage` (the classifier's output is the model's) or `spikes` (a neuron of the
    model's kind follows the classifier; its spikes are the output, the class the argmax of
    their counts).

    Shape:
        spiking: Input `(T, B, C, H, W)`, output logits (or output spikes) `(T, B, K)`, one vector per step.
        ANN: Input `(B, C, H, W)`, output `(B, K)`.
    """
    spec = get_spec(name)
    if num_classes < 1 or in_channels < 1:
        raise ModelError(f"model {name!r}: num_classes={num_classes}, in_channels={in_channels}; both must be >= 1")
    if readout not in READOUTS or (readout == "spikes" and not spec.spiking):
        raise ModelError(f"model {name!r}: readout {readout!r} is not allowed; allowed: "
                         f"{', '.join(READOUTS) if spec.spiking else 'voltage (an ANN has no spikes to count)'}")
    if spec.spiking:
        cfg = neuron if isinstance(neuron, NeuronConfig) else NeuronConfig.from_dict(neuron)
        model = spec.factory(num_classes=num_classes, in_channels=in_channels, neuron=cfg)
        if readout == "spikes":
            from spikingjelly.activation_based import functional

            model.output_neuron = make_neuron(cfg)
            functional.set_step_mode(model, "m")
        if cfg.kind == "cuba":
            loihi_cuba(model)
            if readout == "spikes":
                # the classifier feeds a CUBA neuron too: its bias would build up in a decaying current
                # (a bias source population on Loihi, and no network.net)
                [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)][-1].register_parameter("bias", None)
    else:
        model = spec.factory(num_classes=num_classes, in_channels=in_channels)
    model.model_name = name
    return model


def register_twins(name: str, build: Callable[..., nn.Module], label: str) -> None:
    """Register `snn_<name>` and its ANN twin `ann_<name>` from one `build(K, C, neuron|None)`."""
    register_model(f"snn_{name}", spiking=True, twin=f"ann_{name}", description=f"spiking {label}")(
        lambda num_classes, in_channels, neuron: build(num_classes, in_channels, neuron)
    )
    register_model(f"ann_{name}", spiking=False, twin=f"snn_{name}", description=f"ANN {label}, ReLU (teacher)")(
        lambda num_classes, in_channels: build(num_classes, in_channels, None)
    )
