"""Loihi 2's CUBA neuron with a current decay (spikingjelly CUBALIFNode, iDecay < 4096), without Lava.

Truth: trajectories computed by hand, spikingjelly's own CUBALIFNode run, the framework's own
run of its NIR export (spikingjelly, Norse), and the independent numpy integer reference of
tests/test_export_lava.py (written from Lava's equations). Lava itself: tests/test_cuba_lava.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from spikingjelly.activation_based import layer, neuron
from torch import nn

from neurodistill.config import resolve
from neurodistill.core.capture import capture
from neurodistill.core.float_graph import run_float
from neurodistill.core.fxp import run_fxp
from neurodistill.core.loihi2 import encoding_bias, encoding_current, quantize_graph
from neurodistill.errors import ConfigError, MethodError, UnsupportedLayerError
from neurodistill.models.base import Net
from neurodistill.models.neurons import NeuronConfig, make_neuron
from neurodistill.models.registry import create_model

from .test_export_lava import reference
from .test_nir_in_norse import norse_run
from .test_nir_in_norse import write as write_norse


def cuba(c_decay: float, v_decay: float, th: float) -> nn.Module:
    return neuron.CUBALIFNode(c_decay=c_decay, v_decay=v_decay, v_threshold=th, v_reset=0.0)


def cuba_net() -> tuple[Net, tuple[int, ...]]:
    """Conv chain: the host-fed population without current memory, then two with current decay
    (0.75 and 0.6: iDecay 1024 and 1638, not powers of two) and bias-free synapses."""
    torch.manual_seed(0)
    body = nn.Sequential(layer.Conv2d(2, 4, 3, padding=1), cuba(0.0, 0.5, 0.5),
                         layer.Conv2d(4, 6, 3, stride=2, padding=1, bias=False), cuba(0.75, 0.5, 0.8),
                         layer.Flatten(1), layer.Linear(6 * 3 * 3, 16, bias=False), cuba(0.6, 0.9, 0.6),
                         layer.Linear(16, 3))
    with torch.no_grad():
        body[2].weight.mul_(2.0)
        body[5].weight.mul_(3.0)
    return Net(body, spiking=True).eval(), (2, 6, 6)


def _x(shape, n=16, seed=1):
    return torch.rand(n, *shape, generator=torch.Generator().manual_seed(seed)) * 1.5


def quantized(model, shape, T):
    graph = capture(model, shape, timesteps=T)
    quantize_graph(graph, 8, encoding_max=float(np.abs(encoding_current(graph, _x(shape, 64, 9).numpy())).max()))
    return graph


def test_cuba_node_follows_the_hand_computed_trajectory():
    # tau = 4, tau_syn = 2: c = 0.5 c + x, v = 0.75 v + c, threshold 1, input 0.3 every step:
    # c = .3 .45 .525 .5625 .58125; v = .3 .675 1.03125 (spike, 0) .5625 1.003125 (spike)
    node = make_neuron(NeuronConfig(kind="cuba", tau=4.0, tau_syn=2.0))
    assert isinstance(node, neuron.CUBALIFNode) and node.step_mode == "m" and node.detach_reset
    assert (node.c_decay, node.v_decay, node.v_reset) == (0.5, 0.75, 0.0)
    s = node(torch.full((5, 1), 0.3, dtype=torch.float64))
    assert s.flatten().tolist() == [0, 0, 1, 0, 1]
    assert float(node.c) == pytest.approx(0.58125) and float(node.v) == 0.0


def test_cuba_options_and_refusals():
    cfg = resolve({"neuron": {"kind": "cuba", "tau": 3.0, "tau_syn": 5.0}}, {})
    assert (cfg.neuron.kind, cfg.neuron.tau_syn) == ("cuba", 5.0)
    with pytest.raises(ConfigError, match="tau_syn = 0.5"):
        NeuronConfig(kind="cuba", tau_syn=0.5)
    assert resolve({"neuron": {"kind": "cuba"}, "deploy": "loihi2"}, {}).deploy == "loihi2"  # QAT runs the decay
    for values, what in (({"backprop": "rate"}, "backprop = rate"), ({"method": "esd"}, "backprop = rate")):
        with pytest.raises(MethodError, match=what) as e:
            resolve({"neuron": {"kind": "cuba"}, **values}, {})
        assert "\n" not in str(e.value)


def test_cli_neuron_cuba_tau_syn(tmp_path):
    from click.testing import CliRunner

    from neurodistill.cli import main

    res = CliRunner().invoke(main, ["train", "--neuron", "cuba", "--backprop", "rate", "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "neuron.kind = cuba" in res.output
    res = CliRunner().invoke(main, ["train", "--neuron", "cuba", "--tau-syn", "0.5", "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "tau_syn = 0.5" in res.output


@pytest.mark.parametrize("name,shape", [("snn_digits", (1, 8, 8)), ("snn_resnet18", (3, 16, 16)), ("snn_vgg11", (3, 32, 32))])
def test_registry_models_run_multi_step_with_cuba(name, shape):
    model = create_model(name, 10, shape[0], NeuronConfig(kind="cuba", tau=2.0, tau_syn=3.0)).eval()
    nodes = [m for m in model.modules() if isinstance(m, neuron.CUBALIFNode)]
    assert nodes and all(m.step_mode == "m" for m in nodes)
    assert nodes[0].c_decay == 0.0 and all(m.c_decay == pytest.approx(2 / 3) for m in nodes[1:])
    assert not any(isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d) for m in model.modules())
    with torch.no_grad():
        y = model(torch.rand(2, 1, *shape))
    assert y.shape == (2, 1, 10)
    graph = capture(model, shape, timesteps=2)
    assert all(not np.any(graph.biases[p.name]) for p in graph.populations[:-1])


def test_float_graph_is_the_model():
    model, shape = cuba_net()
    x = _x(shape, 8)
    xt = x.unsqueeze(0).expand(6, *x.shape).double()
    graph = capture(model, shape, timesteps=6)
    assert [(p.neuron.kind, p.neuron.tau_syn) for p in graph.populations[:-1]] == \
        [("cuba", 1.0), ("cuba", pytest.approx(4.0)), ("cuba", pytest.approx(2.5))]
    spikes = []
    hooks = [m.register_forward_hook(lambda _m, _i, o: spikes.append(o)) for m in model.modules()
             if isinstance(m, neuron.CUBALIFNode)]
    with torch.no_grad():
        y = model.double()(xt)
    for h in hooks:
        h.remove()
    out = run_float(graph, xt, record=True)
    torch.testing.assert_close(out["logits"], y, rtol=1e-12, atol=1e-12)
    for s, p in zip(spikes, graph.populations, strict=False):
        assert torch.equal(out["spikes"][p.name], s) and s.any()


def test_loihi_mapping_of_the_current_decay():
    model, shape = cuba_net()
    graph = quantized(model, shape, 4)
    pops = {p.name: p for p in graph.populations}
    # iDecay = round(4096 (1 - c_decay)), vDecay = round(4096 (1 - v_decay))
    assert [(p.i_decay, p.v_decay) for p in graph.populations] == [(4096, 2048), (1024, 2048), (1638, 410), (4096, 0)]
    p = pops["body.3"]
    assert p.v_th_mant == round(0.8 * p.scale)  # threshold at the population's scale, no input gain
    assert not np.any(p.bias_mant)


def test_what_has_no_exact_loihi_form_is_refused_in_one_line():
    def refused(body, shape, what):
        with pytest.raises(UnsupportedLayerError, match=what) as e:
            quantized(Net(body, spiking=True).eval(), shape, 4)
        assert "\n" not in str(e.value)

    refused(nn.Sequential(layer.Linear(4, 8), cuba(0.5, 0.5, 0.5), layer.Linear(8, 2)), (4,), "analog input")
    refused(nn.Sequential(layer.Linear(4, 8), cuba(0.0, 0.5, 0.5), layer.Linear(8, 6, bias=False), cuba(1.0, 0.5, 0.5),
                          layer.Linear(6, 2)), (4,), "c_decay = 1")
    node = cuba(0.0, 0.5, 0.5)
    node.v_reset = 0.2
    refused(nn.Sequential(layer.Linear(4, 8), node, layer.Linear(8, 2)), (4,), "v_reset = 0.2")


def test_fxp_is_the_independent_integer_reference_and_close_to_float():
    model, shape = cuba_net()
    T = 6
    graph = quantized(model, shape, T)
    x = _x(shape, 16, 2)
    bias, _ = encoding_bias(graph, encoding_current(graph, x.numpy()))
    ours = run_fxp(graph, torch.as_tensor(bias), T)
    steps = T + graph.latency_steps
    for i in range(len(x)):
        ref_s, ref_v = reference(graph, bias[i], steps)
        for k, p in enumerate(graph.populations[:-1]):
            assert np.array_equal(ours["spikes"][p.name][:, i].numpy(), ref_s[k]), (i, p.name)
        assert np.array_equal(ours["v_readout_steps"][:, i].numpy(), ref_v.reshape(steps, -1))
    # float vs fixed point: each population's window (its spikes at steps depth .. depth + T - 1)
    fl = run_float(graph, x.unsqueeze(0).expand(T, *x.shape).double(), record=True)["spikes"]
    for p in graph.populations[:-1]:
        agree = float((ours["spikes"][p.name][p.depth:p.depth + T] == fl[p.name].bool()).float().mean())
        assert agree > 0.97, (p.name, agree)


def test_deploy_h5_keeps_the_current_decay(tmp_path):
    from neurodistill.export.loihi2 import export_module_loihi2
    from neurodistill.formats.deploy_h5 import read_graph

    model, shape = cuba_net()
    export_module_loihi2(model, shape, _x(shape, 16), torch.randint(0, 3, (16,)), tmp_path / "b", timesteps=4)
    g = read_graph(tmp_path / "b" / "deploy.h5")
    assert [(p.neuron.kind, p.i_decay) for p in g.populations[:3]] == [("cuba", 4096), ("cuba", 1024), ("cuba", 1638)]
    assert g.populations[1].neuron.tau_syn == pytest.approx(4.0)
    assert (tmp_path / "b" / "network.net").is_file()


# ---- NIR: out as CubaLIF, in as each exporter's framework computes it --------------------------
def _run_read(path, producer, x, T):
    """neurodistill's reading of a NIR file: (spikes of its last CUBALIFNode, outputs), x held T steps."""
    from neurodistill.export.from_nir import nir_source_module

    model, _ = nir_source_module(path, producer)
    spikes, out = _last_cuba_spikes(model, x, T)
    return spikes, out.reshape(T, len(x), -1)


