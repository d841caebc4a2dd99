"""The seam between the trainer and the methods: a method's training step.

The trainer owns data, optimiser, schedule, checkpoints and evaluation. A `MethodStep` owns
what happens between a batch and its loss: which passes of the network run, on which input,
and which pure loss function combines their logits. It is an `nn.Module` so that a method's
auxiliary trainable parts (tssd's weak classifier, esd's branches) are its submodules: the
trainer hands them to the optimiser, wraps them with the model for DDP, and saves them in
the checkpoint under `method`, apart from the model's `state_dict`. The deployed model is
never changed: export rebuilds the plain model from `state_dict` alone.

Shape:
    `forward(model, x, y)`: `x` the batch as the loader gives it (static `(B, C, H, W)`,
    events `(B, T, C, H, W)`), `y` labels `(B,)`; returns `StepOutput(parts, z)` with the
    loss parts of `losses.py` and the student logits `z (T, B, K)` (`(1, B, K)` for an ANN,
    and for the rate-pass logits of rate-based backprop, whose value is the time-mean).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import nn

from ..errors import CheckpointError, MethodError

if TYPE_CHECKING:
    from ..models.rate_bp import RateOutput

Tensor = torch.Tensor


class StepOutput(NamedTuple):
    parts: dict[str, Tensor]  # loss, task, distill, reg, ce, kl, entropy (+ method-specific extras)
    z: Tensor  # student logits (T, B, K), float: the train accuracy scores z.mean(0)


class MethodStep(nn.Module):
    """Base of every method's training step.

    `inputs` encodes a batch for the network (`inputs.student(x, timesteps=None)`,
    `inputs.teacher(x)`, `inputs.spiking`, `inputs.timesteps`; see `train.loop.Inputs`).
    Subclasses implement `forward`; trainable auxiliaries are registered submodules.
    """

    def __init__(self, inputs: Any) -> None:
        super().__init__()
        self.inputs = inputs
        self.use_amp = False  # set by the trainer: mixed precision for the network passes (CUDA)
        self.amp_dtype = torch.float16  # set by the trainer: --amp-dtype

    def autocast(self):
        return torch.autocast("cuda", dtype=self.amp_dtype) if self.use_amp else nullcontext()

    def run(self, module: nn.Module, x: Tensor) -> Tensor:
        """One pass of a network (the model or an auxiliary head) under the trainer's autocast, as float."""
        with self.autocast():
            out = module(x)
        return out.float()

    def student_logits(self, model: nn.Module, x: Tensor, timesteps: int | None = None) -> Tensor:
        """The model on the encoded batch: `(T, B, K)` (an ANN's `(B, K)` gets a time axis of 1)."""
        z = self.run(model, self.inputs.student(x, timesteps))
        return z if self.inputs.spiking else z.unsqueeze(0)

    def check_rate_model(self, model: nn.Module, what: str, model_name: str = "the model") -> None:
        """MethodError unless rate-based backprop can train `model` (spiking, supported layers only)."""
        from ..models.rate_bp import RateBackprop

        if not self.inputs.spiking:
            raise MethodError(f"{what} is for spiking models only; {model_name} is an ANN: use an snn_... model")
        RateBackprop(model)  # raises a MethodError naming every layer rate backprop cannot handle

    def rate_logits(self, model: nn.Module, x: Tensor, taps: tuple[str, ...] = ()) -> RateOutput:
        """Rate-based backprop's two passes on the batch (spike pass without grad, rate pass with).

        A static batch is repeated T times in the spike pass and fed as it is to the rate pass;
        event frames are fed in time order to the spike pass and as their time-mean to the rate
        pass. `RateOutput.logits (B, K)` equal the time-mean of the spike pass's logits.
        """
        from ..models.rate_bp import rate_step

        with self.autocast():
            if self.inputs.event:
                return rate_step(model, self.inputs.student(x), None, taps=taps)
            return rate_step(model, x, self.inputs.timesteps, taps=taps)

    def forward(self, model: nn.Module, x: Tensor, y: Tensor) -> StepOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- checkpoints ------------------------------------------------------------------------
    def has_state(self) -> bool:
        return bool(self.state_dict())

    def checkpoint_entry(self, name: str) -> dict[str, Any]:
        """What the checkpoint stores under `method`: plain tensors and Python only."""
        return {"name": name, "state_dict": self.state_dict(), "info": self.info()}

    def load_checkpoint_entry(self, entry: dict[str, Any] | None, where: str) -> None:
        """Restore the auxiliary modules from a checkpoint's `method` entry (nothing to do without any)."""
        if not self.has_state():
            return
        if not entry or not entry.get("state_dict"):
            raise CheckpointError(f"{where} has no 'method' entry with the auxiliary modules this method trains; "
                                  "it was written by another method or an older neurodistill")
        try:
            self.load_state_dict(entry["state_dict"])
        except RuntimeError as e:
            first = str(e).splitlines()[1 if len(str(e).splitlines()) > 1 else 0].strip()[:200]
            raise CheckpointError(f"{where}: its 'method' modules do not fit this method's settings ({first})") from None

    def info(self) -> dict[str, Any]:
        """Resolved settings worth recording (e.g. where an auxiliary head is attached)."""
        return {}

    def close(self) -> None:
        """Undo what the step did to the model (hooks); the trainer calls it when training ends."""


