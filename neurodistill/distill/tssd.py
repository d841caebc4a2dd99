"""TSSD: temporal-spatial self-distillation (Zuo et al., arXiv 2406.07862; docs/methods.md#tssd-temporal-spatial-self-distillation).

No separate teacher. Each training step runs the same network (same weights) twice:
- at `T_s` steps (the deployed setting), recording a stage's output through a forward hook,
- at `T_t > T_s` steps (default `2·T_s`): its time-mean output is the temporal teacher.
A weak classifier on the recorded stage output (default: global average pool + linear, after
the third stage) is guided by the final output (the spatial teacher).

```
L = CE(z_s, y) + CE(z_t, y) + CE(z_w, y)                      task (last two switchable)
  + α·τ²·KL(softmax_τ(z_t.detach()) || softmax_τ(z_s))          temporal
  + β·τ²·KL(softmax_τ(z_s.detach()) || softmax_τ(z_w))          spatial
```
`z_s`, `z_t` are the time-mean logits of the two passes; `z_w` is the time-mean over the `T_s`
steps of the weak classifier applied to each step's stage output. The weak classifier is
trained only: the checkpoint keeps it under `method`, and export builds the plain model.
"""

from __future__ import annotations

import logging
import re
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, MethodError
from ..models.stages import stage_points
from .losses import kl
from .step import MethodStep, StepOutput

log = logging.getLogger(__name__)
Tensor = torch.Tensor

WEAK_HEADS = ("linear", "conv")


@dataclass
class TssdConfig:
    # None of these is stated by the paper (its code could not be read): our defaults, see docs/methods.md.
    alpha: float = 1.0  # weight of the temporal KL (T_t teacher -> T_s output)
    beta: float = 0.3  # weight of the spatial KL (final output -> weak classifier); ESD's weight for its exits
    temperature: float = 3.0  # tau of both KLs (ESD's self-distillation uses 3; TSER finds 2..6 stable)
    teacher_timesteps: int = 0  # T_t of the temporal teacher; 0 = 2 * T (the spec's default); must be > T
    attach: str = "auto"  # weak classifier input: auto | stageN | a module path (body.7); auto: see resolve_attach
    weak_head: str = "linear"  # linear: avg pool + linear; conv: conv3x3-BN-ReLU, avg pool, linear
    ce_teacher: bool = True  # CE(z_t, y) in the task loss
    ce_weak: bool = True  # CE(z_w, y) in the task loss
    kl_tau_squared: bool = True  # multiply both KLs by tau^2 (Hinton) so their gradients keep their scale
    teacher_bn_stats: bool = False  # let the T_t pass update BatchNorm running stats too (off: only the T_s pass, which inference runs)

    def __post_init__(self) -> None:
        for key in ("alpha", "beta"):
            if getattr(self, key) < 0:
                raise ConfigError(f"tssd.{key} = {getattr(self, key)} is not allowed; it must be >= 0")
        if not self.temperature > 0:
            raise ConfigError(f"tssd.temperature = {self.temperature} is not allowed; it must be > 0")
        if self.teacher_timesteps < 0:
            raise ConfigError(f"tssd.teacher_timesteps = {self.teacher_timesteps} is not allowed; "
                              "use 0 (= 2 x timesteps) or a step count > timesteps")
        if self.weak_head not in WEAK_HEADS:
            raise ConfigError(f"tssd.weak_head = {self.weak_head!r} is not allowed; choose one of {', '.join(WEAK_HEADS)}")
        if not self.attach.strip():
            raise ConfigError("tssd.attach = '' is not allowed; use auto, stageN or a module path such as body.7")

    def uses_teacher_pass(self) -> bool:
        return self.alpha > 0 or self.ce_teacher

    def uses_weak_head(self) -> bool:
        return self.beta > 0 or self.ce_weak


