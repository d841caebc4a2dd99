"""Distillation methods: pure loss functions over `[T, B, K]` logits, and each method's training step."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import nn

from ..errors import MethodError
from .esd import ESDConfig, EsdStep, esd_loss
from .losses import METHODS, TSER_ABLATION, LossConfig, entropy, kl
from .step import LogitStep, MethodStep, RateLogitStep, SpikeCountStep, StepOutput, Trainee
from .tssd import TssdConfig, TssdStep, loss_tssd

if TYPE_CHECKING:
    from ..config import TrainConfig

# Methods that own their training step (extra passes, auxiliary modules): name -> needs an ANN teacher.
STEP_METHODS = {"tssd": False, "esd": False}
BACKPROPS = ("bptt", "rate")
# Methods rate-based backprop can train: their loss reads the time-mean logits only (tet, tser
# and tssd read every step's logits, which the single rate pass does not have).
RATE_METHODS = ("none", "kd", "esd")


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


def check_backprop(method: str, backprop: str, spiking: bool, model_name: str = "the model") -> None:
    """MethodError unless `method` can train `model_name` with `backprop` (bptt | rate).

    esd always trains with rate backprop; rate backprop is for spiking models, and only for
    methods whose loss reads the time-mean logits (none, kd, esd).
    """
    needs_teacher(method)  # an unknown method: the error lists every method
    if backprop not in BACKPROPS:
        raise MethodError(f"backprop = {backprop!r} is not allowed; choose one of {', '.join(BACKPROPS)}")
    if method == "esd" and backprop != "rate":
        raise MethodError("method 'esd' trains with rate-based backprop; set backprop = rate (or leave it out: "
                          "esd then switches to rate)")
    if backprop != "rate":
        return
    if not spiking:
        what = "method 'esd' (it trains with rate-based backprop)" if method == "esd" else "--backprop rate"
        raise MethodError(f"{what} is for spiking models only; {model_name} is an ANN: use an snn_... model")
    if method not in RATE_METHODS:
        raise MethodError(f"--backprop rate cannot train method {method!r}: its loss needs the logits of every time step, "
                          "and rate backprop has only their time-mean; use --backprop bptt, or method none, kd or esd")


def build_step(cfg: TrainConfig, model: nn.Module, inputs: Any, input_shape: tuple[int, ...], num_classes: int,
               teacher: nn.Module | None = None) -> MethodStep:
    """The training step of `cfg.method` (and `cfg.backprop`) for this model and dataset."""
    check_backprop(cfg.method, cfg.backprop, inputs.spiking, cfg.model)
    if cfg.method == "tssd":
        return TssdStep(model, cfg.tssd, inputs, input_shape, num_classes, cfg.model)
    if cfg.method == "esd":
        return EsdStep(model, cfg.esd, inputs, input_shape, num_classes, cfg.model)
    loss_fn, _ = get_method(cfg.method)
    if cfg.readout == "spikes":  # methods none and tet only (config._check_spike_readout)
        return SpikeCountStep(loss_fn, cfg.loss, inputs)
    if cfg.backprop == "rate":
        return RateLogitStep(model, loss_fn, cfg.loss, inputs, teacher, cfg.model)
    return LogitStep(loss_fn, cfg.loss, inputs, teacher)


__all__ = ["BACKPROPS", "METHODS", "RATE_METHODS", "STEP_METHODS", "TSER_ABLATION", "ESDConfig", "EsdStep", "LogitStep",
           "LossConfig", "MethodStep", "RateLogitStep", "SpikeCountStep", "StepOutput", "Trainee", "TssdConfig", "TssdStep", "build_step",
           "check_backprop", "entropy", "esd_loss", "get_method", "kl", "loss_tssd", "method_names", "needs_teacher"]
