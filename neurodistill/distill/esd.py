"""ESD: enhanced self-distillation on top of rate-based backprop (docs/methods.md#esd-enhanced-self-distillation).

In the rate pass, the rate outputs of the network's stages feed lightweight ANN branches
(ReLU, not spiking), each ending in a linear head: exits `z_1 .. z_{N-1}` plus the network's
own final output `z_N`. A reliable teacher per sample is the mean of the logits of exactly those
exits (final included) whose argmax equals the label; samples with no correct exit get no
distillation. The loss is

    KD_e = τ²·mean_{b reliable} KL(softmax_τ(teacher_b) || softmax_τ(z_e,b))
    L    = α·Σ_e CE(z_e, y) + β·Σ_e KD_e                (backward on L / T)

with the sums over every exit, the final one included, as the reference code does.

The branches are a separate `nn.Module` (`ESDBranches`), not part of the model, so the
checkpointed and exported network is unchanged and the branches are dropped at inference.
`EsdStep` is the trainer's step (`--method esd`): it owns the branches, runs `rate_step` with
their attach points as taps and back-propagates the loss at 1/T.

Stage points. By default the branches read the stage outputs that `models.stages.stage_points`
finds (the rule tssd uses too): the last residual block of each stage, or in a net without
blocks the last spiking neuron before each downsampling; the last stage is the final one and
gets no branch. This gives the spec's points for the CIFAR ResNets (ResNet-18/34: the ends of
stages 1-3, branch widths 64/128/256 -> 512; ResNet-19: the ends of stages 1-2, 128/256 -> 512)
and for snn_digits (the first conv's neurons, 16 -> 32 channels). The same rule gives points
for the SEW-ResNets (stages 1-3) and VGG-11/16 (the neurons before each pool: 4 branches);
those are not part of the spec. Every spiking model in the registry is supported; a model
where the rule finds fewer than two stages raises `MethodError`, and any model can name its
stage points explicitly (`ESDConfig.stages`, `--esd-stages`).

Branch i maps stage i's output through a chain of DeepConv blocks whose widths are those of the
later stage outputs (c_i -> c_{i+1} -> ... -> c_N; stride 2 where the stage output halves in
size, else 1), then global average pooling and Linear(c_N, K). For CIFAR ResNet-18 that is the
spec's DeepConv 64->128->256->512, 128->256->512, 256->512.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, MethodError
from ..models.stages import stage_points
from .step import MethodStep, StepOutput

log = logging.getLogger(__name__)
Tensor = torch.Tensor


@dataclass
class ESDConfig:
    """ESD settings; defaults are the reference's CIFAR recipe (use T = 6 there)."""

    alpha: float = 1.0  # CE weight on every exit (CIFAR 1.0; ImageNet 0.7 on the branches)
    beta: float = 0.3  # distillation weight (CIFAR and ImageNet 0.3; DVS 0.1)
    temperature: float = 3.0  # tau of softmax_tau, also the tau^2 factor
    alpha_final: float | None = None  # CE weight on the final exit; None: alpha (ImageNet: alpha=0.7, alpha_final=1.0)
    distill_final: bool = True  # the final exit is distilled from the teacher too (the reference does)
    stages: tuple[str, ...] | None = None  # stage-output module names, the last = final stage; None: derived

    def __post_init__(self) -> None:
        for name in ("alpha", "beta"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"esd.{name} = {getattr(self, name)} is not allowed; it must be >= 0")
        if not self.temperature > 0:
            raise ConfigError(f"esd.temperature = {self.temperature} is not allowed; it must be > 0")
        if self.alpha_final is not None and not self.alpha_final >= 0:
            raise ConfigError(f"esd.alpha_final = {self.alpha_final} is not allowed; it must be >= 0 or null")
        if self.stages is not None:
            self.stages = tuple(self.stages)
            if len(self.stages) < 2:
                raise ConfigError(f"esd.stages = {list(self.stages)} is not allowed; name at least one branch point and the final stage")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["stages"] = list(self.stages) if self.stages is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict | None) -> ESDConfig:
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown esd setting(s) {unknown}; allowed: {sorted(known)}")
        return cls(**d)


# --- branches -------------------------------------------------------------------------------------
class DeepConv(nn.Module):
    """ESD's branch block, in -> out channels.

    depthwise 3x3 (stride) -> 1x1 -> BN -> ReLU -> depthwise 3x3 -> 1x1 (to out) -> BN -> ReLU,
    plus a 1x1 (stride) conv + BN shortcut, then ReLU of the sum.

    Shape:
        Input: `(B, in, H, W)`. Output: `(B, out, H/stride, W/stride)` (rounded up).
    """

    def __init__(self, cin: int, cout: int, stride: int = 2) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False),
            nn.Conv2d(cin, cin, 1, bias=False),
            nn.BatchNorm2d(cin),
            nn.ReLU(),
            nn.Conv2d(cin, cin, 3, 1, 1, groups=cin, bias=False),
            nn.Conv2d(cin, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(),
        )
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.op(x) + self.shortcut(x))


