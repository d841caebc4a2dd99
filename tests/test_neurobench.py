"""NeuroBench's metrics in `simulate`: equal to what the neurobench package (2.3.0) measures on the
same model and the same samples, and to counts by hand on a network small enough to count.

NeuroBench is given the BatchNorm-folded float network (`folded_copy`): the network whose spikes
`simulate --backend float` computes. It sees spikingjelly's neurons as activation layers once
they are added as an activation module (`add_activation_module(BaseNode)`); it records membrane
potentials only of snntorch neurons, so MembraneUpdates is measured on an snntorch twin of the
same network whose spikes are checked equal to spikingjelly's.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from neurodistill.cli import main
from neurodistill.core import neurobench as nd
from neurodistill.core.graph import INPUT, DeployGraph, Neuron, Population, Synapse

N, BATCH = 40, 8  # 8 samples per call keep NeuroBench's float32 sums of one call below 2^24 (exact)


def _folded(bundle: Path) -> tuple[nn.Module, int]:
    from neurodistill.export.bundle import load_model
    from neurodistill.formats.nir.exportable import folded_copy

    manifest = json.loads((bundle / "manifest.json").read_text())
    return folded_copy(load_model(Path(manifest["source"]))[1]), int(manifest["timesteps"])


def _test_digits(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    from neurodistill.data.digits import digits_arrays

    _, _, x, y = digits_arrays()
    return x[:n], y[:n]


def _benchmark(model, x: torch.Tensor, y: torch.Tensor, T: int, static: list, workload: list,
               time_first: bool = True) -> dict:
    """neurobench's own Benchmark: data in its `(batch, time, ...)` layout, the image at every step;
    `time_first`: the net takes and gives `(T, B, ...)` (neurodistill's nets), else `(B, T, ...)`."""
    from neurobench.benchmarks import Benchmark

    data = DataLoader(TensorDataset(x.unsqueeze(1).repeat(1, T, 1, 1, 1), y), batch_size=BATCH)
    pre = [lambda d: (d[0].transpose(0, 1), d[1])] if time_first else []
    mean_logits = lambda p: p.mean(0 if time_first else 1).argmax(-1)  # noqa: E731
    return Benchmark(model, data, pre, [mean_logits], [static, workload]).run(quiet=True)


def _spikingjelly_model(net: nn.Module):
    from neurobench.models import TorchModel
    from spikingjelly.activation_based import neuron

    model = TorchModel(net)
    model.add_activation_module(neuron.BaseNode)  # before Benchmark registers its hooks
    return model


class SnnTorchTwin(nn.Module):
    """The folded digits chain with snntorch `Leaky` neurons: reset to zero at once (no delay),
    `beta = 1 - 1/tau`, and the 1/tau that spikingjelly's decay_input applies to the input folded
    into the weights of the layer before each neuron (a power of two for tau = 2: exact)."""

    def __init__(self, folded: nn.Module) -> None:
        import snntorch as snn
        from spikingjelly.activation_based import layer, neuron

        super().__init__()
        mods = [m for m in folded.body if not (isinstance(m, nn.Sequential) and len(m) == 0)]  # folded BatchNorms
        out: list[nn.Module] = []
        for m in mods:
            if isinstance(m, neuron.LIFNode):
                assert m.decay_input and m.v_reset == 0.0
                syn = out[-1]
                with torch.no_grad():
                    syn.weight /= m.tau
                    syn.bias /= m.tau
                out.append(snn.Leaky(beta=1 - 1 / m.tau, threshold=m.v_threshold, reset_mechanism="zero",
                                     reset_delay=False, init_hidden=True))
            elif isinstance(m, layer.Conv2d):
                c = nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, bias=True)
                c.load_state_dict(m.state_dict())
                out.append(c)
            elif isinstance(m, layer.Linear):
                lin = nn.Linear(m.in_features, m.out_features)
                lin.load_state_dict(m.state_dict())
                out.append(lin)
            elif isinstance(m, layer.Flatten):
                out.append(nn.Flatten(1))
            else:
                raise AssertionError(f"no twin for {type(m).__name__}")
        self.body = nn.Sequential(*out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`(B, T, ...)` in, `(T, B, K)` out: what `SNNTorchModel(custom_forward=True)` expects."""
        from snntorch import utils

        utils.reset(self.body)
        return torch.stack([self.body(x[:, t]) for t in range(x.shape[1])])


def _neuron_spikes(net: nn.Module, x: torch.Tensor, kinds: tuple) -> list[torch.Tensor]:
    """Every neuron module's output spikes, in order, for input `(T, B, ...)`."""
    got: dict[int, list] = {}
    handles = [m.register_forward_hook(lambda _m, _i, o, k=k: got.setdefault(k, []).append(o.detach().clone()))
               for k, m in enumerate(m for m in net.modules() if isinstance(m, kinds))]
    with torch.no_grad():
        net(x)
    for h in handles:
        h.remove()
    return [torch.cat(got[k]).reshape(-1) for k in sorted(got)]


@pytest.fixture(scope="module")
def float_sim(sim_bundle, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("nb_float")
    res = CliRunner().invoke(main, ["simulate", str(sim_bundle), "--backend", "float", "--samples", str(N),
                                    "--batch-size", str(BATCH), "--out", str(out)])
    assert res.exit_code == 0, res.output
    return json.loads((out / "simulation.json").read_text())


def test_simulate_gives_neurobench_metrics_equal_to_neurobench(sim_bundle, float_sim):
    from neurobench.metrics.static import ConnectionSparsity, Footprint
    from neurobench.metrics.workload import (
        ActivationSparsity,
        ClassificationAccuracy,
        SynapticOperations,
    )

    folded, T = _folded(sim_bundle)
    x, y = _test_digits(N)
    got = _benchmark(_spikingjelly_model(folded), x, y, T, [Footprint, ConnectionSparsity],
                     [ClassificationAccuracy, ActivationSparsity, SynapticOperations])
    nb = float_sim["neurobench"]
    assert nb["version"] == "2.3.0"
    assert got["ClassificationAccuracy"] == pytest.approx(float_sim["accuracy"], abs=1e-12)  # same model, same samples
    assert nb["Footprint"] == got["Footprint"] == 4 * sum(p.numel() for p in folded.parameters())
    assert round(nb["ConnectionSparsity"], 4) == got["ConnectionSparsity"]
    assert nb["ActivationSparsity"] == pytest.approx(got["ActivationSparsity"], rel=1e-12)
    assert 0 < nb["ActivationSparsity"] < 1
    assert nb["ActivationSparsity"] == pytest.approx(1 - float_sim["firing_rate_neuron_weighted"], rel=1e-12)
    ops = got["SynapticOperations"]
    assert nb["SynapticOperations"] == {k: ops[k] for k in ("Effective_MACs", "Effective_ACs", "Dense")}
    assert 0 < ops["Effective_ACs"] and 0 < ops["Effective_MACs"] < ops["Dense"]
    # how they relate to neurodistill's own counts: ACs are its synaptic events (no folded weight is 0),
    # Dense is the paper convention's dense_ops every step less the taps that fall on the padding
    layers = float_sim["layers"]
    assert ops["Effective_ACs"] == sum(x["synaptic_events"] for x in layers) / N
    assert ops["Dense"] < T * sum(x["dense_ops"] for x in layers)


def test_membrane_updates_equal_neurobench_on_the_snntorch_twin(sim_bundle, float_sim):
    import snntorch as snn
    from neurobench.metrics.workload import ActivationSparsity, MembraneUpdates
    from neurobench.models import SNNTorchModel
    from spikingjelly.activation_based import neuron

    folded, T = _folded(sim_bundle)
    x, y = _test_digits(N)
    twin = SnnTorchTwin(folded)
    xt = x.unsqueeze(0).repeat(T, 1, 1, 1, 1)
    sj = _neuron_spikes(folded, xt, (neuron.BaseNode,))
    st = _neuron_spikes(twin, xt.transpose(0, 1), (snn.SpikingNeuron,))
    assert len(sj) == len(st) == 2 and all(torch.equal(a, b) for a, b in zip(sj, st, strict=True))
    got = _benchmark(SNNTorchModel(twin, custom_forward=True), x, y, T, [], [ActivationSparsity, MembraneUpdates],
                     time_first=False)
    nb = float_sim["neurobench"]
    assert got["ActivationSparsity"] == pytest.approx(nb["ActivationSparsity"], rel=1e-12)
    neurons = sum(x["neurons"] for x in float_sim["layers"] if x["firing_rate"] is not None)
    assert neurons < nb["MembraneUpdates"] < neurons * T  # a neuron that fires twice in a row keeps v = 0
    assert nb["MembraneUpdates"] == got["MembraneUpdates"]
    # spikingjelly's own neurons are invisible to it: the reason for the twin
    sj_got = _benchmark(_spikingjelly_model(folded), x, y, T, [], [MembraneUpdates])
    assert sj_got["MembraneUpdates"] == 0


def test_pruned_network_zero_weights_and_inputs(sim_bundle):
    """Zero weights (a pruned copy) change ConnectionSparsity and the effective operations alike."""
    from neurobench.metrics.static import ConnectionSparsity, Footprint
    from neurobench.metrics.workload import ActivationSparsity, SynapticOperations

    from neurodistill.core.capture import capture
    from neurodistill.core.counters import windows
    from neurodistill.core.float_graph import run_float

    folded, T = _folded(sim_bundle)
    with torch.no_grad():
        for m in folded.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                m.weight[m.weight.abs() < m.weight.abs().median()] = 0.0
    x, y = _test_digits(16)
    graph = capture(folded, tuple(x.shape[1:]), T)
    got = _benchmark(_spikingjelly_model(folded), x, y, T, [Footprint, ConnectionSparsity],
                     [ActivationSparsity, SynapticOperations])
    parts = []
    for start in range(0, len(y), BATCH):
        xb = x[start:start + BATCH]
        run = run_float(graph, xb.unsqueeze(0).expand(T, *xb.shape), record=True)
        parts.append(nd.batch_metrics(graph, xb, windows(graph, run["spikes"], T, False), T, "float"))
    mine = nd.summarize(graph, parts, "float")
    assert 0.45 < mine["ConnectionSparsity"] < 0.55 and round(mine["ConnectionSparsity"], 4) == got["ConnectionSparsity"]
    assert mine["Footprint"] == got["Footprint"]
    assert mine["ActivationSparsity"] == pytest.approx(got["ActivationSparsity"], rel=1e-12)
    assert mine["SynapticOperations"] == got["SynapticOperations"]


def test_fxp_counts_the_zeros_of_the_deployed_weights(sim_bundle, tmp_path):
    """fxp runs the 8-bit mantissas: ConnectionSparsity is that of a network holding them, as neurobench counts it."""
    from neurobench.metrics.static import ConnectionSparsity

    from neurodistill.formats.deploy_h5 import read_graph

    res = CliRunner().invoke(main, ["simulate", str(sim_bundle), "--samples", "8", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    nb = json.loads((tmp_path / "simulation.json").read_text())["neurobench"]
    assert nb["MembraneUpdates"] is None  # fxp does not record membrane potentials
    folded, _ = _folded(sim_bundle)
    graph = read_graph(sim_bundle / "deploy.h5")
    with torch.no_grad():
        for s in graph.synapses:
            if s.source != INPUT:  # the host's encoding layer keeps its float weights
                folded.get_submodule(s.name).weight.copy_(torch.as_tensor(s.weight_int, dtype=torch.float32))
    got = _spikingjelly_model(folded)
    assert round(nb["ConnectionSparsity"], 4) == ConnectionSparsity()(got) > 0


# ----------------------------------------------------------------------------- by hand


def _tiny() -> tuple[DeployGraph, torch.Tensor]:
    """input (3) -> dense -> LIF (2) -> dense -> readout (2), T = 2, one sample x = [1, 0, 0.5].

    Layer 1 currents: [1*1 + 2*0.5, 3*0.5] = [2, 1.5]. LIF (tau 2, decay_input, threshold 1):
    step 1: h = [1, 0.75] -> spikes [1, 0], v = [0, 0.75]; step 2: h = [1, 1.125] -> spikes
    [1, 1], v = [0, 0].
    """
    lif = Neuron("lif", tau=2.0, decay_input=True, v_threshold=1.0, v_reset=0.0)
    w1 = np.array([[1.0, 0.0, 2.0], [0.0, 0.0, 3.0]])
    w2 = np.array([[0.5, 0.0], [0.0, -1.0]])
    graph = DeployGraph(
        input_shape=(3,),
        populations=[Population("a", (2,), lif, depth=0), Population("readout", (2,), Neuron("readout"), depth=1)],
        synapses=[Synapse("fc1", "dense", INPUT, "a", w1, (3,), (2,), dense_ops=6),
                  Synapse("fc2", "dense", "a", "readout", w2, (2,), (2,), dense_ops=4)],
        biases={"a": np.zeros(2), "readout": np.zeros(2)}, timesteps=2)
    return graph, torch.tensor([[1.0, 0.0, 0.5]])


def test_tiny_network_by_hand():
    from neurodistill.core.float_graph import run_float

    graph, x = _tiny()
    run = run_float(graph, x.unsqueeze(0).expand(2, 1, 3).float(), record=True)
    assert run["spikes"]["a"][:, 0].tolist() == [[1.0, 0.0], [1.0, 1.0]]
    m = nd.summarize(graph, [nd.batch_metrics(graph, x, run["spikes"], 2, "float", membrane=True)], "float")
    assert m["Footprint"] == 4 * (6 + 2 + 4 + 2)  # weights and one bias per output, float32
    assert m["ConnectionSparsity"] == 5 / 10  # 3 of w1's 6, 2 of w2's 4
    assert m["ActivationSparsity"] == 1 - 3 / 4  # 3 spikes of 2 neurons x 2 steps
    # MACs: x's nonzero inputs 0 and 2 reach 1 and 2 nonzero weights, each step; ACs: each of the
    # 3 spikes reaches 1 nonzero weight; Dense: 6 + 4 pairs each step
    assert m["SynapticOperations"] == {"Effective_MACs": 6.0, "Effective_ACs": 3.0, "Dense": 20.0}
    # step 1: both neurons; step 2: neuron 1 (0.75 -> 0) but not neuron 0 (0 -> 0)
    assert m["MembraneUpdates"] == 3.0


def test_binary_input_counts_as_acs_and_empty_graph_is_refused():
    from neurodistill.errors import ConfigError

    graph, _ = _tiny()
    x = torch.tensor([[1.0, 0.0, -1.0]])  # NeuroBench takes {-1, 0, 1} inputs for spikes
    spikes = {"a": torch.zeros(2, 1, 2)}
    m = nd.batch_metrics(graph, x, spikes, 2, "float")
    assert (m["Effective_MACs"], m["Effective_ACs"]) == (0.0, 2 * (1 + 2))
    graph.synapses = [s for s in graph.synapses if s.source != INPUT]
    graph.synapses[0].dense_ops = 0
    with pytest.raises(ConfigError, match="no conv or linear layer"):
        nd.connection_sparsity(graph)
