"""Rate-based backprop: exactness of the rate pass, eligibility = BPTT gradient, BN statistics,
and a short training run.

Tolerances: eligibility vs autograd 1e-6 (float32) and 1e-12 (float64); rate vs spike-pass
logits 1e-5 (float32); T = 1 gradients vs BPTT rtol 1e-9 (float64)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from neurodistill.errors import MethodError
from neurodistill.models import create_model
from neurodistill.models.neurons import NeuronConfig, make_neuron
from neurodistill.train.rate_bp import RateBackprop, neuron_record, rate_step, scale_grad

# --- (b) one neuron, constant input: eligibility == BPTT gradient of mean_t s[t] ------------------
INPUTS = [-0.5, 0.3, 0.8, 0.99, 1.0, 1.2, 1.7, 2.5, 4.0]  # below threshold, near it, and firing often


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("detach", [True, False])
@pytest.mark.parametrize(
    "neuron",
    [
        dict(kind="lif", tau=2.0, decay_input=True, surrogate="atan"),
        dict(kind="lif", tau=1.25, decay_input=False, surrogate="sigmoid"),  # the reference's neuron
        dict(kind="lif", tau=4.0, decay_input=True, surrogate="sigmoid", v_reset=0.3),
        dict(kind="if", surrogate="atan"),
    ],
)
def test_eligibility_equals_bptt_gradient(neuron, reset, detach, dtype):
    T = 8
    node = make_neuron(NeuronConfig(reset=reset, detach_reset=detach, **neuron)).to(dtype)
    x = torch.tensor(INPUTS, dtype=dtype, requires_grad=True)
    from spikingjelly.activation_based import functional

    functional.reset_net(node)
    s = node(x.expand(T, -1))  # the real spikingjelly neuron, BPTT through its own backward
    s.mean(0).sum().backward()
    spikes, rate, elig = neuron_record(node, x.detach().expand(T, -1))
    assert torch.equal(spikes, s.detach())  # the same dynamics
    assert torch.equal(rate, s.detach().mean(0))
    assert spikes.sum() > 0 and (spikes.sum(0) == 0).any()  # both firing and silent inputs
    assert (elig - x.grad).abs().max().item() <= 1e-6
    if dtype == torch.float64:
        assert torch.allclose(elig, x.grad, rtol=0, atol=1e-12)


def test_hard_reset_kappa_restarts_after_a_spike():
    """Hand-derived case: IF, hard detached reset, x = 0.6: fires at t=1 and t=3 (t from 0)."""
    node = make_neuron(NeuronConfig(kind="if", reset="hard", surrogate="sigmoid")).double()
    x = torch.tensor([0.6], dtype=torch.float64)
    spikes, _, elig = neuron_record(node, x.expand(4, 1))
    assert spikes[:, 0].tolist() == [0.0, 1.0, 0.0, 1.0]
    # H = 0.6, 1.2, 0.6, 1.2; kappa = 1, 2, 1 (after the spike), 2
    def sg(u):
        s = torch.sigmoid(torch.tensor(4.0 * u, dtype=torch.float64))
        return (4.0 * s * (1 - s)).item()

    expected = (1 * sg(-0.4) + 2 * sg(0.2) + 1 * sg(-0.4) + 2 * sg(0.2)) / 4
    assert elig.item() == pytest.approx(expected, abs=1e-12)


# --- (a) rate-pass logits == time-mean of spike-pass logits ----------------------------------------
@pytest.mark.parametrize("name", ["snn_resnet18", "snn_vgg11"])
def test_rate_logits_equal_mean_spike_logits(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_channels=3).train()
    x = torch.rand(2, 3, 32, 32)
    out = rate_step(model, x, 4)
    assert out.logits.shape == (2, 10) and out.logits_spike.shape == (4, 2, 10)
    assert out.logits.requires_grad and not out.logits_spike.requires_grad
    assert (out.logits - out.logits_spike.mean(0)).abs().max().item() <= 1e-5
    assert out.logits_spike.abs().max() > 0.01  # not a trivially silent network
    # The spike pass is the model's own forward.
    with torch.no_grad():
        z = model(x.unsqueeze(0).expand(4, *x.shape))
    assert torch.equal(z, out.logits_spike)


@pytest.mark.parametrize("name", ["snn_digits", "snn_sew_resnet18", "snn_resnet19"])
def test_t1_rate_gradients_equal_bptt(name):
    """With T = 1 rate backprop is BPTT exactly: checks BN gradient handling, max pool, residuals."""
    torch.manual_seed(0)
    c, size = (1, 8) if name == "snn_digits" else (3, 32)
    model = create_model(name, num_classes=10, in_channels=c).double().train()
    ref = copy.deepcopy(model)
    x = torch.rand(3, c, size, size, dtype=torch.float64) * 2
    y = torch.tensor([0, 1, 2])
    out = rate_step(model, x, 1)
    nn.functional.cross_entropy(out.logits, y).backward()
    nn.functional.cross_entropy(ref(x.unsqueeze(0))[0], y).backward()
    assert torch.allclose(out.logits, ref(x.unsqueeze(0))[0].detach(), atol=1e-12)
    fired = 0
    for (n, p), q in zip(model.named_parameters(), ref.parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad, rtol=1e-9, atol=1e-12), n
        fired += int(q.grad.abs().sum() > 0)
    assert fired > len(list(model.parameters())) // 2


def test_event_input_and_taps():
    torch.manual_seed(0)
    model = create_model("snn_resnet18", num_classes=5, in_channels=2)
    x_seq = torch.rand(3, 2, 2, 16, 16)  # event frames, time first
    out = rate_step(model, x_seq, taps=["body.4", "body.6"])
    assert out.timesteps == 3
    assert (out.logits - out.logits_spike.mean(0)).abs().max().item() <= 1e-5
    assert out.taps["body.4"].shape == (2, 64, 16, 16) and out.taps["body.6"].shape == (2, 128, 8, 8)
    assert out.taps["body.6"].requires_grad
    out.taps["body.4"].sum().backward()  # a stage output's gradient reaches the stem
    assert model.body[0].weight.grad is not None and model.body[0].weight.grad.abs().sum() > 0
    with pytest.raises(MethodError, match="no module named"):
        rate_step(model, x_seq, taps=["body.99"])


# --- (c) BatchNorm running statistics: updated by the spike pass only ------------------------------
def test_running_stats_only_in_spike_pass():
    torch.manual_seed(0)
    model = create_model("snn_digits", num_classes=10, in_channels=1).train()
    plain = copy.deepcopy(model)
    x = torch.rand(8, 1, 8, 8)
    x_seq = x.unsqueeze(0).expand(4, *x.shape)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    before = [(b.running_mean.clone(), b.running_var.clone(), b.num_batches_tracked.clone()) for b in bns]

    rbp = RateBackprop(model)
    rbp.spike_pass(x_seq)
    with torch.no_grad():
        plain(x_seq)  # what one ordinary forward does to the statistics
    after_spike = [(b.running_mean.clone(), b.running_var.clone(), b.num_batches_tracked.clone()) for b in bns]
    for (m0, _, n0), (m1, _, n1) in zip(before, after_spike, strict=True):
        assert not torch.equal(m0, m1) and n1 == n0 + 1
    for b, p in zip(bns, [m for m in plain.modules() if isinstance(m, nn.BatchNorm2d)], strict=True):
        assert torch.allclose(b.running_mean, p.running_mean) and torch.allclose(b.running_var, p.running_var)

    logits, _ = rbp.rate_pass(x)
    logits.sum().backward()
    for b, (m1, v1, n1) in zip(bns, after_spike, strict=True):
        assert torch.equal(b.running_mean, m1) and torch.equal(b.running_var, v1) and torch.equal(b.num_batches_tracked, n1)


def test_rate_pass_needs_spike_pass_and_restores_forward():
    model = create_model("snn_digits", num_classes=10, in_channels=1)
    rbp = RateBackprop(model)
    with pytest.raises(MethodError, match="before spike_pass"):
        rbp.rate_pass(torch.rand(2, 1, 8, 8))
    rate_step(model, torch.rand(2, 1, 8, 8), 2)
    assert all("forward" not in m.__dict__ for m in model.modules())  # nothing left patched


@pytest.mark.parametrize(
    "extra, match",
    [(nn.ReLU(), "ReLU"), (nn.Dropout(0.1), "Dropout")],
)
def test_unsupported_layers_raise(extra, match):
    model = create_model("snn_digits", num_classes=10, in_channels=1)
    model.body.append(extra)
    with pytest.raises(MethodError, match=match):
        rate_step(model, torch.rand(2, 1, 8, 8), 2)
    with pytest.raises(MethodError, match="spiking model"):
        rate_step(create_model("ann_digits", num_classes=10, in_channels=1), torch.rand(2, 1, 8, 8), 2)


def test_scale_grad():
    w = torch.tensor(2.0, requires_grad=True)
    loss = scale_grad(w * 3, 4)
    loss.backward()
    assert loss.item() == 6.0 and w.grad.item() == pytest.approx(0.75)


# --- (e) a short rate-backprop training run on digits lowers the loss --------------------------------
def test_rate_bp_training_lowers_loss():
    from neurodistill.data.digits import digits_arrays

    torch.manual_seed(0)
    x_tr, y_tr, _, _ = digits_arrays()
    x, y = x_tr[:256], y_tr[:256]
    T = 4
    model = create_model("snn_digits", num_classes=10, in_channels=1).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    def eval_loss() -> float:
        with torch.no_grad():
            return nn.functional.cross_entropy(model(x.unsqueeze(0).expand(T, *x.shape)).mean(0), y).item()

    start = eval_loss()
    for step in range(40):
        i = torch.arange(64) + 64 * (step % 4)
        out = rate_step(model, x[i], T)
        loss = nn.functional.cross_entropy(out.logits, y[i])
        opt.zero_grad()
        (loss / out.timesteps).backward()
        opt.step()
    end = eval_loss()
    assert end < 0.5 * start, (start, end)
