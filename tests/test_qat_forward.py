"""QAT's training forward is the exported network: the same integers as export, the same spikes
as `run_fxp` on every layer and step, the same readout voltage; and gradients reach every
trainable parameter."""

from __future__ import annotations

import pytest
import torch
from spikingjelly.activation_based import layer, neuron, surrogate
from torch import nn

from neurodistill.core.capture import capture
from neurodistill.core.fxp import run_fxp
from neurodistill.core.loihi2 import encoding_bias, encoding_current, quantize_graph
from neurodistill.errors import UnsupportedLayerError
from neurodistill.export.bundle import dataset_samples
from neurodistill.models import NeuronConfig, create_model
from neurodistill.models.base import Net
from neurodistill.qat.deploy import deploy_graph, fxp_accuracy
from neurodistill.qat.forward import Deployment

from .test_export_capture import _randomise_bn

T = 4


def _lif(**kw):
    return neuron.LIFNode(tau=kw.pop("tau", 2.0), surrogate_function=surrogate.ATan(), detach_reset=True,
                          step_mode="m", **kw)


class _Residual(nn.Module):
    """conv-BN + identity shortcut into one LIF (a ResNet block without downsampling)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = layer.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn = layer.BatchNorm2d(c)
        self.sn = _lif(v_threshold=0.5)

    def forward(self, x):
        return self.sn(self.bn(self.conv(x)) + x)


def residual_pooled_net() -> Net:
    """Every construct QAT maps: identity shortcut, AvgPool2d before a conv, IF and decay_input=False
    LIF with v_reset != 0 and tau = 3 (a decay that truncates), adaptive pooling and flatten before the classifier, a conv bias."""
    body = nn.Sequential(
        layer.Conv2d(1, 8, 3, 1, 1, bias=True), layer.BatchNorm2d(8), _lif(v_threshold=0.5),
        _Residual(8),
        layer.AvgPool2d(2), layer.Conv2d(8, 16, 3, 1, 1, bias=False), layer.BatchNorm2d(16),
        neuron.IFNode(v_threshold=0.75, surrogate_function=surrogate.ATan(), step_mode="m"),
        layer.Conv2d(16, 16, 3, 1, 1, bias=False), layer.BatchNorm2d(16),
        _lif(v_threshold=0.5, decay_input=False, v_reset=-0.25, tau=3.0),
        layer.AdaptiveAvgPool2d((2, 2)), layer.Flatten(1), layer.Linear(64, 10),
    )
    return Net(body, spiking=True)


def digits_net() -> Net:
    return create_model("snn_digits", 10, 1, NeuronConfig(v_threshold=0.5))


MODELS = {"snn_digits": digits_net, "residual_pooled": residual_pooled_net}


@pytest.fixture(scope="module")
def data():
    x, y = dataset_samples("digits", None, {}, 96)
    return x, y


def _setup(name: str, bits: int, data):
    torch.manual_seed(0)
    model = MODELS[name]()
    _randomise_bn(model)
    x, _ = data
    dep = Deployment.for_model(model, (1, 8, 8), bits, x)
    return model, dep


def _qat_spikes(model, dep, x):
    """The QAT forward's spikes per neuron module `(T, B, ...)` and its output `(T, B, K)`."""
    rec = {}
    hooks = [m.register_forward_hook(lambda m, a, out, n=n: rec.__setitem__(n, out.detach()))
             for n, m in model.named_modules() if isinstance(m, neuron.BaseNode)]
    try:
        with torch.no_grad(), dep.active(model):
            z = model(x.unsqueeze(0).repeat(T, 1, 1, 1, 1))
    finally:
        for h in hooks:
            h.remove()
    return rec, z


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("name", list(MODELS))
def test_integers_are_the_exports(name, bits, data):
    """Scales, weight and bias mantissas, thresholds and decays: exactly export's own choice."""
    model, dep = _setup(name, bits, data)
    x, _ = data
    graph = capture(model, (1, 8, 8), timesteps=T)
    enc_max = float(abs(encoding_current(graph, x.numpy())).max())
    quantize_graph(graph, bits, enc_max)  # export's own scales, not the deployment's
    with torch.no_grad():
        vals = dep.values(model)
    for p in graph.populations:
        pv = vals["pops"][p.name]
        assert (pv.scale, pv.v_decay, pv.v_th_mant) == (p.scale, p.v_decay, p.v_th_mant), p.name
        assert torch.equal(pv.bias.long(), torch.as_tensor(p.bias_mant).long()), p.name
    for s in graph.synapses:
        if s.host:
            continue
        q = vals["weights"][s.name].long()
        t = dep.plan.terms[s.name]
        w = torch.as_tensor(s.weight_int)
        if t.pool > 1:
            w = w[:, :, :: t.pool, :: t.pool]  # capture repeats each tap k x k times
        elif t.rep is not None:
            w = w[:, t.rep]
        assert torch.equal(q, w), s.name


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("name", list(MODELS))
def test_training_forward_has_every_spike_of_run_fxp(name, bits, data):
    model, dep = _setup(name, bits, data)
    x, _ = data
    x = x[:24]
    graph = deploy_graph(dep, model, T)
    bias, _ = encoding_bias(graph, encoding_current(graph, x.numpy()))
    ref = run_fxp(graph, torch.as_tensor(bias), T, record=True)
    rec, z = _qat_spikes(model, dep, x)
    fired = 0
    for p in graph.populations[:-1]:
        window = ref["spikes"][p.name][p.depth: p.depth + T]
        got = rec[p.name].bool()
        assert got.shape == window.shape, p.name
        assert torch.equal(got, window), f"{p.name}: {int((got != window).sum())} of {got.numel()} spikes differ"
        fired += int(window.sum())
    assert fired > 0.05 * sum(ref["spikes"][p.name].numel() for p in graph.populations[:-1]) / (1 + graph.latency_steps)
    # the readout integrates (a + B) << 6 at every step of its window: the outputs' sum, times 64 s
    s = graph.readout.scale
    v = (z.double().sum(0) * s * 64).round().long()
    assert torch.equal(v, ref["v_readout"]), "readout voltage"
    assert torch.equal(z.double().sum(0).argmax(-1), ref["v_readout"].argmax(-1))