def _last_cuba_spikes(model, x, T):
    seen = []
    h = [m for m in model.modules() if isinstance(m, neuron.CUBALIFNode)][-1].register_forward_hook(
        lambda _m, _i, o: seen.append(o.detach()))
    with torch.no_grad():
        out = model(x.unsqueeze(0).expand(T, *x.shape).contiguous())
    h.remove()
    return seen[0], out


@pytest.mark.parametrize("producer", ["neurodistill", "spikingjelly"])
def test_cuba_model_to_nir_and_back_runs_as_the_model(producer, tmp_path):
    """Our exporter and spikingjelly's own (`export_to_nir`, dt = 1e-4) write CUBALIFNode as
    CubaLIF(w_in = tau_syn/dt, r = tau_mem/dt); read back, it runs as the model does."""
    import nir
    from spikingjelly.activation_based.nir_exchange import export_to_nir

    from neurodistill.formats.nir.file import write_nir
    from neurodistill.formats.nir.from_torch import to_nir_graph

    model, shape = cuba_net()
    T, x = 5, _x(shape, 8, 4)
    path = tmp_path / "g.nir"
    if producer == "neurodistill":
        write_nir(to_nir_graph(model, shape, T), path)
    else:
        export_to_nir(model, torch.zeros(1, 1, *shape), path)
    g = nir.read(path)
    cubas = [n for n in g.nodes.values() if isinstance(n, nir.CubaLIF)]
    dt = 1.0 if producer == "neurodistill" else 1e-4
    assert len(cubas) == 3 and np.allclose(cubas[1].tau_syn, 4 * dt) and np.allclose(cubas[1].w_in, 4.0)
    assert np.allclose(cubas[2].tau_mem, 10 * dt) and np.allclose(cubas[2].r, 10.0)
    want_s, want = _last_cuba_spikes(model, x, T)
    got_s, got = _run_read(path, producer, x, T)
    assert want_s.any() and torch.equal(got_s, want_s)
    torch.testing.assert_close(got, want.reshape(got.shape), rtol=1e-5, atol=1e-5)


