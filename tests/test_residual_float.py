"""Residual bundles against the float model, through independent code.

(a) `network.nir` of a residual bundle, read back with `nir.read`: its nodes and the shortcut
edges match the model, its weights equal BatchNorm folded here by hand from the model's
parameters, and spikingjelly's own NIR importer (`nir_exchange.import_from_nir`) runs it to the
same per-step logits and spikes as neurodistill's float backend (`run_float`) and the trained
model. spikingjelly 2.0.0 has no mapping for `nir.Scale` (the identity shortcut) and refuses
grouped convolutions: a net whose shortcuts are all 1x1 convs goes through `import_from_nir`
unchanged; the net with an identity shortcut goes through spikingjelly's node map plus a
one-line `Scale` (x * s) for that node.
(b) With grid-exact weights, biases and inputs and IF neurons (no leak), the fixed-point
simulator is documented to be exact (core/loihi2.py: "without leak every state is a multiple
of 64 and vth = ceil(theta) - 1 is exact"; core/fxp.py: population at depth d starts at step d):
every population's `run_fxp` spikes equal the spikingjelly model's spikes shifted by its depth,
and the readout voltage equals 64 * scale * the sum of the model's logits.
"""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch
from spikingjelly.activation_based import layer, neuron
from torch import nn

from neurodistill.core.capture import capture
from neurodistill.core.float_graph import run_float
from neurodistill.core.fxp import run_fxp
from neurodistill.core.loihi2 import encoding_bias, encoding_current, quantize_graph
from neurodistill.export.bundle import dataset_samples, export_module_loihi2
from neurodistill.formats.deploy_h5 import read_graph
from neurodistill.models.base import Net
from neurodistill.models.resnet import BasicBlock

from .test_lava_residual import SHAPE, residual_net, trained_like

T = 3


def conv_shortcut_net() -> Net:
    """A stem and one strided block whose shortcut is a 1x1 conv + BN: no identity shortcut, no groups."""
    torch.manual_seed(6)

    def act():
        return neuron.LIFNode(tau=2.0, v_threshold=0.5)

    body = nn.Sequential(layer.Conv2d(2, 4, 3, padding=1), layer.BatchNorm2d(4), act(),
                         BasicBlock(4, 6, 2, act), layer.Flatten(1), layer.Linear(6 * 3 * 5, 3))
    return trained_like(body)


def export(model: Net, out) -> None:
    data = {"synthetic_shape": list(SHAPE), "synthetic_classes": 3, "synthetic_size": 80}
    x, y = dataset_samples("synthetic", None, data, 32, "train")
    source = {"source": "test", "source_sha256": None, "model": "residual", "calibration_split": "train",
              "dataset": {"name": "synthetic", "data_dir": None, "data": data, "num_classes": 3}}
    export_module_loihi2(model, SHAPE, x, y, out, timesteps=T, source=source)


def folded_by_hand(conv: nn.Module, bn: nn.Module | None) -> tuple[np.ndarray, np.ndarray]:
    """W' = W g / sqrt(var + eps), b' = beta + (b - mu) g / sqrt(var + eps), from the model's own tensors."""
    w = conv.weight.detach().double()
    b = conv.bias.detach().double() if conv.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
    if bn is None:
        return w.numpy(), b.numpy()
    k = bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)
    return (w * k.view(-1, *[1] * (w.dim() - 1))).numpy(), (bn.bias.detach().double() + (b - bn.running_mean.double()) * k).numpy()


def node(name: str) -> str:
    return name.replace(".", "_")


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("residual_float")
    out = {}
    for key, make in (("identity", residual_net), ("conv", conv_shortcut_net)):
        model = make()
        export(model, root / key)
        out[key] = (model, root / key)
    return out


