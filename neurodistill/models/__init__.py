"""Spiking models and their ANN twins, by name (`neurodistill models` lists them)."""

from .neurons import NeuronConfig, make_neuron, select_backend
from .registry import ModelSpec, create_model, get_spec, list_models, register_model

__all__ = ["ModelSpec", "NeuronConfig", "create_model", "get_spec", "list_models", "make_neuron", "register_model", "select_backend"]