class ESDBranches(nn.Module):
    """The ANN exits on a model's stage outputs; built by `build_branches`.

    `attach` lists the module names whose rate-pass outputs the branches read, in order: pass it
    as `taps` to `rate_step`, then `branches(out.taps)` gives the branch logits.

    Shape:
        Input: mapping name -> `(B, C_i, H_i, W_i)`. Output: list of `(B, K)`, one per branch.
    """

    def __init__(self, attach: Sequence[str], channels: Sequence[int], strides: Sequence[int], num_classes: int) -> None:
        super().__init__()
        if len(channels) != len(attach) + 1 or len(strides) != len(attach):
            raise MethodError(f"ESD branches: {len(attach)} attach points need {len(attach) + 1} channel counts and {len(attach)} strides")
        self.attach = tuple(attach)
        self.channels = tuple(channels)
        self.strides = tuple(strides)
        self.num_classes = num_classes
        self.branches = nn.ModuleList()
        for i in range(len(attach)):
            chain = [DeepConv(channels[j], channels[j + 1], strides[j]) for j in range(i, len(attach))]
            self.branches.append(
                nn.Sequential(*chain, nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(channels[-1], num_classes))
            )

    def forward(self, taps: Mapping[str, Tensor] | Sequence[Tensor]) -> list[Tensor]:
        feats = [taps[n] for n in self.attach] if isinstance(taps, Mapping) else list(taps)
        return [branch(f) for branch, f in zip(self.branches, feats, strict=True)]

    def extra_repr(self) -> str:
        return f"attach={list(self.attach)}, channels={list(self.channels)}, strides={list(self.strides)}"


def build_branches(
    model: nn.Module, num_classes: int, input_shape: Sequence[int], stages: Sequence[str] | None = None
) -> ESDBranches:
    """ESD branches for `model`, with channels and strides read from a probe forward.

    `input_shape` is one sample's `(C, H, W)`. `stages` names the stage outputs (the last is the
    final stage, with no branch); None derives them (`stage_points`). The probe runs one sample,
    one step, in eval mode, so no BatchNorm statistics change. The branches are on the model's
    device and dtype.
    """
    root = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    if stages is None:
        points = stage_points(root)
        if len(points) < 2:
            name = getattr(root, "model_name", type(root).__name__)
            raise MethodError(f"esd found {len(points)} stage(s) in model {name!r}, it needs >= 2 (branch points and the "
                              "final stage); set esd.stages (--esd-stages) to module paths of the model, e.g. body.2,body.5")
    else:
        points = list(stages)
    if len(points) < 2:
        raise MethodError(f"ESD needs >= 2 stage points (branches + final), got {points}")
    modules = dict(root.named_modules())
    missing = [p for p in points if p not in modules or p == ""]
    if missing:
        raise MethodError(f"ESD stage point(s) {missing} are not modules of the model; use names from named_modules()")
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = [modules[p].register_forward_hook(lambda _m, _a, out, p=p: shapes.__setitem__(p, tuple(out.shape[2:])))
             for p in points]  # fmt: skip
    param = next(root.parameters())
    was_training = root.training
    try:
        root.eval()
        with torch.no_grad():
            root(torch.zeros(1, 1, *input_shape, device=param.device, dtype=param.dtype))
    finally:
        root.train(was_training)
        for h in hooks:
            h.remove()
    for p in points:
        if len(shapes.get(p, ())) != 3:
            raise MethodError(f"ESD stage point {p!r} outputs shape {shapes.get(p)} per sample; branches need (C, H, W) maps")
    channels = [shapes[p][0] for p in points]
    strides = [2 if shapes[a][1] > shapes[b][1] else 1 for a, b in zip(points[:-1], points[1:], strict=True)]
    return ESDBranches(points[:-1], channels, strides, num_classes).to(device=param.device, dtype=param.dtype)


