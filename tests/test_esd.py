"""ESD: stage points and branch shapes per model, the reliable teacher on a hand-computed case,
the loss against plain Python, and the empty-set guard (no exit correct)."""

from __future__ import annotations

import pytest
import torch

from neurodistill.distill.esd import (
    DeepConv,
    ESDConfig,
    build_branches,
    esd_loss,
    reliable_teacher,
)
from neurodistill.errors import ConfigError, MethodError
from neurodistill.models import create_model
from neurodistill.models.stages import stage_points
from neurodistill.train.rate_bp import rate_step

from .plain_math import ce as _ce
from .plain_math import kl as _kl

# exits [E=3][B=3][K=3]; the last is the final exit. Labels y = [0, 1, 2].
EXITS = [
    [[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]],
    [[1.0, 3.0, 0.0], [0.0, 2.0, 0.0], [1.0, 0.0, 0.0]],
    [[4.0, 0.0, 1.0], [3.0, 0.0, 0.0], [0.0, 2.0, 0.0]],
]
Y = [0, 1, 2]
# sample 0: exits 0 and 2 are right -> mean; sample 1: exits 0 and 1; sample 2: none (no distillation)
TEACHER = [[3.0, 0.0, 0.5], [0.0, 1.5, 0.0], [0.0, 0.0, 0.0]]
RELIABLE = [True, True, False]


def test_reliable_teacher_hand_computed():
    teacher, reliable = reliable_teacher(torch.tensor(EXITS), torch.tensor(Y))
    assert teacher.tolist() == TEACHER
    assert reliable.tolist() == RELIABLE


@pytest.mark.parametrize(
    "cfg",
    [ESDConfig(), ESDConfig(alpha=0.7, alpha_final=1.0, beta=0.1, temperature=2.0), ESDConfig(distill_final=False)],
)
def test_esd_loss_against_plain_python(cfg):
    tau = cfg.temperature
    exits = [torch.tensor(e, requires_grad=True) for e in EXITS]
    parts = esd_loss(exits, torch.tensor(Y), cfg)
    ce = [sum(_ce(EXITS[e][b], Y[b]) for b in range(3)) / 3 for e in range(3)]
    weights = [cfg.alpha, cfg.alpha, cfg.alpha if cfg.alpha_final is None else cfg.alpha_final]
    task = sum(w * c for w, c in zip(weights, ce, strict=True))
    rel = [b for b in range(3) if RELIABLE[b]]
    kd = [sum(_kl(TEACHER[b], EXITS[e][b], tau) for b in rel) / len(rel) for e in range(3)]
    kd = kd if cfg.distill_final else kd[:-1]
    distill = cfg.beta * tau**2 * sum(kd)
    assert parts["task"].item() == pytest.approx(task, rel=1e-6)
    assert parts["distill"].item() == pytest.approx(distill, rel=1e-6)
    assert parts["loss"].item() == pytest.approx(task + distill, rel=1e-6)
    assert parts["ce"].item() == pytest.approx(ce[-1], rel=1e-6)
    assert parts["kl"].item() == pytest.approx(sum(kd) / len(kd), rel=1e-6)
    assert parts["reg"].item() == 0 and parts["entropy"].item() == 0
    assert parts["reliable"].item() == pytest.approx(2 / 3)
    parts["loss"].backward()
    assert all(torch.isfinite(e.grad).all() for e in exits)


def test_no_exit_correct_gives_finite_loss_and_gradients():
    """The reference divides by (0 + 1e-8) and takes a mean over no samples (NaN) here."""
    torch.manual_seed(0)
    model = create_model("snn_digits", num_classes=10, in_channels=1).train()
    branches = build_branches(model, 10, (1, 8, 8))
    out = rate_step(model, torch.rand(6, 1, 8, 8), 4, taps=branches.attach)
    exits = [*branches(out.taps), out.logits]
    # A label that no exit predicts, per sample.
    preds = torch.stack([e.argmax(-1) for e in exits])  # (E, B)
    y = torch.tensor([next(k for k in range(10) if k not in preds[:, b]) for b in range(6)])
    parts = esd_loss(exits, y, ESDConfig())
    assert parts["reliable"].item() == 0 and parts["distill"].item() == 0
    assert all(torch.isfinite(v).all() for v in parts.values())
    (parts["loss"] / out.timesteps).backward()
    grads = [p.grad for p in [*model.parameters(), *branches.parameters()]]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.body[0].weight.grad.abs().sum() > 0  # the branch CE reaches the spiking stem


@pytest.mark.parametrize(
    "name, points, channels, strides",
    [
        ("snn_resnet18", ["body.4", "body.6", "body.8", "body.10"], (64, 128, 256, 512), (2, 2, 2)),
        ("snn_resnet34", ["body.5", "body.9", "body.15", "body.18"], (64, 128, 256, 512), (2, 2, 2)),
        ("snn_resnet19", ["body.5", "body.8", "body.10"], (128, 256, 512), (2, 2)),
        ("snn_digits", ["body.2", "body.5"], (16, 32), (2,)),
    ],
)
def test_stage_points_and_branch_shapes(name, points, channels, strides):
    c, size = (1, 8) if name == "snn_digits" else (3, 32)
    model = create_model(name, num_classes=7, in_channels=c)
    assert stage_points(model) == points
    branches = build_branches(model, 7, (c, size, size))
    assert branches.attach == tuple(points[:-1])
    assert branches.channels == channels and branches.strides == strides
    # ResNet-18 branch 1 is the spec's DeepConv 64->128->256->512, then pool and Linear(512, K).
    first = branches.branches[0]
    assert [(b.op[0].in_channels, b.op[5].out_channels) for b in first if isinstance(b, DeepConv)] == list(
        zip(channels[:-1], channels[1:], strict=True)
    )
    feats = {p: torch.rand(2, ch, size // 2**i, size // 2**i) for i, (p, ch) in enumerate(zip(points[:-1], channels, strict=False))}
    assert [z.shape for z in branches(feats)] == [(2, 7)] * (len(points) - 1)


@pytest.mark.parametrize("name, size", [("snn_sew_resnet18", 64), ("snn_vgg11", 32)])
def test_other_registry_models_get_branches(name, size):
    model = create_model(name, num_classes=5, in_channels=3)
    branches = build_branches(model, 5, (3, size, size))
    assert len(branches.attach) >= 3 and branches.channels[-1] == 512


def test_unsupported_model_and_bad_config_raise():
    from spikingjelly.activation_based import layer, neuron

    net = torch.nn.Sequential(layer.Linear(4, 4), neuron.IFNode(step_mode="m"))
    assert stage_points(net) == []
    with pytest.raises(MethodError, match=r"set esd.stages \(--esd-stages\)"):
        build_branches(net, 4, (4,))
    model = create_model("snn_digits", num_classes=10, in_channels=1)
    with pytest.raises(MethodError, match="not modules"):
        build_branches(model, 10, (1, 8, 8), stages=["body.2", "nope"])
    with pytest.raises(MethodError, match="branches need"):
        build_branches(model, 10, (1, 8, 8), stages=["body.2", "body.7"])  # the logits are not a map
    with pytest.raises(ConfigError):
        ESDConfig(beta=-1)
    with pytest.raises(ConfigError, match="unknown esd"):
        ESDConfig.from_dict({"gamma": 1})
    assert ESDConfig.from_dict(ESDConfig(stages=("a", "b")).to_dict()) == ESDConfig(stages=("a", "b"))
