"""Every registered model: forward shape, no NaN, every parameter gets a gradient, T=1 and T=4."""

from __future__ import annotations

import pytest
import torch

from neurodistill.errors import ConfigError, ModelError
from neurodistill.models import NeuronConfig, create_model, get_spec, list_models, make_neuron

SPECS = list_models()


def input_for(name: str, spiking: bool, T: int, batch: int = 2) -> torch.Tensor:
    c, hw = (1, 8) if "digits" in name else (3, 32)
    shape = (batch, c, hw, hw)
    return torch.rand(T, *shape) if spiking else torch.rand(*shape)


def test_registry_has_every_family_and_twins():
    names = {s.name for s in SPECS}
    for fam in ("resnet18", "resnet19", "resnet34", "vgg11", "vgg16", "sew_resnet18", "sew_resnet34", "digits"):
        assert {f"snn_{fam}", f"ann_{fam}"} <= names
    for s in SPECS:
        assert get_spec(s.twin).twin == s.name and get_spec(s.twin).spiking != s.spiking


# ANN twins have no time axis: one case each.
CASES = [(s.name, T) for s in SPECS for T in ((1, 4) if s.spiking else (1,))]


@pytest.mark.parametrize("name,T", CASES)
def test_forward_backward(name, T):
    spec = get_spec(name)
    torch.manual_seed(0)
    # A low threshold keeps deep spiking nets active at random init, so every path carries signal
    # (a layer that never spikes gives the layer after it an exactly zero weight gradient).
    neuron = NeuronConfig(v_threshold=0.25) if spec.spiking else None
    model = create_model(name, num_classes=7, in_channels=1 if "digits" in name else 3, neuron=neuron)
    x = input_for(name, spec.spiking, T)
    out = model(x)
    assert out.shape == ((T, 2, 7) if spec.spiking else (2, 7))
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: {pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name}: {pname} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name}: {pname} has an all-zero gradient"


def test_state_is_reset_between_calls():
    torch.manual_seed(0)
    model = create_model("snn_digits", 10, 1)
    x = torch.rand(4, 3, 1, 8, 8)
    a, b = model(x), model(x)
    assert torch.equal(a, b)


def test_neuron_settings_reach_spikingjelly():
    n = make_neuron(NeuronConfig(tau=4.0, decay_input=False, v_threshold=0.5, reset="soft", detach_reset=False, surrogate="sigmoid", surrogate_alpha=3.0))
    assert (n.tau, n.decay_input, n.v_threshold, n.v_reset, n.detach_reset, n.step_mode) == (4.0, False, 0.5, None, False, "m")
    assert type(n.surrogate_function).__name__ == "Sigmoid" and n.surrogate_function.alpha == 3.0
    hard = make_neuron(NeuronConfig())
    assert hard.v_reset == 0.0, "the default reset is hard to 0: what Loihi 2 runs"


def test_lif_dynamics_by_hand():
    """spikingjelly LIF, decay_input, hard reset: H = V + (X - V)/tau; spike if H >= 1; V = 0 after."""
    n = make_neuron(NeuronConfig(tau=2.0))
    x = torch.tensor([[0.8], [0.8], [0.8], [3.0]])
    # V: 0.4 -> 0.6 -> 0.7 -> 0.7 + (3 - 0.7)/2 = 1.85 fires
    assert n(x).flatten().tolist() == [0.0, 0.0, 0.0, 1.0]


@pytest.mark.parametrize("bad,match", [
    ({"reset": "half"}, "neuron.reset = 'half' is not allowed"),
    ({"tau": 0.5}, "tau > 1"),
    ({"surrogate": "relu"}, "neuron.surrogate = 'relu'"),
    ({"nope": 1}, "unknown neuron setting"),
])
def test_bad_neuron_settings(bad, match):
    with pytest.raises(ConfigError, match=match):
        NeuronConfig.from_dict(bad)


def test_unknown_model():
    with pytest.raises(ModelError, match="unknown model 'resnet5'"):
        create_model("resnet5")