# --- loss ---------------------------------------------------------------------------------------
def reliable_teacher(exits: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Per sample, the mean logits of the exits whose argmax equals the label (detached).

    Returns `(teacher (B, K), reliable (B,) bool)`; where no exit is correct the teacher row is
    zero and `reliable` is False (the reference's `1e-8` divisor is replaced by a mask).

    Shape:
        exits: `(E, B, K)`, y: `(B,)`.
    """
    z = exits.detach()
    correct = z.argmax(-1) == y.unsqueeze(0)  # (E, B)
    count = correct.sum(0)  # (B,)
    teacher = (z * correct.unsqueeze(-1)).sum(0) / count.clamp(min=1).unsqueeze(-1).to(z.dtype)
    return teacher, count > 0


def esd_loss(exits: Sequence[Tensor], y: Tensor, cfg: ESDConfig) -> dict[str, Tensor]:
    """L = α·Σ_e CE(z_e, y) + β·Σ_e KD_e over the exits (branches first, the final exit last).

    Returns the parts as losses.py does: `loss` = `task` + `distill` + `reg` (reg is 0), the
    raw `ce` (CE of the final exit), `kl` (mean over distilled exits of the reliable-sample KL,
    without τ²), `entropy` (0: ESD has none), plus `reliable`, the fraction of samples with at
    least one correct exit. The caller back-propagates `loss / T`.

    Shape:
        exits: E tensors `(B, K)`; y: `(B,)`.
    """
    if len(exits) < 1:
        raise MethodError("ESD loss needs at least the final exit")
    tau = cfg.temperature
    z = torch.stack([e.float() for e in exits])  # (E, B, K)
    E = z.shape[0]
    teacher, reliable = reliable_teacher(z, y)
    ce = torch.stack([F.cross_entropy(z[e], y) for e in range(E)])  # (E,)
    w_ce = torch.full((E,), cfg.alpha, dtype=z.dtype, device=z.device)
    if cfg.alpha_final is not None:
        w_ce[-1] = cfg.alpha_final
    task = (w_ce * ce).sum()

    # KL(softmax_tau(teacher) || softmax_tau(z_e)) per exit and sample; zero where not reliable.
    log_p = F.log_softmax(teacher / tau, -1).unsqueeze(0)  # (1, B, K)
    log_q = F.log_softmax(z / tau, -1)  # (E, B, K)
    kl_eb = (log_p.exp() * (log_p - log_q)).sum(-1) * reliable  # (E, B)
    n_rel = reliable.sum()
    kl_e = kl_eb.sum(1) / n_rel.clamp(min=1)  # (E,): 0, with zero gradient, when nothing is reliable
    distilled = kl_e if cfg.distill_final else kl_e[:-1]
    distill = cfg.beta * tau**2 * distilled.sum()
    zero = task.new_zeros(())
    kl_mean = distilled.mean() if distilled.numel() else zero
    return {
        "loss": task + distill, "task": task, "distill": distill, "reg": zero,
        "ce": ce[-1], "kl": kl_mean, "entropy": zero, "reliable": reliable.float().mean(),
    }  # fmt: skip


# --- the training step --------------------------------------------------------------------------
class EsdStep(MethodStep):
    """ESD's training step: rate backprop's two passes, the branches on the tapped stage outputs, the loss.

    The branches (`self.branches`) are this step's submodule: the trainer optimises them with
    the model, wraps them with it for DDP and checkpoints them under `method`; the model's
    `state_dict` never holds them and evaluation runs the plain model. The rate-pass logits are
    the final exit and the returned `z (1, B, K)`; the loss is back-propagated at 1/T
    (`scale_grad`) with its logged value unscaled.

    Raises MethodError for an ANN, a layer rate backprop does not support, or stage points the
    model does not have.
    """

    def __init__(self, model: nn.Module, cfg: ESDConfig, inputs: Any, input_shape: Sequence[int], num_classes: int,
                 model_name: str = "the model") -> None:
        super().__init__(inputs)
        self.check_rate_model(model, "method 'esd' (it trains with rate-based backprop)", model_name)
        self.cfg = cfg
        self.branches = build_branches(model, num_classes, input_shape, cfg.stages)
        self.final = list(cfg.stages)[-1] if cfg.stages is not None else stage_points(model)[-1]
        log.info("esd: branches on %s (channels %s), final stage %s; rate backprop over T = %d",
                 ", ".join(self.branches.attach), list(self.branches.channels), self.final, inputs.timesteps)

    def forward(self, model: nn.Module, x: Tensor, y: Tensor) -> StepOutput:
        from ..models.rate_bp import scale_grad

        out = self.rate_logits(model, x, taps=self.branches.attach)
        with self.autocast():
            exits = self.branches(out.taps)
        z = out.logits.float()
        parts = esd_loss([*(e.float() for e in exits), z], y, self.cfg)
        parts["loss"] = scale_grad(parts["loss"], out.timesteps)
        return StepOutput(parts, z.unsqueeze(0))

    def info(self) -> dict[str, Any]:
        return {"backprop": "rate", "branches": list(self.branches.attach), "final_stage": self.final,
                "channels": list(self.branches.channels)}


__all__ = ["DeepConv", "ESDBranches", "ESDConfig", "EsdStep", "build_branches", "esd_loss", "reliable_teacher"]