class LogitStep(MethodStep):
    """none, tet, kd, tser: one student pass, an optional frozen ANN teacher, a pure loss over logits."""

    def __init__(self, loss_fn: Callable, loss_cfg: Any, inputs: Any, teacher: nn.Module | None = None) -> None:
        super().__init__(inputs)
        self.loss_fn = loss_fn
        self.loss_cfg = loss_cfg
        # Not a submodule: the teacher is frozen, so it is neither trained, nor wrapped by DDP,
        # nor saved with the student's checkpoint.
        self.__dict__["teacher"] = teacher

    def teacher_logits(self, x: Tensor) -> Tensor | None:
        """The frozen ANN teacher on the un-repeated input `(B, K)`, or None without a teacher."""
        if self.teacher is None:
            return None
        # The frozen teacher runs at the student's precision and records nothing for autograd. Its
        # logits are cloned out of inference mode: a loss that saved an inference tensor for its
        # backward would fail, and cloning (B, K) logits costs nothing beside the pass.
        with torch.inference_mode(), self.autocast():
            z = self.teacher(self.inputs.teacher(x))
        return z.float().clone()

    def forward(self, model: nn.Module, x: Tensor, y: Tensor) -> StepOutput:
        z_tea = self.teacher_logits(x)
        z = self.student_logits(model, x)
        return StepOutput(self.loss_fn(z, y, self.loss_cfg, z_tea), z)


class SpikeCountStep(LogitStep):
    """none and tet for a spike-count readout (`--readout spikes`): the model's output is its output
    neuron's spikes, which the loss reads as logits scaled by `SPIKE_LOGIT_GAIN` (a rate in [0, 1]
    alone caps softmax's confidence, so cross-entropy keeps pushing every rate and barely trains).
    The gain leaves the prediction (the argmax of the counts) and `z`, the spikes, as they are."""

    SPIKE_LOGIT_GAIN = 8.0

    def forward(self, model: nn.Module, x: Tensor, y: Tensor) -> StepOutput:
        z = self.student_logits(model, x)
        return StepOutput(self.loss_fn(z * self.SPIKE_LOGIT_GAIN, y, self.loss_cfg, None), z)


class RateLogitStep(LogitStep):
    """none and kd with rate-based backprop (`--backprop rate`).

    The loss sees the rate-pass logits as a single step, `z (1, B, K)`: their value is the
    time-mean of the spike-pass logits, i.e. the prediction `z_mean` that `none`'s CE and `kd`'s
    KL read under BPTT. Gradients are scaled by 1/T (`scale_grad`), as the rate-backprop
    reference does; the logged loss parts keep their unscaled values. Methods whose loss reads
    every step's logits (tet, tser, tssd) cannot use it: rate backprop has only their mean.
    """

    def __init__(self, model: nn.Module, loss_fn: Callable, loss_cfg: Any, inputs: Any,
                 teacher: nn.Module | None = None, model_name: str = "the model") -> None:
        super().__init__(loss_fn, loss_cfg, inputs, teacher)
        self.check_rate_model(model, "--backprop rate", model_name)

    def forward(self, model: nn.Module, x: Tensor, y: Tensor) -> StepOutput:
        from ..models.rate_bp import scale_grad

        z_tea = self.teacher_logits(x)
        out = self.rate_logits(model, x)
        z = out.logits.float().unsqueeze(0)
        parts = self.loss_fn(z, y, self.loss_cfg, z_tea)
        parts["loss"] = scale_grad(parts["loss"], out.timesteps)
        return StepOutput(parts, z)


class Trainee(nn.Module):
    """The model and its method step as one module.

    Training calls `trainee(x, y)` (the method's step); evaluation calls `trainee(x_encoded)`
    (the plain model). One module means DDP sees one forward per backward, averages the
    auxiliary modules' gradients too, and broadcasts rank 0's BatchNorm buffers before
    evaluation as well as before training.
    """

    def __init__(self, model: nn.Module, step: MethodStep) -> None:
        super().__init__()
        self.model = model
        self.step = step

    def forward(self, x: Tensor, y: Tensor | None = None):
        if y is None:
            return self.model(x)
        return self.step(self.model, x, y)