def test_residual_nir_structure_and_folded_weights(bundles):
    model, bundle = bundles["identity"]
    g = nir.read(bundle / "network.nir")
    body = model.body
    lif = ["body.2", "body.3.sn1", "body.3.sn2", "body.4.sn1", "body.4.sn2"]
    convs = {  # NIR node: (conv, bn) of the model
        "body.0": (body[0], body[1]), "body.3.conv1": (body[3].conv1, body[3].bn1),
        "body.3.conv2": (body[3].conv2, body[3].bn2), "body.4.conv1": (body[4].conv1, body[4].bn1),
        "body.4.conv2": (body[4].conv2, body[4].bn2), "body.4.shortcut.0": (body[4].shortcut[0], body[4].shortcut[1]),
    }
    types = {k: type(n).__name__ for k, n in g.nodes.items()}
    scale = [k for k, t in types.items() if t == "Scale"]
    assert len(scale) == 1, types  # the identity shortcut of body.3
    want = {"input": "Input", "output": "Output", "body_6": "Affine", "body_6_flatten": "Flatten", scale[0]: "Scale",
            **{node(n): "LIF" for n in lif}, **{node(n): "Conv2d" for n in convs}}
    assert types == want
    edges = set(g.edges)
    assert len(edges) == len(g.edges) == 17
    # each block's output population sums two edges: its conv2 and its shortcut
    into = {k: sorted(a for a, b in edges if b == k) for k in g.nodes}
    assert into["body_3_sn2"] == sorted(["body_3_conv2", scale[0]]) and (("body_2", scale[0]) in edges)
    assert into["body_4_sn2"] == ["body_4_conv2", "body_4_shortcut_0"] and ("body_3_sn2", "body_4_shortcut_0") in edges
    assert ("body_3_sn2", "body_4_conv1") in edges and ("body_2", "body_3_conv1") in edges
    assert into["body_0"] == ["input"] and into["output"] == ["body_6"] and into["body_6"] == ["body_6_flatten"]
    assert np.array_equal(g.nodes[scale[0]].scale, np.ones((4, 6, 10)))
    for name, (conv, bn) in convs.items():
        w, b = folded_by_hand(conv, bn)
        n = g.nodes[node(name)]
        np.testing.assert_allclose(n.weight, w, rtol=1e-6, atol=1e-7, err_msg=name)
        assert tuple(np.asarray(n.stride).tolist()) == conv.stride and tuple(np.asarray(n.padding).tolist()) == conv.padding
        # the population's bias rides on one incoming synapse node (the shortcut conv carries none)
        if name != "body.4.shortcut.0":
            shortcut_b = folded_by_hand(*convs["body.4.shortcut.0"])[1] if name == "body.4.conv2" else 0.0
            np.testing.assert_allclose(np.asarray(n.bias), b + shortcut_b, rtol=1e-6, atol=1e-7, err_msg=name)
    fc = g.nodes["body_6"]
    np.testing.assert_allclose(fc.weight, body[6].weight.detach().numpy(), rtol=1e-6, atol=0)
    np.testing.assert_allclose(fc.bias, body[6].bias.detach().numpy(), rtol=1e-6, atol=0)
    for name in lif:
        sj, n = model.get_submodule(name), g.nodes[node(name)]
        assert np.all(n.tau == sj.tau) and np.all(n.v_threshold == sj.v_threshold) and np.all(n.v_reset == sj.v_reset)
        assert np.all(n.r == 1.0) and sj.decay_input  # r = 1 for decay_input=True (the NIR conventions)


