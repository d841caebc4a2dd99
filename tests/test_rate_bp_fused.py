"""Rate backprop's fused spike pass against the step-by-step loop it replaced
(tests/rate_bp_reference.py, the code of commit bddfe90): the surrogates' closed-form derivatives
against autograd, one neuron in every configuration, and whole ResNet-18, VGG-11 and SEW-ResNet-18
steps, uncompiled and compiled; plus the compile fallback and the RateBackprop built once per model.

Tolerances: spikes, rates and logits of the spike pass bitwise; derivatives rtol 1e-6 (float32)
and 1e-12 (float64); eligibilities and parameter gradients 1e-6 relative to the tensor's largest
value (float32)."""

from __future__ import annotations

import copy
import gc
import itertools
import shutil
import weakref

import pytest
import torch
from torch import nn

import neurodistill.models.rate_bp as rate_bp
from neurodistill.models import create_model
from neurodistill.models import rate_bp_fused as fused
from neurodistill.models.neurons import SURROGATES, NeuronConfig, make_neuron
from neurodistill.models.rate_bp import RateBackprop, rate_step
from neurodistill.models.rate_bp_neuron import neuron_record, neuron_spec, surrogate_grad

from .rate_bp_reference import autograd_surrogate_grad, reference_record, use_reference


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| relative to max |b| (0 when both are 0)."""
    scale = b.abs().max().item()
    return (a - b).abs().max().item() / scale if scale else (a - b).abs().max().item()


# --- the surrogates' derivatives -------------------------------------------------------------------
def test_every_surrogate_of_the_package_has_a_closed_form():
    for name in SURROGATES:
        node = make_neuron(NeuronConfig(surrogate=name))
        assert fused.closed_form(node.surrogate_function) is not None, name
        assert neuron_spec(node) is not None


def _grid(alpha: float, dtype) -> torch.Tensor:
    """A dense grid, the kinks (0, ±1/alpha) and their float neighbours, tiny and huge values."""
    edge = torch.tensor([1 / alpha, -1 / alpha, 0.0], dtype=dtype)
    near = torch.cat([torch.nextafter(edge, edge + 1), torch.nextafter(edge, edge - 1)])
    far = torch.tensor([1e-30, -1e-30, 1e-3, -1e-3, 7.5, -7.5, 60.0, -60.0], dtype=dtype)
    return torch.cat([torch.linspace(-4, 4, 801, dtype=dtype), edge, near, far])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("alpha", [None, 0.7, 3.0])
@pytest.mark.parametrize("name", sorted(SURROGATES))
def test_closed_form_derivative_equals_autograd(name, alpha, dtype):
    fn = make_neuron(NeuronConfig(surrogate=name, surrogate_alpha=alpha)).surrogate_function
    u = _grid(fn.alpha, dtype)
    truth = autograd_surrogate_grad(fn, u)  # spikingjelly's own backward
    got = surrogate_grad(fn, u)
    assert got.dtype == dtype and truth.abs().max() > 0
    torch.testing.assert_close(got, truth, rtol=1e-6 if dtype == torch.float32 else 1e-12, atol=0)
    if name == "piecewise_quadratic":  # zero outside [-1/alpha, 1/alpha], a tent inside
        assert (got[u.abs() > 1 / fn.alpha] == 0).all() and (got[u.abs() < 0.5 / fn.alpha] > 0).all()


def test_other_surrogates_fall_back_to_autograd():
    from spikingjelly.activation_based import surrogate

    u = torch.linspace(-2, 2, 101)
    for fn in (surrogate.SoftSign(alpha=2.0), surrogate.ATan(alpha=2.0, spiking=False)):
        assert fused.closed_form(fn) is None
        torch.testing.assert_close(surrogate_grad(fn, u), autograd_surrogate_grad(fn, u), rtol=0, atol=0)
    node = make_neuron(NeuronConfig())
    node.surrogate_function = surrogate.SoftSign(alpha=2.0)
    assert neuron_spec(node) is None
    x = torch.randn(5, 40) + 0.8
    for a, b in zip(neuron_record(node, x), reference_record(node, x), strict=True):
        assert torch.equal(a, b)


# --- one neuron -------------------------------------------------------------------------------------
NEURONS = [
    dict(kind="lif", tau=2.0, decay_input=True),
    dict(kind="lif", tau=1.7, decay_input=True),  # 1/tau inexact: the division must stay a division
    dict(kind="lif", tau=1.3, decay_input=False),
    dict(kind="if"),
]


def _node(neuron: dict, reset: str, detach: bool, surrogate: str, dtype) -> nn.Module:
    v_reset = 0.3 if surrogate == "erf" else 0.0  # a non-zero hard reset value too
    cfg = NeuronConfig(reset=reset, detach_reset=detach, surrogate=surrogate, v_threshold=0.7, v_reset=v_reset, **neuron)
    return make_neuron(cfg).to(dtype)


def _assert_same_record(node: nn.Module, x: torch.Tensor, got, silent: bool = True) -> None:
    spikes, rate, elig = reference_record(node, x)
    assert torch.equal(got[0], spikes) and torch.equal(got[1], rate)
    assert spikes.sum() > 0 and (not silent or (spikes.sum(0) == 0).any())  # firing (and silent) neurons
    assert rel(got[2], elig) <= (1e-6 if x.dtype == torch.float32 else 1e-12)


def _at_threshold(node: nn.Module, dtype) -> torch.Tensor:
    """(6, 100001) inputs: every float within 50,000 ulps of the input that puts the first
    membrane at the threshold, so the boundary between firing and not is among them; a change
    in any rounding of the charge moves it and flips a spike."""
    v0 = 0.0 if node.v_reset is None else node.v_reset
    gain = node.tau if getattr(node, "decay_input", False) else 1.0
    x0 = torch.tensor((node.v_threshold - v0) * gain, dtype=dtype)
    bits = torch.int32 if dtype == torch.float32 else torch.int64
    x = (x0.view(bits) + torch.arange(-50_000, 50_001, dtype=bits)).view(dtype)
    return x.expand(6, -1).contiguous()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("surrogate", sorted(SURROGATES))
@pytest.mark.parametrize("reset, detach", list(itertools.product(["hard", "soft"], [True, False])))
@pytest.mark.parametrize("neuron", NEURONS, ids=["lif", "lif-tau1.7", "lif-no-decay-input", "if"])
def test_fused_record_equals_reference(neuron, reset, detach, surrogate, dtype):
    torch.manual_seed(0)
    node = _node(neuron, reset, detach, surrogate, dtype)
    x = (torch.randn(6, 3, 17, 9) * 1.2 + 0.5).to(dtype)
    _assert_same_record(node, x, neuron_record(node, x))
    x = _at_threshold(node, dtype)
    _assert_same_record(node, x, neuron_record(node, x), silent=False)
    # spikes as the real spikingjelly neuron fires them
    from spikingjelly.activation_based import functional

    functional.reset_net(node)
    with torch.no_grad():
        assert torch.equal(node(x), neuron_record(node, x)[0])


def _have_cpp_compiler() -> bool:
    return any(shutil.which(c) for c in ("g++", "c++", "clang++"))


@pytest.mark.slow
@pytest.mark.skipif(not _have_cpp_compiler(), reason="torch.compile on the CPU needs a C++ compiler")
@pytest.mark.parametrize(
    "neuron, reset, detach, surrogate, dtype",
    [
        (NEURONS[0], "hard", True, "atan", torch.float32),  # the package's default neuron
        (NEURONS[1], "hard", True, "atan", torch.float32),
        (NEURONS[2], "soft", True, "sigmoid", torch.float32),  # ESD's neuron (soft reset, sigmoid)
        (NEURONS[3], "hard", False, "erf", torch.float32),
        (NEURONS[1], "soft", False, "piecewise_quadratic", torch.float64),
    ],
)
def test_compiled_record_equals_reference(monkeypatch, neuron, reset, detach, surrogate, dtype):
    monkeypatch.setattr(fused, "COMPILE_MIN_ELEMENTS", 0)
    torch.manual_seed(0)
    node = _node(neuron, reset, detach, surrogate, dtype)
    spec = neuron_spec(node)
    for shape in [(6, 3, 17, 9), (6, 40)]:  # one graph for every shape of the same T
        x = (torch.randn(*shape) * 1.2 + 0.5).to(dtype)
        _assert_same_record(node, x, neuron_record(node, x))
    x = _at_threshold(node, dtype)
    _assert_same_record(node, x, neuron_record(node, x), silent=False)
    assert fused._compiled.get(spec) is not None  # it ran compiled, not the fallback


def test_compile_failure_falls_back(monkeypatch, caplog):
    def broken(fn, **kw):
        def run(*a):
            raise RuntimeError("no compiler here")

        return run

    monkeypatch.setattr(fused, "COMPILE_MIN_ELEMENTS", 0)
    monkeypatch.setattr(fused, "_compiled", {})
    monkeypatch.setattr(torch, "compile", broken)
    node = make_neuron(NeuronConfig())
    x = torch.randn(4, 50) + 0.8
    with caplog.at_level("WARNING"):
        got = neuron_record(node, x)
    assert "torch.compile failed (RuntimeError: no compiler here)" in caplog.text
    assert fused._compiled[neuron_spec(node)] is None  # not tried again
    _assert_same_record(node, x, got)
    _assert_same_record(node, x, neuron_record(node, x))


# --- whole models -----------------------------------------------------------------------------------
def _one_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, T: int, reference: bool) -> dict:
    """One rate-backprop step, by the package or as before: what the neurons recorded, logits, gradients."""
    seen = []

    def spy(record):
        def run(node, x_seq):
            seen.append(record(node, x_seq))
            return seen[-1]

        return run

    with pytest.MonkeyPatch.context() as mp:
        if reference:
            use_reference(mp.setattr, record=spy(reference_record))
        else:
            mp.setattr(rate_bp, "neuron_record", spy(neuron_record))
        out = rate_step(model, x, T)
        nn.functional.cross_entropy(out.logits, y).div(T).backward()
    bn = [b for b in model.modules() if isinstance(b, nn.modules.batchnorm._BatchNorm)]
    return {"records": seen, "logits": out.logits.detach(), "logits_spike": out.logits_spike,
            "grads": {n: p.grad for n, p in model.named_parameters()},
            "running": [torch.cat([b.running_mean, b.running_var]) for b in bn]}  # fmt: skip


def _assert_same_step(model: nn.Module, x: torch.Tensor, T: int) -> None:
    y = torch.arange(x.shape[0]) % 10
    ref = copy.deepcopy(model)
    new = _one_step(model, x, y, T, reference=False)
    old = _one_step(ref, x, y, T, reference=True)
    assert len(new["records"]) == len(old["records"]) > 0
    fired = 0
    for (s1, r1, e1), (s0, r0, e0) in zip(new["records"], old["records"], strict=True):
        assert torch.equal(s1, s0) and torch.equal(r1, r0)
        assert rel(e1, e0) <= 1e-6
        fired += int(s0.sum() > 0)
    assert fired >= len(old["records"]) // 2  # most layers fire: the comparison is not vacuous
    assert torch.equal(new["logits_spike"], old["logits_spike"])
    assert rel(new["logits"], old["logits"]) <= 1e-6
    for a, b in zip(new["running"], old["running"], strict=True):
        assert torch.equal(a, b)
    nonzero = 0
    for name, g in old["grads"].items():
        assert rel(new["grads"][name], g) <= 1e-6, name
        nonzero += int(g.abs().sum() > 0)
    assert nonzero > len(old["grads"]) // 2


MODELS = ["snn_resnet18", "snn_vgg11", "snn_sew_resnet18"]


@pytest.mark.parametrize("name", MODELS)
def test_model_step_equals_reference(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_channels=3).train()
    _assert_same_step(model, torch.rand(4, 3, 32, 32) * 1.5, 4)


@pytest.mark.slow
@pytest.mark.skipif(not _have_cpp_compiler(), reason="torch.compile on the CPU needs a C++ compiler")
@pytest.mark.parametrize("name", MODELS)
def test_compiled_model_step_equals_reference(monkeypatch, name):
    monkeypatch.setattr(fused, "COMPILE_MIN_ELEMENTS", 0)
    torch.manual_seed(1)
    model = create_model(name, num_classes=10, in_channels=3).train()
    _assert_same_step(model, torch.rand(4, 3, 32, 32) * 1.5, 6)
    neurons = rate_bp.classify(model)[0]
    assert all(fused._compiled.get(neuron_spec(m)) is not None for m in neurons)  # compiled, no fallback


# --- RateBackprop once per model --------------------------------------------------------------------
def test_rate_backprop_is_built_once_per_model(monkeypatch):
    built = []
    monkeypatch.setattr(rate_bp, "classify", lambda root, f=rate_bp.classify: built.append(type(root)) or f(root))
    model = create_model("snn_digits", num_classes=10, in_channels=1)
    x = torch.rand(2, 1, 8, 8)
    for _ in range(3):
        rate_step(model, x, 2).logits.sum().backward()
    assert len(built) == 1
    rbp = RateBackprop.of(model)
    assert rbp._records == {}  # released after each step
    model.body.append(nn.Identity())  # a changed model is classified again
    rate_step(model, x, 2)
    assert len(built) == 2 and RateBackprop.of(model) is not rbp
    model.body.append(nn.ReLU())
    with pytest.raises(rate_bp.MethodError, match="ReLU"):
        rate_step(model, x, 2)


def test_the_built_rate_backprop_does_not_keep_its_model_alive():
    model = create_model("snn_digits", num_classes=10, in_channels=1)
    rate_step(model, torch.rand(2, 1, 8, 8), 2).logits.sum().backward()
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None

