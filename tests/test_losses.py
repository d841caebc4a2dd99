"""Every loss against a value computed by hand, in plain Python, on T=2, B=2, K=3."""

from __future__ import annotations

import math

import pytest
import torch

from neurodistill.distill import TSER_ABLATION, LossConfig, get_method
from neurodistill.distill.losses import loss_kd, loss_tet, loss_tser
from neurodistill.errors import MethodError

from .plain_math import ce, ent, kl

Z = [  # student logits [T=2][B=2][K=3]
    [[1.0, 2.0, 0.5], [0.2, -1.0, 3.0]],
    [[2.0, 0.0, -1.0], [1.5, 1.0, 0.0]],
]
Y = [1, 2]
ZT = [[0.5, 3.0, 1.0], [-0.5, 0.5, 2.5]]  # teacher logits [B][K]


# --- an independent reference, in plain Python (and plain_math) ---------------------------
def mean(xs):
    return sum(xs) / len(xs)


def zmean(b):
    return [mean([Z[t][b][k] for t in range(len(Z))]) for k in range(3)]


def hand_tser(a, tau, lam, sep_ce=True, sep_kl=True, tau2=True, soft_h=True):
    B, T = len(Y), len(Z)
    ce_ = mean([mean([ce(Z[t][b], Y[b]) for b in range(B)]) for t in range(T)]) if sep_ce else mean([ce(zmean(b), Y[b]) for b in range(B)])
    kl_ = (mean([mean([kl(ZT[b], Z[t][b], tau) for b in range(B)]) for t in range(T)]) if sep_kl
           else mean([kl(ZT[b], zmean(b), tau) for b in range(B)]))
    h = mean([mean([ent(Z[t][b], tau if soft_h else 1.0) for b in range(B)]) for t in range(T)])
    return (1 - a) * ce_ + a * (tau**2 if tau2 else 1.0) * kl_ - lam * h


# ------------------------------------------------------------------------------------------
def tensors(requires_grad=False):
    z = torch.tensor(Z, dtype=torch.float64, requires_grad=requires_grad)
    return z, torch.tensor(Y), torch.tensor(ZT, dtype=torch.float64)


def test_none_is_ce_of_mean():
    z, y, _ = tensors()
    fn, needs_teacher = get_method("none")
    assert not needs_teacher
    want = mean([ce(zmean(b), Y[b]) for b in range(2)])
    assert fn(z, y, LossConfig())["loss"].item() == pytest.approx(want, abs=1e-6)


def test_tet_is_mean_of_per_step_ce():
    z, y, _ = tensors()
    want = mean([ce(Z[t][b], Y[b]) for t in range(2) for b in range(2)])
    assert loss_tet(z, y, LossConfig())["loss"].item() == pytest.approx(want, abs=1e-6)


@pytest.mark.parametrize("a,tau", [(0.5, 5.0), (0.3, 2.0), (1.0, 4.0)])
def test_kd_by_hand(a, tau):
    z, y, zt = tensors()
    want = mean([(1 - a) * ce(zmean(b), Y[b]) + a * tau**2 * kl(ZT[b], zmean(b), tau) for b in range(2)])
    parts = loss_kd(z, y, LossConfig(alpha=a, temperature=tau), zt)
    assert parts["loss"].item() == pytest.approx(want, abs=1e-6)
    assert (parts["task"] + parts["distill"] + parts["reg"]).item() == pytest.approx(parts["loss"].item(), abs=1e-12)


def test_kd_at_one_step_is_hintons_kd():
    """Hinton et al. 2015: (1-a) CE(z, y) + a tau^2 KL(p_tea^tau || p^tau), one forward pass."""
    a, tau = 0.7, 3.0
    z1 = torch.tensor([Z[0]], dtype=torch.float64)
    want = mean([(1 - a) * ce(Z[0][b], Y[b]) + a * tau**2 * kl(ZT[b], Z[0][b], tau) for b in range(2)])
    got = loss_kd(z1, torch.tensor(Y), LossConfig(alpha=a, temperature=tau), torch.tensor(ZT, dtype=torch.float64))
    assert got["loss"].item() == pytest.approx(want, abs=1e-6)


@pytest.mark.parametrize("a,tau,lam", [(0.5, 5.0, 0.01), (0.2, 2.0, 0.2), (0.9, 6.0, 1e-4)])
def test_tser_by_hand(a, tau, lam):
    z, y, zt = tensors()
    got = loss_tser(z, y, LossConfig(alpha=a, temperature=tau, lam=lam), zt)
    assert got["loss"].item() == pytest.approx(hand_tser(a, tau, lam), abs=1e-6)


@pytest.mark.parametrize("name", list(TSER_ABLATION))
def test_tser_ablation_configurations_by_hand(name):
    sw = {"lam": 0.05, **TSER_ABLATION[name]}
    z, y, zt = tensors()
    got = loss_tser(z, y, LossConfig(alpha=0.5, temperature=4.0, **sw), zt)
    want = hand_tser(0.5, 4.0, sw["lam"], sep_ce=sw["separate_ce"], sep_kl=sw["separate_kl"])
    assert got["loss"].item() == pytest.approx(want, abs=1e-6)


