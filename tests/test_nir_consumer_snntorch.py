"""snnTorch's own NIR importer runs `--for snntorch` files spike for spike, and refuses what it cannot run."""

from __future__ import annotations

import contextlib
import io

import nir
import pytest
import torch
from torch import nn

from neurodistill.errors import UnsupportedLayerError
from neurodistill.formats.nir.consumers import adapt_for
from neurodistill.formats.nir.exportable import folded_copy
from neurodistill.formats.nir.from_torch import to_nir_graph

from .nir_consumer_cases import cli_export_and_run, digits_case, mismatches, residual_case  # noqa: F401 (fixtures)
from .test_export_nir_float import lif_spikes


def import_snntorch(graph: nir.NIRGraph) -> torch.nn.Module:
    from snntorch.import_nir import import_from_nir

    with contextlib.redirect_stdout(io.StringIO()):  # it prints every LIF's parameters
        return import_from_nir(graph)


def run_snntorch(graph: nir.NIRGraph, x: torch.Tensor):
    """The imported module stepped over time as snnTorch users do (`utils.reset`, one call per step, the
    Leaky neurons keep their own state); every LIF node's spikes recorded by node name."""
    import snntorch.utils

    net = import_snntorch(graph)
    steps: dict[str, list[torch.Tensor]] = {k: [] for k, n in graph.nodes.items() if isinstance(n, nir.LIF)}
    for k in steps:
        net.get_submodule(k.replace(".", "_")).register_forward_hook(
            lambda _m, _i, out, k=k: steps[k].append(out.detach().clone()))
    snntorch.utils.reset(net)
    with torch.no_grad():
        logits = torch.stack([net(x[t])[0] for t in range(x.shape[0])])
    return logits, {k: torch.stack(v) for k, v in steps.items()}


def round_trip(graph: nir.NIRGraph, tmp_path) -> nir.NIRGraph:
    nir.write(tmp_path / "net.nir", graph)
    return nir.read(tmp_path / "net.nir")


def tiny_net(neuron_layer: nn.Module, pool: bool = False) -> nn.Module:
    """conv -> neuron [-> avgpool] -> flatten -> linear on (1, 4, 4): just enough for one refused layer."""
    from spikingjelly.activation_based import layer

    from neurodistill.models.base import Net

    torch.manual_seed(3)
    mods = [layer.Conv2d(1, 2, 3, padding=1), neuron_layer]
    mods += [layer.AvgPool2d(2)] if pool else []
    mods += [layer.Flatten(1), layer.Linear(2 * (2 if pool else 4) ** 2, 3)]
    return Net(nn.Sequential(*mods), spiking=True).eval()


def if_net() -> nn.Module:
    from spikingjelly.activation_based import neuron

    return tiny_net(neuron.IFNode(v_threshold=0.5))


@pytest.mark.parametrize("case_name", ["digits_case", "residual_case"])
def test_snntorch_import_matches_spike_for_spike(case_name, request, tmp_path):
    case = request.getfixturevalue(case_name)
    graph = round_trip(adapt_for(case.graph(), "snntorch"), tmp_path)
    logits, got = run_snntorch(graph, case.x)
    ref = case.spikes_by_node(graph)
    assert mismatches(ref, got) == {k: 0 for k in ref}
    torch.testing.assert_close(logits, case.logits, rtol=1e-5, atol=1e-5)
    assert graph.metadata["dt"] == 1e-4 and graph.metadata["consumer"] == "snntorch"


def test_canonical_file_is_read_at_dt_1e4_and_does_not_run(request, tmp_path):
    case = request.getfixturevalue("digits_case")
    # Why --for snntorch exists: snnTorch reads every LIF as if dt were 1e-4 (the canonical dt = 1 step
    # gives beta = 1 - 1e-4/tau and a threshold of v_th*tau/1e-4), and its Flatten counts the batch axis.
    graph = round_trip(case.graph(), tmp_path)
    lif = graph.nodes["body_2"]
    net = import_snntorch(graph)
    leaky = net.get_submodule("body_2")
    tau, th = float(lif.tau.flat[0]), float(lif.v_threshold.flat[0])
    assert torch.allclose(leaky.beta, torch.tensor(1 - 1e-4 / tau))
    assert float(leaky.threshold) == pytest.approx(th * tau / (float(lif.r.flat[0]) * 1e-4))
    with pytest.raises(RuntimeError, match="cannot be multiplied"):
        run_snntorch(graph, case.x)


def test_threshold_tie_fires_as_in_the_model(tmp_path):
    # v lands exactly on v_threshold (input 1, tau 2: v = 0.5): spikingjelly fires (>=), snnTorch only if
    # the file's threshold is one float32 step lower (its rule is >).
    from spikingjelly.activation_based import layer, neuron

    from neurodistill.models.base import Net

    lin = layer.Linear(1, 1)
    with torch.no_grad():
        lin.weight.fill_(1.0)
        lin.bias.zero_()
    out = layer.Linear(1, 1)
    model = Net(nn.Sequential(lin, neuron.LIFNode(tau=2.0, v_threshold=0.5), out), spiking=True).eval()
    x = torch.ones(2, 1, 1)
    _, ref = lif_spikes(folded_copy(model), x)
    assert int(ref["body.1"].sum()) == 2  # a tie at every step: v = 0 + (1 - 0)/2, then reset to 0
    graph = round_trip(adapt_for(to_nir_graph(model, (1,), 2), "snntorch"), tmp_path)
    _, got = run_snntorch(graph, x)
    by_node = {n: ref[p] for n, p in graph.metadata["source_modules"].items() if p in ref}
    assert mismatches(by_node, got) == {k: 0 for k in by_node}


# ----------------------------------------------------------------------------- refusals


def test_if_neurons_are_refused_because_snntorch_builds_a_leaky_neuron(tmp_path):
    graph = to_nir_graph(if_net(), (1, 4, 4), 3)
    with pytest.raises(UnsupportedLayerError) as err:
        adapt_for(graph, "snntorch")
    msg = str(err.value)
    assert "\n" not in msg and "snntorch" in msg and "body_1 (nir.IF" in msg and "Leaky(beta=0.9)" in msg
    # The reason, in the library: the IF node becomes a leaky neuron that resets by subtraction.
    leaky = import_snntorch(round_trip(graph, tmp_path)).get_submodule("body_1")
    assert float(leaky.beta) == pytest.approx(0.9) and leaky.reset_mechanism == "subtract" and not leaky.init_hidden


def test_nonzero_reset_is_refused():
    from spikingjelly.activation_based import neuron

    graph = to_nir_graph(tiny_net(neuron.LIFNode(tau=2.0, v_reset=-0.25)), (1, 4, 4), 3)
    with pytest.raises(UnsupportedLayerError, match=r"--for snntorch: .*body_1 \(nir.LIF: v_leak/v_reset != 0"):
        adapt_for(graph, "snntorch")


def test_sum_of_three_inputs_is_refused(request):
    graph = request.getfixturevalue("residual_case").graph()
    graph.edges.append(("body_0", "body_3_sn2"))  # body_3_sn2 already sums body_3_conv2 and body_2
    with pytest.raises(UnsupportedLayerError, match=r"--for snntorch: .*body_3_sn2 \(3 inputs: nirtorch adds them"):
        adapt_for(graph, "snntorch")


# ----------------------------------------------------------------------------- CLI


def test_cli_export_for_snntorch_runs_in_snntorch(tmp_path):
    graph = cli_export_and_run(tmp_path, "snntorch", run_snntorch)
    assert graph.metadata["dt"] == 1e-4