# --- the loss: a pure function over logits ---------------------------------------------------
def loss_tssd(z_s: Tensor, y: Tensor, cfg: TssdConfig, z_t: Tensor | None = None,
              z_w: Tensor | None = None) -> dict[str, Tensor]:
    """TSSD's loss parts from per-step logits.

    Shape:
        z_s: `(T_s, B, K)`; z_t: `(T_t, B, K)` or None (no teacher pass); z_w: `(T_s, B, K)` or
        None (no weak classifier); y: `(B,)`.

    Returns the parts of `losses.py` (`loss = task + distill + reg`; `ce` = CE(z_s), `kl` = the
    temporal KL) plus `ce_teacher` = CE(z_t), `ce_weak` = CE(z_w), `kl_spatial` (raw, logged
    whether or not their switches put them in the loss; 0 when that pass did not run).
    """
    tau = cfg.temperature
    tau2 = tau**2 if cfg.kl_tau_squared else 1.0
    s = z_s.mean(0)
    ce = F.cross_entropy(s, y)
    zero = ce.new_zeros(())
    ce_t = kl_t = ce_w = kl_s = zero
    if z_t is not None:
        t = z_t.mean(0)
        ce_t = F.cross_entropy(t, y)
        kl_t = kl(t.detach(), s, tau)  # teacher detached: the temporal KL trains the T_s output only
    if z_w is not None:
        w = z_w.mean(0)
        ce_w = F.cross_entropy(w, y)
        kl_s = kl(s.detach(), w, tau)  # teacher detached: the spatial KL trains the weak path only
    task = ce + (ce_t if cfg.ce_teacher else zero) + (ce_w if cfg.ce_weak else zero)
    distill = cfg.alpha * tau2 * kl_t + cfg.beta * tau2 * kl_s
    return {"loss": task + distill, "task": task, "distill": distill, "reg": zero, "ce": ce, "kl": kl_t,
            "entropy": zero, "ce_teacher": ce_t, "ce_weak": ce_w, "kl_spatial": kl_s}


# --- where the weak classifier reads -----------------------------------------------------------
def resolve_attach(model: nn.Module, attach: str, model_name: str = "the model") -> str:
    """The module path the weak classifier reads from, or a MethodError naming the valid choices.

    auto: the third stage (the spec's default); a model with fewer than three stages
    (snn_digits has two) uses its next-to-last stage, so the weak classifier still reads an
    intermediate stage rather than the final features.
    """
    points = stage_points(model)
    stages = ", ".join(f"stage{i + 1} ({p})" for i, p in enumerate(points)) or "none found"
    if attach == "auto":
        if not points:
            raise MethodError(f"tssd: {model_name} has no stages that tssd recognises; set --weak-attach to a module "
                              "path of the model (its named_modules(), e.g. body.7)")
        return points[2] if len(points) >= 3 else points[max(len(points) - 2, 0)]
    m = re.fullmatch(r"stage(\d+)", attach)
    if m:
        i = int(m.group(1))
        if 1 <= i <= len(points):
            return points[i - 1]
        raise MethodError(f"tssd.attach = {attach!r} is not a stage of {model_name}; choose auto, one of its stages "
                          f"[{stages}] or a module path of the model (e.g. body.7)")
    names = dict(model.named_modules())
    if attach in names and attach != "":
        return attach
    raise MethodError(f"tssd.attach = {attach!r} is neither a stage nor a module of {model_name}; choose auto, one of "
                      f"its stages [{stages}] or a module path of the model (e.g. body.7)")


class StageCapture:
    """A forward hook that keeps a module's output, only while active (`with capture:`)."""

    def __init__(self, module: nn.Module) -> None:
        self.active = False
        self.output: Tensor | None = None
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, args: Any, output: Any) -> None:
        if self.active:
            self.output = output

    def __enter__(self) -> StageCapture:
        self.active, self.output = True, None
        return self

    def __exit__(self, *exc: Any) -> None:
        self.active = False

    def take(self) -> Tensor:
        out, self.output = self.output, None
        if not isinstance(out, torch.Tensor):
            raise MethodError(f"tssd: the attach module produced {type(out).__name__}, not a tensor; choose another --weak-attach")
        return out

    def remove(self) -> None:
        self.handle.remove()


class WeakHead(nn.Module):
    """The weak classifier, applied to each step's stage output (an ANN: trained, never deployed).

    linear: global average pool, linear. conv: conv3x3 (C -> C), BatchNorm, ReLU, global
    average pool, linear. A flat stage output `(T, B, F)` skips the pool (linear only).

    Shape:
        Input `(T, B, C, H, W)` or `(T, B, F)`, output `(T, B, K)`.
    """

    def __init__(self, kind: str, channels: int, num_classes: int, spatial: bool) -> None:
        super().__init__()
        if kind == "conv" and not spatial:
            raise MethodError("tssd.weak_head = 'conv' needs a stage output with a spatial map (T, B, C, H, W); "
                              "use weak_head = linear or attach it earlier")
        self.kind = kind
        self.features = (nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1, bias=False),
                                       nn.BatchNorm2d(channels), nn.ReLU())
                         if kind == "conv" else nn.Identity())
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, s: Tensor) -> Tensor:
        T, B = s.shape[:2]
        x = s.flatten(0, 1)
        if x.dim() == 4:
            x = self.features(x).mean((2, 3))
        return self.fc(x).view(T, B, -1)


