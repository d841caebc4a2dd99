"""Capture into the deployment graph: folding BN and pooling keeps the float outputs (< 1e-5)."""

from __future__ import annotations

import pytest
import torch
from spikingjelly.activation_based import layer, neuron
from torch import nn

from neurodistill.core.capture import capture
from neurodistill.core.float_graph import run_float
from neurodistill.core.graph import INPUT
from neurodistill.errors import UnsupportedLayerError
from neurodistill.models import NeuronConfig, create_model, list_models
from neurodistill.models.base import Net

SPIKING = [s.name for s in list_models() if s.spiking]


def _randomise_bn(model: nn.Module, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            n = m.num_features
            # strong enough that every population of a deep net spikes at random init
            m.running_mean.copy_(torch.rand(n, generator=g) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) * 0.5 + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) * 2 + 1.0)
            m.bias.data.copy_(torch.rand(n, generator=g) * 0.6 - 0.1)


@pytest.mark.parametrize("name", SPIKING)
def test_folding_keeps_the_float_outputs(name):
    torch.manual_seed(0)
    c, hw = (1, 8) if "digits" in name else (3, 32)
    model = create_model(name, 10, c, NeuronConfig(v_threshold=0.5)).eval()
    _randomise_bn(model)
    if any(isinstance(m, nn.MaxPool2d) for m in model.modules()):
        # SEW-ResNet's ImageNet stem max-pools: Loihi has no max over spikes; refused, named.
        with pytest.raises(UnsupportedLayerError, match=r"body\.3: MaxPool2d is not supported"):
            capture(model, (c, hw, hw))
        return
    graph = capture(model, (c, hw, hw), timesteps=2)
    x = torch.rand(2, 1, c, hw, hw, dtype=torch.float64)
    ref = model.double()(x)
    run = run_float(graph, x, record=True)
    out = run["logits"]
    assert out.shape == ref.shape
    assert ((out - ref).abs().max() / ref.abs().max()).item() < 1e-5
    silent = [p for p, s in run["spikes"].items() if s.sum() == 0]
    assert not silent, f"populations that never spike make the comparison weak: {silent}"
    assert not any(isinstance(s.weight, torch.Tensor) for s in graph.synapses)


def test_digits_graph_structure():
    g = capture(create_model("snn_digits", 10, 1), (1, 8, 8), timesteps=4)
    assert [p.shape for p in g.populations] == [(16, 8, 8), (32, 4, 4), (10,)]
    assert [(s.kind, s.source, s.target) for s in g.synapses] == [
        ("conv", INPUT, "body.2"), ("conv", "body.2", "body.5"), ("dense", "body.5", "readout")]
    assert g.is_chain() and g.latency_steps == 2 and g.encoding[0].host


def test_resnet_shortcuts_are_delay_matched():
    g = capture(create_model("snn_resnet18", 10, 3), (3, 32, 32))
    assert not g.is_chain()
    # An identity shortcut skips one synapse layer: it is delayed by one step.
    ident = [s for s in g.synapses if ">" in s.name]
    assert ident and all(s.kind == "conv" and s.groups == s.weight.shape[0] and s.delay == 1 for s in ident)
    for s in g.synapses:
        if not s.host:
            assert g.population(s.target).depth == g.population(s.source).depth + 1 + s.delay


class SEWBlock(nn.Module):
    """A SEW-style spike sum feeding the next layer: its synapses are duplicated."""

    def __init__(self) -> None:
        super().__init__()
        self.conv0, self.sn0 = layer.Conv2d(2, 4, 3, padding=1), neuron.IFNode(v_threshold=0.3)
        self.conv1, self.sn1 = layer.Conv2d(4, 4, 3, padding=1), neuron.IFNode(v_threshold=0.3)
        self.flat, self.fc = layer.Flatten(1), layer.Linear(4 * 6 * 6, 3)

    def forward(self, x):
        s0 = self.sn0(self.conv0(x))
        s1 = self.sn1(self.conv1(s0))
        return self.fc(self.flat(s0 + s1))


def test_sew_spike_sum_duplicates_the_next_synapses():
    torch.manual_seed(0)
    model = Net(SEWBlock(), spiking=True).eval()
    g = capture(model, (2, 6, 6), timesteps=4)
    fc = [s for s in g.synapses if s.name.startswith("body.fc")]
    assert len(fc) == 2 and {s.source for s in fc} == {"body.sn0", "body.sn1"}
    assert (fc[0].weight == fc[1].weight).all()
    x = torch.rand(4, 3, 2, 6, 6, dtype=torch.float64)
    ref = model.double()(x)
    assert torch.allclose(run_float(g, x)["logits"], ref, rtol=1e-9, atol=1e-12)


class Gate(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(x)


class Bad(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = layer.Conv2d(1, 2, 3)
        self.pool = nn.MaxPool2d(2)
        self.sn = neuron.LIFNode()
        self.gate = Gate()
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(self.gate(self.sn(self.pool(self.conv(x)))).flatten(1))


def test_every_violation_is_reported_at_once():
    with pytest.raises(UnsupportedLayerError) as e:
        capture(Net(Bad(), spiking=True), (1, 6, 6))
    msg = str(e.value)
    assert "body.pool: MaxPool2d is not supported" in msg and "body.gate: Gate is not supported" in msg
    assert "supported: Conv2d, Linear" in msg


def test_an_ann_is_refused():
    with pytest.raises(UnsupportedLayerError, match="no spiking neurons"):
        capture(create_model("ann_digits", 10, 1), (1, 8, 8))


def test_paper_convention_ops_come_from_the_original_layers():
    """k_h k_w C_in/groups C_out H_out W_out (conv) or f_in f_out (linear), before any folding."""
    g = capture(create_model("snn_digits", 10, 1), (1, 8, 8))
    assert [s.dense_ops for s in g.synapses] == [9 * 1 * 16 * 64, 9 * 16 * 32 * 16, 512 * 10]
    r18 = capture(create_model("snn_resnet18", 10, 3), (3, 32, 32))
    total = sum(s.dense_ops for s in r18.synapses)
    assert abs(total / 0.5554e9 - 1) < 1e-3  # docs/simulate.md#counting-conventions: 0.5554 G per step
    assert all(s.dense_ops == 0 for s in r18.synapses if ">" in s.name)  # identity shortcuts add no ops
    vgg = capture(create_model("snn_vgg11", 10, 3), (3, 32, 32))
    folded = next(s for s in vgg.synapses if s.weight.shape[-1] == 6)  # avg-pool folded: 6x6 kernel
    assert folded.dense_ops == 3 * 3 * folded.weight.shape[1] * folded.weight.shape[0] * folded.out_shape[1] * folded.out_shape[2]