def _run_sj(gm, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """spikingjelly's imported module on (T, B, ...): its output and the spikes of every neuron module."""
    from spikingjelly.activation_based import functional

    spikes: dict[str, torch.Tensor] = {}
    for name, m in gm.named_children():  # spikingjelly wraps each neuron: (spikes, state) = wrapper(x)
        if isinstance(getattr(m, "module", None), neuron.BaseNode):
            m.register_forward_hook(lambda mod, a, out, name=name: spikes.__setitem__(name, out[0]))
    functional.reset_net(gm)
    with torch.no_grad():
        out, _ = gm(x)
    return out, spikes


def _compare_with_float_backend(model, bundle, gm):
    graph = read_graph(bundle / "deploy.h5")
    x = torch.from_numpy(np.random.default_rng(4).uniform(0, 1.5, (T, 5, *SHAPE)))
    ours = run_float(graph, x, record=True)
    theirs, sj_spikes = _run_sj(gm, x)
    assert theirs.shape == ours["logits"].shape == (T, 5, 3)
    torch.testing.assert_close(theirs, ours["logits"], rtol=1e-9, atol=1e-9)
    assert set(sj_spikes) == {node(p) for p in ours["spikes"]}
    for p, s in ours["spikes"].items():
        assert s.any(), f"{p} never spikes: the comparison would mean little"
        assert torch.equal(sj_spikes[node(p)], s), p
    # and the trained model itself (unfolded BN, float32 folding rounding only)
    ref = model.double()(x)
    assert ((ref - ours["logits"]).abs().max() / ref.abs().max()).item() < 1e-5


def test_spikingjelly_import_of_a_conv_shortcut_residual_bundle(bundles):
    from spikingjelly.activation_based.nir_exchange import import_from_nir

    model, bundle = bundles["conv"]
    g = nir.read(bundle / "network.nir")
    assert not any(isinstance(n, nir.Scale) for n in g.nodes.values())
    assert sorted(a for a, b in g.edges if b == "body_3_sn2") == ["body_3_conv2", "body_3_shortcut_0"]
    gm = import_from_nir(bundle / "network.nir", dt=1.0, dtype=torch.float64, step_mode="m")
    _compare_with_float_backend(model, bundle, gm)


def test_spikingjelly_node_map_on_the_identity_shortcut_bundle(bundles):
    """spikingjelly 2.0.0's import_from_nir has no nir.Scale mapping ("mapping does not exist in
    node_map"): its own node map plus x * scale for the identity shortcut, through nirtorch as
    import_from_nir does."""
    import nirtorch
    from spikingjelly.activation_based import functional
    from spikingjelly.activation_based.nir_exchange.from_nir import _NodeMapper

    class Scale(nn.Module):
        def __init__(self, s):
            super().__init__()
            self.s = torch.as_tensor(np.asarray(s))

        def forward(self, x):
            return x * self.s

    model, bundle = bundles["identity"]
    g = nir.read(bundle / "network.nir")
    node_map = {**_NodeMapper(dt=1.0).map_dict, nir.Scale: lambda n: Scale(n.scale)}
    gm = nirtorch.nir_to_torch(g, node_map, dtype=torch.float64)
    functional.set_step_mode(gm, "m")
    _compare_with_float_backend(model, bundle, gm)


# --- (b) grid-exact fixed point equals float, population by population --------------------------------


def grid_residual_net() -> Net:
    """Stem, identity block, strided block with conv shortcut, IF neurons; every parameter on a 1/8 grid
    and BatchNorm an exact per-channel affine (var + eps = 1), so folding is exact too."""
    g = torch.Generator().manual_seed(11)

    def act():
        return neuron.IFNode(v_threshold=1.0)

    body = nn.Sequential(layer.Conv2d(2, 4, 3, padding=1), layer.BatchNorm2d(4), act(),
                         BasicBlock(4, 4, 1, act), BasicBlock(4, 6, 2, act),
                         layer.Flatten(1), layer.Linear(6 * 3 * 5, 3))
    with torch.no_grad():
        for m in body.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                m.weight.copy_(torch.randint(-6, 9, m.weight.shape, generator=g) / 8)
                if m.bias is not None:
                    m.bias.copy_(torch.randint(-2, 4, m.bias.shape, generator=g) / 8)
            if isinstance(m, nn.BatchNorm2d):
                m.eps = 2.0**-10  # torch wants eps > 0: var + eps = 1 exactly
                m.running_var.fill_(1.0 - 2.0**-10)
                m.weight.copy_(torch.tensor([0.5, 1.0, 2.0])[torch.randint(0, 3, (m.num_features,), generator=g)])
                m.running_mean.copy_(torch.randint(-2, 3, (m.num_features,), generator=g) / 8)
                m.bias.copy_(torch.randint(0, 4, (m.num_features,), generator=g) / 8)
    return Net(body, spiking=True).eval()


def test_grid_exact_residual_fixed_point_equals_float_spike_for_spike():
    model = grid_residual_net()
    steps = 4
    graph = capture(model, SHAPE, timesteps=steps)
    assert not graph.is_chain() and any(s.delay > 0 for s in graph.synapses)
    x = torch.from_numpy(np.random.default_rng(2).integers(0, 7, (12, *SHAPE)) / 4)  # inputs on a 1/4 grid
    current = encoding_current(graph, x.numpy())
    quantize_graph(graph, 8, encoding_max=float(np.abs(current).max()))
    # the quantization is exact here: every integer is the float value times the scale
    for s in graph.synapses:
        if not s.host:
            scale = graph.population(s.target).scale
            assert np.array_equal(s.weight_int, s.weight * scale), s.name
    for p in graph.populations[1:]:
        assert np.array_equal(p.bias_mant, graph.biases[p.name] * p.scale), p.name
    bias, clipped = encoding_bias(graph, current)
    enc = graph.population(graph.encoding[0].target)
    assert clipped == 0 and np.array_equal(bias, current * enc.scale)

    fxp = run_fxp(graph, torch.as_tensor(bias), steps)
    # the truth: spikingjelly's IFNodes in the model itself, recorded by hooks
    recorded: dict[str, torch.Tensor] = {}
    for name, m in model.named_modules():
        if isinstance(m, neuron.IFNode):
            m.register_forward_hook(lambda mod, a, out, name=name: recorded.__setitem__(name, out))
    with torch.no_grad():
        logits = model.double()(x.unsqueeze(0).expand(steps, *x.shape))
    firing = [p for p in graph.populations if p.neuron.kind != "readout"]
    assert {p.name for p in firing} == set(recorded)
    assert [p.depth for p in firing] == [0, 1, 2, 3, 4]  # stem; block 1: sn1, sn2; block 2: sn1, sn2
    for p in firing:
        want = recorded[p.name].bool()
        assert want.any() and not want.all(), f"{p.name}: the comparison needs spikes and silence"
        got = fxp["spikes"][p.name][p.depth: p.depth + steps]
        bad = (got != want).nonzero()
        assert bad.numel() == 0, f"{p.name} (depth {p.depth}): {len(bad)} mismatches, first (t, n, ...) {bad[0].tolist()}"
    # the readout integrates its input: after the last step, 64 * scale * (sum of the model's logits)
    r = graph.readout
    assert fxp["v_readout_steps"].shape[0] == steps + r.depth
    want_v = 64 * r.scale * logits.sum(0)
    assert torch.equal(fxp["v_readout"].double(), want_v)
    # the float backend agrees too (the graph run in float, no latency)
    ours = run_float(graph, x.unsqueeze(0).expand(steps, *x.shape), record=True)
    assert all(torch.equal(ours["spikes"][p.name].bool(), recorded[p.name].bool()) for p in firing)
