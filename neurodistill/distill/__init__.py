"""Distillation methods: pure loss functions over `[T, B, K]` logits, and each method's training step."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import nn

from ..errors import MethodError
from .losses import METHODS, TSER_ABLATION, LossConfig, entropy, kl
from .step import LogitStep, MethodStep, StepOutput, Trainee
from .tssd import TssdConfig, TssdStep, loss_tssd

if TYPE_CHECKING:
    from ..config import TrainConfig

# Methods that own their training step (extra passes, auxiliary modules): name -> needs an ANN teacher.
STEP_METHODS = {"tssd": False}


def method_names() -> list[str]:
    return [*METHODS, *STEP_METHODS]


def needs_teacher(name: str) -> bool:
    """Whether a method needs an ANN teacher, or a MethodError listing the methods."""
    if name in METHODS:
        return METHODS[name][1]
    if name in STEP_METHODS:
        return STEP_METHODS[name]
    raise MethodError(f"unknown method {name!r}; available: {', '.join(method_names())}")


def get_method(name: str):
    """(loss function, needs_teacher) for a logit-loss method, or a MethodError listing the methods.

    A method in STEP_METHODS has no loss of that signature: build its step with `build_step`.
    """
    if name not in METHODS:
        needs_teacher(name)  # unknown: the error lists every method
        raise MethodError(f"method {name!r} owns its training step; use build_step, not get_method")
    return METHODS[name]


def build_step(cfg: TrainConfig, model: nn.Module, inputs: Any, input_shape: tuple[int, ...], num_classes: int,
               teacher: nn.Module | None = None) -> MethodStep:
    """The training step of `cfg.method` for this model and dataset."""
    if cfg.method == "tssd":
        return TssdStep(model, cfg.tssd, inputs, input_shape, num_classes, cfg.model)
    loss_fn, _ = get_method(cfg.method)
    return LogitStep(loss_fn, cfg.loss, inputs, teacher)


__all__ = ["METHODS", "STEP_METHODS", "TSER_ABLATION", "LogitStep", "LossConfig", "MethodStep", "StepOutput", "Trainee",
           "TssdConfig", "TssdStep", "build_step", "entropy", "get_method", "kl", "loss_tssd", "method_names",
           "needs_teacher"]