def norse_cuba_net(tau_syn_inv: float = 500.0, bias: bool = False):
    """Norse 1.1: conv, LIFCell without current memory (tau_syn = dt: the host-fed layer), conv
    without bias, LIFCell with a decaying current, a conv classifier over the whole map."""
    import norse.torch as norse
    from norse.torch.functional.lif import LIFParameters

    def p(shape, syn_inv, mem_inv, th):
        def f(v):
            return torch.full(shape, float(v))
        return LIFParameters(tau_syn_inv=f(syn_inv), tau_mem_inv=f(mem_inv), v_leak=f(0), v_th=f(th), v_reset=f(0))

    torch.manual_seed(0)
    net = norse.SequentialState(torch.nn.Conv2d(1, 4, 3, padding=1), norse.LIFCell(p((4, 8, 8), 1000.0, 500.0, 0.5)),
                                torch.nn.Conv2d(4, 6, 3, padding=1), norse.LIFCell(p((6, 8, 8), tau_syn_inv, 250.0, 0.3)),
                                torch.nn.Conv2d(6, 10, 8)).eval()
    with torch.no_grad():
        net[0].weight.mul_(3.0)
        net[2].weight.mul_(2.0)
        if bias:  # into a decaying current: through the bias source population
            net[2].bias.uniform_(-0.1, 0.2)
        else:  # Norse's exporter needs a bias tensor; zero keeps the chain (network.net)
            net[2].bias.zero_()
    return net