@contextmanager
def keep_bn_running_stats(model: nn.Module):
    """Run a pass that normalises with its batch statistics but leaves the running ones as they were."""
    # The pass updates throwaway copies; the originals are put back untouched. (Copying the old
    # values back in place instead would break autograd, which saved the buffers for backward.)
    names = ("running_mean", "running_var", "num_batches_tracked")
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    saved = [{k: getattr(m, k) for k in names} for m in bns]
    for m, buffers in zip(bns, saved, strict=True):
        for k, b in buffers.items():
            setattr(m, k, b.clone())
    try:
        yield
    finally:
        for m, buffers in zip(bns, saved, strict=True):
            for k, b in buffers.items():
                setattr(m, k, b)


class TssdStep(MethodStep):
    """TSSD's training step: the T_s pass (recording the stage), the weak head, the T_t pass, the loss.

    Raises MethodError for an ANN model, an attach point the model does not have, or (event
    data) a T_t that is not a multiple of the frame count.
    """

    def __init__(self, model: nn.Module, cfg: TssdConfig, inputs: Any, input_shape: tuple[int, ...],
                 num_classes: int, model_name: str = "the model") -> None:
        super().__init__(inputs)
        if not inputs.spiking:
            raise MethodError(f"method 'tssd' needs a spiking model (its teacher is the same network at more time "
                              f"steps); {model_name} is an ANN: use an snn_... model")
        self.cfg = cfg
        T = inputs.timesteps
        self.teacher_timesteps = cfg.teacher_timesteps or 2 * T
        if self.teacher_timesteps <= T:
            raise MethodError(f"tssd.teacher_timesteps = {self.teacher_timesteps} is not allowed; the temporal teacher "
                              f"needs more steps than the student's T = {T}")
        if inputs.event and self.teacher_timesteps % T:
            raise MethodError(f"tssd.teacher_timesteps = {self.teacher_timesteps} is not allowed for event data with "
                              f"{T} frames; it must be a multiple of {T} (each frame is held for T_t / T steps)")
        self.attach: str | None = None
        self.capture: StageCapture | None = None
        self.weak: WeakHead | None = None
        if cfg.uses_weak_head():
            self.attach = resolve_attach(model, cfg.attach, model_name)
            module = dict(model.named_modules())[self.attach]
            self.capture = StageCapture(module)
            shape = self._stage_shape(model, input_shape)
            if len(shape) not in (3, 5):
                self.close()
                raise MethodError(f"tssd: the output of {self.attach} has shape {list(shape)}; the weak classifier needs "
                                  "(T, B, C, H, W) or (T, B, F): choose another --weak-attach")
            device = next(model.parameters()).device
            self.weak = WeakHead(cfg.weak_head, shape[2], num_classes, spatial=len(shape) == 5).to(device)
            log.info("tssd: weak classifier (%s) on %s, output %s; temporal teacher at T_t = %d",
                     cfg.weak_head, self.attach, list(shape[2:]), self.teacher_timesteps)

    def _stage_shape(self, model: nn.Module, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The stage output's shape, from one sample at one step (eval mode: no statistics change)."""
        was_training = model.training
        model.eval()
        try:
            p = next(model.parameters())
            with torch.no_grad(), self.capture:
                model(torch.zeros(1, 1, *input_shape, device=p.device, dtype=p.dtype))
            if self.capture.output is None:
                self.close()
                raise MethodError(f"tssd: module {self.attach} does not run in the model's forward; choose another "
                                  "--weak-attach")
            return tuple(self.capture.take().shape)
        finally:
            model.train(was_training)

    def forward(self, model: nn.Module, x: Tensor, y: Tensor) -> StepOutput:
        if self.capture is not None:
            with self.capture:  # the stage output of this (T_s) pass only
                z_s = self.student_logits(model, x)
            z_w = self.run(self.weak, self.capture.take())
        else:
            z_s, z_w = self.student_logits(model, x), None
        z_t = None
        if self.cfg.uses_teacher_pass():
            with nullcontext() if self.cfg.teacher_bn_stats else keep_bn_running_stats(model):
                z_t = self.student_logits(model, x, self.teacher_timesteps)
        return StepOutput(loss_tssd(z_s, y, self.cfg, z_t, z_w), z_s)

    def info(self) -> dict[str, Any]:
        return {"attach": self.attach, "teacher_timesteps": self.teacher_timesteps,
                "weak_head": self.cfg.weak_head if self.weak is not None else None}

    def close(self) -> None:
        if self.capture is not None:
            self.capture.remove()
