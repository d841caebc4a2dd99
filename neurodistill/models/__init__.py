"""Spiking models and their ANN twins, by name (`neurodistill models` lists them)."""

# every family registers its models on import: imported here, so the registry never imports them
from . import resnet, sew_resnet, small, vgg  # noqa: E402, F401, I001
from .neurons import NeuronConfig, make_neuron, select_backend
from .registry import ModelSpec, create_model, get_spec, list_models, register_model

__all__ = ["ModelSpec", "NeuronConfig", "create_model", "get_spec", "list_models", "make_neuron", "register_model", "select_backend"]