def test_norse_lifcell_is_read_as_norse_computes_it(tmp_path):
    """Norse adds the input to the current unscaled and integrates it with gain dt/tau_mem; its
    file's time constants are dt times the true ones (norse/norse#411): read so, its spikes."""
    from neurodistill.data.samples import dataset_samples

    net = norse_cuba_net()
    path = write_norse(net, tmp_path / "norse.nir")
    x, _ = dataset_samples("digits", None, {}, 48, "train")
    spikes, outs = norse_run(net, x, 6)
    ours_s, ours = _run_read(path, "norse", x, 6)
    assert 0.01 < float(spikes.mean()) < 0.9
    assert int((ours_s.reshape(spikes.shape) != spikes).sum()) == 0
    torch.testing.assert_close(ours, outs, rtol=1e-5, atol=1e-5)


# ---- quantization-aware training: the deployed forward has the current decay ------------------
@pytest.mark.parametrize("which", ["hand-built", "snn_digits"])
def test_qat_forward_has_every_spike_of_run_fxp(which):
    """QAT's deployed forward (integer u with Loihi's truncating current decay, then v) spikes as
    `run_fxp` on every population and step, and reads out its voltage; gradients reach the weights."""
    from neurodistill.qat.deploy import deploy_graph
    from neurodistill.qat.forward import Deployment

    from .test_qat_forward import _qat_spikes

    if which == "hand-built":
        model, shape = cuba_net()
        x = _x(shape, 24, 5)
    else:
        from neurodistill.data.digits import digits_arrays

        torch.manual_seed(0)
        model, shape = create_model("snn_digits", 10, 1, NeuronConfig(kind="cuba", tau_syn=4.0, v_threshold=0.3)), (1, 8, 8)
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, nn.Conv2d):
                    m.weight.mul_(2.0)
        x = digits_arrays()[0][:24]
    import tests.test_qat_forward as tq

    dep = Deployment.for_model(model, shape, 8, x)
    graph = deploy_graph(dep, model, tq.T)
    assert any(p.i_decay < 4096 for p in graph.populations)
    bias, _ = encoding_bias(graph, encoding_current(graph, x.numpy()))
    ref = run_fxp(graph, torch.as_tensor(bias), tq.T, record=True)
    rec, z = _qat_spikes(model, dep, x)
    for p in graph.populations[:-1]:
        window = ref["spikes"][p.name][p.depth: p.depth + tq.T]
        assert torch.equal(rec[p.name].bool(), window), (p.name, int((rec[p.name].bool() != window).sum()))
        assert window.any(), p.name
    v = (z.double().sum(0) * graph.readout.scale * 64).round().long()
    assert torch.equal(v, ref["v_readout"])
    with dep.active(model):
        model(x.unsqueeze(0).repeat(tq.T, *([1] * x.dim()))).sum().backward()
    assert all(m.weight.grad is not None and m.weight.grad.abs().sum() > 0
               for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear))


