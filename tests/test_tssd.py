"""TSSD: the loss by hand, detached teachers, switches, the weak classifier's attach point,
resume, bad input, an unchanged deployed network, and the digits accuracy bar."""

from __future__ import annotations

import copy
from dataclasses import fields, is_dataclass
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from neurodistill.cli import main
from neurodistill.config import resolve
from neurodistill.distill import TssdConfig, TssdStep, loss_tssd
from neurodistill.distill.tssd import resolve_attach
from neurodistill.errors import CheckpointError, ConfigError, MethodError
from neurodistill.models import create_model
from neurodistill.models.stages import stage_points
from neurodistill.train import load_checkpoint, train
from neurodistill.train.loop import Inputs

from .plain_math import ce, kl
from .test_cli_errors import assert_user_error

ZS = [[[1.0, 2.0, 0.5], [0.2, -1.0, 3.0]], [[2.0, 0.0, -1.0], [1.5, 1.0, 0.0]]]  # T_s=2, B=2, K=3
ZT = [[[0.5, 3.0, 1.0], [-0.5, 0.5, 2.5]], [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
      [[0.0, 2.0, 0.0], [1.0, -1.0, 2.0]], [[1.5, 2.5, -0.5], [0.5, 0.5, 0.5]]]  # T_t=4
ZW = [[[0.3, 0.1, 0.2], [0.0, 0.4, 0.5]], [[0.1, 0.6, -0.2], [0.2, 0.0, 0.9]]]  # weak classifier, T_s steps
Y = [1, 2]


# --- an independent reference, in plain Python (and plain_math) ---------------------------
def tmean(z, b):
    return [sum(z[t][b][k] for t in range(len(z))) / len(z) for k in range(3)]


def bmean(f):
    return sum(f(b) for b in range(len(Y))) / len(Y)


def tensors(grad=False):
    return [torch.tensor(v, dtype=torch.float64, requires_grad=grad) for v in (ZS, ZT, ZW)]


# --- the loss ------------------------------------------------------------------------------
@pytest.mark.parametrize("alpha,beta,tau", [(1.0, 1.0, 3.0), (0.7, 0.3, 2.0)])
def test_loss_by_hand(alpha, beta, tau):
    zs, zt, zw = tensors()
    parts = loss_tssd(zs, torch.tensor(Y), TssdConfig(alpha=alpha, beta=beta, temperature=tau), zt, zw)
    ce_s = bmean(lambda b: ce(tmean(ZS, b), Y[b]))
    ce_t = bmean(lambda b: ce(tmean(ZT, b), Y[b]))
    ce_w = bmean(lambda b: ce(tmean(ZW, b), Y[b]))
    kl_t = bmean(lambda b: kl(tmean(ZT, b), tmean(ZS, b), tau))  # teacher: the T_t-step mean
    kl_s = bmean(lambda b: kl(tmean(ZS, b), tmean(ZW, b), tau))  # teacher: the final output
    want = {"ce": ce_s, "ce_teacher": ce_t, "ce_weak": ce_w, "kl": kl_t, "kl_spatial": kl_s,
            "task": ce_s + ce_t + ce_w, "distill": alpha * tau**2 * kl_t + beta * tau**2 * kl_s,
            "reg": 0.0, "entropy": 0.0}
    want["loss"] = want["task"] + want["distill"]
    assert set(parts) == set(want)
    for k, v in want.items():
        assert parts[k].item() == pytest.approx(v, abs=1e-12), k


def test_switches():
    zs, zt, zw = tensors()
    y = torch.tensor(Y)
    full = loss_tssd(zs, y, TssdConfig(), zt, zw)
    no_ce = loss_tssd(zs, y, TssdConfig(ce_teacher=False, ce_weak=False), zt, zw)
    assert no_ce["task"].item() == pytest.approx(full["ce"].item())
    assert no_ce["ce_teacher"].item() == full["ce_teacher"].item() > 0  # still logged
    only_t = loss_tssd(zs, y, TssdConfig(ce_weak=False), zt, zw)
    assert only_t["task"].item() == pytest.approx((full["ce"] + full["ce_teacher"]).item())
    flat = loss_tssd(zs, y, TssdConfig(kl_tau_squared=False, temperature=4.0, alpha=0.5, beta=2.0), zt, zw)
    assert flat["distill"].item() == pytest.approx((0.5 * flat["kl"] + 2.0 * flat["kl_spatial"]).item())
    a0 = loss_tssd(zs, y, TssdConfig(alpha=0.0, beta=2.0), zt, zw)
    assert a0["distill"].item() == pytest.approx(2.0 * 9.0 * a0["kl_spatial"].item())
    # passes that did not run contribute zeros
    bare = loss_tssd(zs, y, TssdConfig())
    assert bare["loss"].item() == pytest.approx(full["ce"].item())
    assert bare["kl"].item() == bare["kl_spatial"].item() == bare["ce_weak"].item() == 0.0


def test_teachers_are_detached():
    y = torch.tensor(Y)
    zs, zt, zw = tensors(grad=True)
    loss_tssd(zs, y, TssdConfig(), zt, zw)["kl"].backward()
    assert zt.grad is None and zw.grad is None and zs.grad.abs().sum() > 0  # temporal KL trains z_s only
    zs, zt, zw = tensors(grad=True)
    loss_tssd(zs, y, TssdConfig(), zt, zw)["kl_spatial"].backward()
    assert zs.grad is None and zt.grad is None and zw.grad.abs().sum() > 0  # spatial KL trains z_w only
    zs, zt, zw = tensors(grad=True)
    loss_tssd(zs, y, TssdConfig(ce_teacher=False, ce_weak=False), zt, zw)["loss"].backward()
    # the total: z_t gets nothing without its CE; z_s gets CE + temporal KL only (spatial teacher detached)
    assert zt.grad is None
    zs2 = tensors(grad=True)[0]
    (loss_tssd(zs2, y, TssdConfig(), zt.detach())["ce"] + 9.0 * loss_tssd(zs2, y, TssdConfig(), zt.detach())["kl"]).backward()
    assert torch.allclose(zs.grad, zs2.grad)
    zs, zt, zw = tensors(grad=True)
    loss_tssd(zs * 30, y, TssdConfig(), zt * 30, zw * 30)["loss"].backward()  # saturated softmax stays finite
    assert all(torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0 for t in (zs, zt, zw))


@pytest.mark.parametrize("bad,match", [
    ({"tssd": {"alpha": -1}}, "tssd.alpha = -1.0 is not allowed"),
    ({"tssd": {"temperature": 0}}, "tssd.temperature = 0.0"),
    ({"tssd": {"weak_head": "mlp"}}, "choose one of linear, conv"),
    ({"tssd": {"teacher_timesteps": 4}, "method": "tssd", "timesteps": 4}, "teacher_timesteps = 4 is not allowed"),
    ({"tssd": {"tau": 2}}, "unknown key 'tssd.tau'"),
])
def test_config_is_strict(bad, match):
    with pytest.raises(ConfigError, match=match):
        resolve(bad, {})
    assert resolve({"tssd": {"teacher_timesteps": 4}, "timesteps": 4}, {}).tssd.teacher_timesteps == 4  # only tssd checks


# --- the weak classifier and the step -----------------------------------------------------
def _inputs(T: int, frames: int | None = None) -> Inputs:
    return Inputs(SimpleNamespace(frames=frames), T, spiking=True)


def _step(model, cfg=None, T=2, shape=(1, 8, 8), name="m"):
    return TssdStep(model, cfg or TssdConfig(), _inputs(T), shape, 10, name)


@pytest.mark.parametrize("name,shape,attach,path,stage_out", [
    ("snn_digits", (1, 8, 8), "auto", "body.2", (16, 8, 8)),
    ("snn_digits", (1, 8, 8), "stage2", "body.5", (32, 4, 4)),
    ("snn_resnet18", (3, 8, 8), "auto", "body.8", (256, 2, 2)),
    ("snn_resnet18", (3, 8, 8), "stage2", "body.6", (128, 4, 4)),
    ("snn_resnet18", (3, 8, 8), "body.8", "body.8", (256, 2, 2)),
])
def test_weak_head_attaches_at_the_stage(name, shape, attach, path, stage_out):
    torch.manual_seed(0)
    model = create_model(name, 10, shape[0]).train()
    step = _step(model, TssdConfig(attach=attach), T=2, shape=shape, name=name)
    assert step.attach == path and step.weak.fc.in_features == stage_out[0] and step.teacher_timesteps == 4
    seen, passes = [], []
    step.weak.register_forward_pre_hook(lambda m, a: seen.append(tuple(a[0].shape)))
    model.register_forward_pre_hook(lambda m, a: passes.append(a[0].shape[0]))
    x, y = torch.rand(3, *shape), torch.tensor([0, 1, 2])
    parts, z = step(model, x, y)
    assert passes == [2, 4]  # the T_s pass, then the T_t pass
    assert seen == [(2, 3, *stage_out)]  # the weak head read the T_s pass's stage output only
    assert z.shape == (2, 3, 10) and all(torch.isfinite(v) for v in parts.values())
    parts["loss"].backward()
    assert step.weak.fc.weight.grad.abs().sum() > 0
    step.close()


def test_default_attach_point_of_every_spiking_model():
    """auto: stage 3, or the next-to-last stage of a model with fewer (snn_digits has two)."""
    from neurodistill.models import list_models

    for spec in list_models():
        if spec.spiking:
            model = create_model(spec.name, 10, 3)
            points = stage_points(model)
            assert len(points) >= 2, spec.name
            want = points[2] if len(points) >= 3 else points[-2]
            assert resolve_attach(model, "auto", spec.name) == want, spec.name


def test_conv_head_and_switched_off_parts():
    torch.manual_seed(0)
    model = create_model("snn_digits", 10, 1).train()
    step = _step(model, TssdConfig(weak_head="conv", attach="stage1"))
    assert isinstance(step.weak.features[0], torch.nn.Conv2d)
    parts, _ = step(model, torch.rand(2, 1, 8, 8), torch.tensor([0, 1]))
    assert parts["ce_weak"] > 0
    step.close()
    # no weak head at all when neither its CE nor the spatial KL is asked for, no T_t pass likewise
    bare = _step(model, TssdConfig(beta=0.0, ce_weak=False, alpha=0.0, ce_teacher=False))
    assert bare.weak is None and not bare.has_state()
    passes = []
    model.register_forward_pre_hook(lambda m, a: passes.append(a[0].shape[0]))
    parts, _ = bare(model, torch.rand(2, 1, 8, 8), torch.tensor([0, 1]))
    assert passes == [2] and parts["loss"].item() == pytest.approx(parts["ce"].item())


def test_teacher_pass_leaves_batchnorm_statistics_to_the_student_pass():
    torch.manual_seed(0)
    model = create_model("snn_digits", 10, 1).train()
    plain = copy.deepcopy(model)
    x, y = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    step = _step(model)
    step(model, x, y)
    plain(_inputs(2).student(x))  # the T_s pass alone
    for (k, a), b in zip(model.state_dict().items(), plain.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    both = _step(plain, TssdConfig(teacher_bn_stats=True))
    before = plain.body[1].running_mean.clone()
    both(plain, x, y)
    assert plain.body[1].num_batches_tracked.item() == 3  # the earlier pass + both passes of this step
    assert not torch.equal(before, plain.body[1].running_mean)


def test_event_frames_are_held_for_the_teacher():
    inputs = _inputs(2, frames=2)
    x = torch.arange(2.0).view(1, 2, 1, 1, 1)  # (B, T, C, H, W)
    assert inputs.student(x, 4).flatten().tolist() == [0.0, 0.0, 1.0, 1.0]
    model = create_model("snn_digits", 10, 1)
    with pytest.raises(MethodError, match="must be a multiple of 2"):
        TssdStep(model, TssdConfig(teacher_timesteps=5), inputs, (1, 8, 8), 10)


def test_bad_attach_points_are_method_errors():
    model = create_model("snn_resnet18", 10, 3)
    with pytest.raises(MethodError, match=r"'stage5' is not a stage of r18; choose auto, one of its stages \[stage1 \(body.4\)"):
        resolve_attach(model, "stage5", "r18")
    with pytest.raises(MethodError, match="'body.99' is neither a stage nor a module of r18"):
        resolve_attach(model, "body.99", "r18")
    ann = create_model("ann_digits", 10, 1)
    with pytest.raises(MethodError, match="needs a spiking model"):
        TssdStep(ann, TssdConfig(), Inputs(SimpleNamespace(frames=None), 4, spiking=False), (1, 8, 8), 10, "ann_digits")


def test_bad_attach_point_on_the_command_line(tmp_path):
    res = CliRunner().invoke(main, ["train", "--model", "snn_digits", "--method", "tssd", "--weak-attach", "stage3",
                                    "--epochs", "1", "--out", str(tmp_path / "r")])
    assert_user_error(res, "tssd.attach = 'stage3' is not a stage of snn_digits", "stage1 (body.2), stage2 (body.5)")


def test_every_setting_has_a_flag(tmp_path):
    from neurodistill.cli import TRAIN_OPTIONS
    from neurodistill.config import read_config_file

    dests = {dest for _, dest, _, _ in TRAIN_OPTIONS}
    assert {f"tssd.{f.name}" for f in fields(TssdConfig)} <= dests
    out = tmp_path / "r"
    res = CliRunner().invoke(main, ["train", "--model", "snn_digits", "--method", "tssd", "--tssd-beta", "0.5",
                                    "--teacher-timesteps", "6", "--weak-head", "conv", "--no-tssd-ce-teacher",
                                    "--epochs", "1", "--limit-train-batches", "1", "--out", str(out)])
    assert res.exit_code == 0, res.output
    cfg = resolve(read_config_file(out / "config.yaml"), {}).tssd
    assert (cfg.beta, cfg.teacher_timesteps, cfg.weak_head, cfg.ce_teacher) == (0.5, 6, "conv", False)


# --- training: checkpoint, resume, export ---------------------------------------------------
def _cfg(out, **kw):
    return resolve({"model": "snn_digits", "method": "tssd", "timesteps": 2, "batch_size": 32, "limit_train_batches": 3,
                    "out": str(out), **kw}, {})


def test_resume_restores_the_weak_head(tmp_path):
    # A constant schedule: 1 epoch, then resumed to 2, follows the same learning rates as 2 in one go.
    train(_cfg(tmp_path / "full", epochs=2, schedule="constant"))
    train(_cfg(tmp_path / "cut", epochs=1, schedule="constant"))
    cut = load_checkpoint(tmp_path / "cut" / "last.pt")
    assert cut["method"]["info"] == {"attach": "body.2", "teacher_timesteps": 4, "weak_head": "linear"}
    assert set(cut["method"]["state_dict"]) == {"weak.fc.weight", "weak.fc.bias"}
    assert not any(k.startswith("weak") for k in cut["state_dict"])
    train(_cfg(tmp_path / "cut", epochs=2, schedule="constant"), resume=True)
    a, b = load_checkpoint(tmp_path / "full" / "last.pt"), load_checkpoint(tmp_path / "cut" / "last.pt")
    for key in ("state_dict", "method"):
        sa, sb = (a[key] if key == "state_dict" else a[key]["state_dict"]), (b[key] if key == "state_dict" else b[key]["state_dict"])
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa), key
    # a checkpoint without the weak head cannot resume a tssd run
    step = _step(create_model("snn_digits", 10, 1))
    with pytest.raises(CheckpointError, match="has no 'method' entry"):
        step.load_checkpoint_entry(None, "x.pt")


def _same(a, b, where="graph"):
    if is_dataclass(a):
        assert type(a) is type(b), where
        for f in fields(a):
            _same(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _same(a[k], b[k], f"{where}[{k}]")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{where}[{i}]")
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b), where
    else:
        assert a == b, where


def assert_exports_as_plain_digits_model(ckpt_path, tmp_path):
    """The trained checkpoint's loihi2 export equals the export of a plain snn_digits with the same
    weights (the method's auxiliary modules live under 'method' only); returns the manifest."""
    from neurodistill.export.bundle import calibration_data, export_loihi2, export_module_loihi2
    from neurodistill.formats.deploy_h5 import read_graph

    ckpt = load_checkpoint(ckpt_path)
    plain = create_model("snn_digits", 10, 1)
    assert ckpt["state_dict"].keys() == plain.state_dict().keys()
    plain.load_state_dict(ckpt["state_dict"])
    a = export_loihi2(ckpt_path, tmp_path / "a", calib=64)
    x, y = calibration_data(ckpt, 64)
    b = export_module_loihi2(plain.eval(), (1, 8, 8), x, y, tmp_path / "b", timesteps=4)
    ga, gb = read_graph(tmp_path / "a" / "deploy.h5"), read_graph(tmp_path / "b" / "deploy.h5")
    _same(ga, gb)
    assert [s.weight.shape for s in ga.synapses] == [(16, 1, 3, 3), (32, 16, 3, 3), (10, 512)]  # conv, conv, linear
    assert a["layers"] == b["layers"] and a["accuracy_quantized"] == b["accuracy_quantized"]
    return a


def test_deployed_network_is_the_plain_model(tmp_path):
    """A tssd checkpoint exports exactly as the plain model with the same weights: no weak head."""

    train(_cfg(tmp_path / "run", epochs=1, timesteps=4))
    assert_exports_as_plain_digits_model(tmp_path / "run" / "best.pt", tmp_path)


@pytest.mark.slow
def test_tssd_digits_reaches_the_bar(tmp_path):
    """The demo's student settings (T=4, 30 epochs, lr 0.1) with tssd: >= 97% on the digits test split."""
    s = train(resolve({"model": "snn_digits", "method": "tssd", "timesteps": 4, "epochs": 30, "lr": 0.1, "seed": 0,
                       "out": str(tmp_path)}, {}))
    assert s["test_acc"] >= 0.97, s["test_acc"]