def test_gradients_reach_every_parameter(data):
    model, dep = _setup("residual_pooled", 8, data)
    x, y = data
    with dep.active(model):
        z = model(x[:32].unsqueeze(0).repeat(T, 1, 1, 1, 1))
    torch.nn.functional.cross_entropy(z.mean(0), y[:32]).backward()
    for n, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, n
    # outside the block the model is the plain float one again
    model.zero_grad()
    with torch.no_grad():
        plain = model(x[:4].unsqueeze(0).repeat(T, 1, 1, 1, 1))
        with dep.active(model):
            deployed = model(x[:4].unsqueeze(0).repeat(T, 1, 1, 1, 1))
    assert not torch.equal(plain, deployed)
    assert all("forward" not in m.__dict__ for m in model.modules())


def test_fxp_accuracy_is_the_exported_manifests(tmp_path, data):
    """Export with the deployment's scales gives accuracy_quantized = QAT's fxp accuracy on the same samples."""
    from neurodistill.export.bundle import export_module_loihi2

    model, dep = _setup("snn_digits", 6, data)
    x, y = data
    acc = fxp_accuracy(dep, model, x, y, T)["acc"]
    manifest = export_module_loihi2(model, (1, 8, 8), x, y, tmp_path / "b", timesteps=T, weight_bits=6)
    # export calibrates the encoding on the same samples, so its own scales are the deployment's here
    assert [layer["scale"] for layer in manifest["layers"]] == list(dep.scales(model).values())
    assert manifest["accuracy_quantized"] == acc


def test_soft_reset_is_refused():
    model = create_model("snn_digits", 10, 1, NeuronConfig(reset="soft"))
    with pytest.raises(UnsupportedLayerError, match="soft reset"):
        Deployment.for_model(model, (1, 8, 8), 8, torch.rand(4, 1, 8, 8))


@pytest.mark.parametrize("detach", [True, False])
@pytest.mark.parametrize("name,pop", [("snn_digits", "body.5"), ("residual_pooled", "body.10")])
def test_rate_backprop_eligibility_is_the_deployed_neurons_bptt_gradient(name, pop, detach, data):
    """rate backprop's spike pass (`qat_record`): spikes of the deployed neuron, and the eligibility
    equals autograd's gradient of the firing rate through the deployed dynamics for a constant input."""
    model, dep = _setup(name, 8, data)
    node = dict(model.named_modules())[pop]
    node.detach_reset = detach
    with torch.no_grad():
        pv = dep.values(model)["pops"][pop]
    g = torch.Generator().manual_seed(3)
    th = pv.v_th_mant / pv.scale
    shape = dep.plan.population(pop).shape
    x = (torch.randint(0, int(th * pv.scale * 1.5) + 2, (16, *shape), generator=g).double() / pv.scale).requires_grad_()
    x_seq = x.unsqueeze(0).expand(6, *x.shape)
    spikes = dep._neuron(node, None, pv, x_seq)
    spikes.mean(0).sum().backward()
    rec_spikes, rate, elig = dep.record(node, pv, x_seq.detach())
    assert torch.equal(rec_spikes, spikes.detach())
    assert torch.equal(rate, spikes.detach().mean(0))
    assert spikes.detach().any() and x.grad.abs().sum() > 0
    assert torch.allclose(elig, x.grad, rtol=1e-9, atol=1e-12)


def test_rate_backprop_gradients_reach_every_parameter(data):
    """Rate backprop's spike pass runs without grad: the rate pass must still see weights with grad."""
    from neurodistill.train.rate_bp import rate_step

    model, dep = _setup("residual_pooled", 8, data)
    x, y = data
    with dep.active(model):
        out = rate_step(model, x[:32], T)
    torch.nn.functional.cross_entropy(out.logits, y[:32]).backward()
    for n, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, n