# ---- a bias into a decaying current: the bias source population ------------------------------
def biased_cuba_net() -> tuple[Net, tuple[int, ...]]:
    """`cuba_net` with BatchNorm and biases everywhere: shifts into the currents of depth 1 and 2."""
    torch.manual_seed(0)
    body = nn.Sequential(layer.Conv2d(2, 4, 3, padding=1), layer.BatchNorm2d(4), cuba(0.0, 0.5, 0.5),
                         layer.Conv2d(4, 6, 3, stride=2, padding=1), layer.BatchNorm2d(6), cuba(0.75, 0.5, 0.8),
                         layer.Flatten(1), layer.Linear(6 * 3 * 3, 16), cuba(0.6, 0.9, 0.6),
                         layer.Linear(16, 3))
    with torch.no_grad():
        for bn in (body[1], body[4]):
            bn.running_mean.uniform_(-0.1, 0.1)
            bn.running_var.uniform_(0.2, 0.5)
            bn.weight.uniform_(1.5, 3.0)
            bn.bias.uniform_(-0.2, 0.3)
        body[7].weight.mul_(3.0)
        body[7].bias.uniform_(-0.3, 0.3)
    return Net(body, spiking=True).eval(), (2, 6, 6)


def test_a_bias_into_a_decaying_current_goes_through_a_source_that_fires_every_step():
    from neurodistill.core.bias_source import SOURCE

    model, shape = biased_cuba_net()
    T = 6
    graph = quantized(model, shape, T)
    src = graph.population(SOURCE)
    assert (src.depth, src.bias_mant.tolist(), src.v_th_mant, src.v_decay) == (0, [1], 0, 0)
    into = {s.target: s for s in graph.synapses if s.source == SOURCE}
    # path-matched: spikes of the source's step t reach a population of depth d at step t + d
    assert {k: (s.delay, graph.population(k).depth) for k, s in into.items()} == {"body.5": (0, 1), "body.8": (1, 2)}
    assert not any(np.any(graph.population(k).bias_mant) for k in into)
    x = _x(shape, 16, 2)
    xt = x.unsqueeze(0).expand(T, *x.shape).double()
    fl = run_float(graph, xt, record=True)
    with torch.no_grad():
        torch.testing.assert_close(fl["logits"], model.double()(xt), rtol=1e-12, atol=1e-12)
    bias, _ = encoding_bias(graph, encoding_current(graph, x.numpy()))
    ours = run_fxp(graph, torch.as_tensor(bias), T)
    assert bool(ours["spikes"][SOURCE].all())
    for p in graph.populations[:-1]:
        agree = float((ours["spikes"][p.name][p.depth:p.depth + T] == fl["spikes"][p.name].bool()).float().mean())
        assert agree > 0.97, (p.name, agree)


def test_qat_refuses_a_bias_into_a_decaying_current():
    from neurodistill.qat.plan import build_plan

    model, shape = biased_cuba_net()
    with pytest.raises(UnsupportedLayerError, match="body.5: CUBALIFNode population with a synapse bias") as e:
        build_plan(model, shape)
    assert "\n" not in str(e.value)