def test_tser_switches_by_hand():
    z, y, zt = tensors()
    cfg = LossConfig(alpha=0.4, temperature=3.0, lam=0.1, kl_tau_squared=False, entropy_on_softened=False)
    want = hand_tser(0.4, 3.0, 0.1, tau2=False, soft_h=False)
    assert loss_tser(z, y, cfg, zt)["loss"].item() == pytest.approx(want, abs=1e-6)


def test_tser_plain_kd_ablation_equals_kd():
    z, y, zt = tensors()
    cfg = LossConfig(alpha=0.5, temperature=5.0, **TSER_ABLATION["kd"])
    assert loss_tser(z, y, cfg, zt)["loss"].item() == pytest.approx(loss_kd(z, y, cfg, zt)["loss"].item(), abs=1e-12)


def test_tser_with_alpha_zero_and_lambda_zero_is_tet():
    z, y, zt = tensors()
    a = loss_tser(z, y, LossConfig(alpha=0.0, lam=0.0), zt)["loss"]
    b = loss_tet(z, y, LossConfig())["loss"]
    assert a.item() == pytest.approx(b.item(), abs=1e-12)


@pytest.mark.parametrize("method", ["none", "tet", "kd", "tser"])
def test_gradients_are_finite(method):
    fn, _ = get_method(method)
    z, y, zt = tensors(requires_grad=True)
    big = (z * 30).detach().requires_grad_(True)  # large logits: saturated softmax must stay finite
    for inp in (z, big):
        fn(inp, y, LossConfig(lam=0.1), zt * 30)["loss"].backward()
        assert inp.grad is not None and torch.isfinite(inp.grad).all() and inp.grad.abs().sum() > 0


def test_unknown_method_is_a_typed_error():
    with pytest.raises(MethodError, match="unknown method 'foo'; available: none, tet, kd, tser"):
        get_method("foo")


# --- --ce-temperature: CE on Q^stu(t) = softmax_tau(z[t]) (TSER Eq. 4 and 8 as written) -----------
def ce_at(v, y, tau):
    from .plain_math import softmax

    return -math.log(softmax(v, tau)[y])


@pytest.mark.parametrize("tau_ce", [1.0, 5.0, 0.5])
def test_ce_temperature_by_hand(tau_ce):
    z, y, zt = tensors()
    a, tau, lam = 0.4, 3.0, 0.02
    B, T = len(Y), len(Z)
    ce_t = mean([mean([ce_at(Z[t][b], Y[b], tau_ce) for b in range(B)]) for t in range(T)])
    kl_ = mean([mean([kl(ZT[b], Z[t][b], tau) for b in range(B)]) for t in range(T)])
    h = mean([mean([ent(Z[t][b], tau) for b in range(B)]) for t in range(T)])
    cfg = LossConfig(alpha=a, temperature=tau, lam=lam, ce_temperature=tau_ce)
    out = loss_tser(z, y, cfg, zt)
    assert out["ce"].item() == pytest.approx(ce_t, abs=1e-9)
    assert out["loss"].item() == pytest.approx((1 - a) * ce_t + a * tau**2 * kl_ - lam * h, abs=1e-9)
    ce_mean = mean([ce_at(zmean(b), Y[b], tau_ce) for b in range(B)])
    kd = loss_kd(z, y, cfg, zt)
    assert kd["ce"].item() == pytest.approx(ce_mean, abs=1e-9)
    assert kd["loss"].item() == pytest.approx(
        (1 - a) * ce_mean + a * tau**2 * mean([kl(ZT[b], zmean(b), tau) for b in range(B)]), abs=1e-9)
    if tau_ce != 1.0:  # the two readings differ on these logits
        assert out["ce"].item() != pytest.approx(mean([ce(Z[t][b], Y[b]) for t in range(T) for b in range(B)]), abs=1e-6)


def test_ce_temperature_default_is_ce_on_the_logits():
    z, y, zt = tensors()
    assert LossConfig().ce_temperature == 1.0
    assert loss_tser(z, y, LossConfig(), zt)["ce"].item() == pytest.approx(
        mean([ce(Z[t][b], Y[b]) for t in range(2) for b in range(2)]), abs=1e-9)


@pytest.mark.parametrize("bad", ["0", "-1", "inf", "nan"])
def test_ce_temperature_out_of_range_is_one_line_exit_2(bad, tmp_path):
    from click.testing import CliRunner

    from neurodistill.cli import main

    res = CliRunner().invoke(main, ["train", "--model", "snn_digits", "--ce-temperature", bad, "--epochs", "1",
                                    "--out", str(tmp_path / "run")])
    assert res.exit_code == 2, res.output
    assert res.output.startswith("error: ") and res.output.count("\n") == 1, res.output
    assert "ce_temperature" in res.output and "must be a number > 0" in res.output
    assert not (tmp_path / "run").exists()
