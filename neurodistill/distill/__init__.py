"""Distillation methods: pure loss functions over `[T, B, K]` logits."""

from ..errors import MethodError
from .losses import METHODS, TSER_ABLATION, LossConfig, entropy, kl


def get_method(name: str):
    """(loss function, needs_teacher) for a method name, or a MethodError listing the methods."""
    if name not in METHODS:
        raise MethodError(f"unknown method {name!r}; available: {', '.join(METHODS)}")
    return METHODS[name]


__all__ = ["METHODS", "TSER_ABLATION", "LossConfig", "entropy", "get_method", "kl"]
