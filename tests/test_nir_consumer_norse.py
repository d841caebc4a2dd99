"""Norse's own NIR importer runs `--for norse` files spike for spike, and refuses what it cannot run."""

from __future__ import annotations

import copy
import inspect

import nir
import numpy as np
import pytest
import torch

from neurodistill.errors import UnsupportedLayerError
from neurodistill.formats.nir.consumers import adapt_for
from neurodistill.formats.nir.consumers.norse import DT, norse_tau, rewrite
from neurodistill.formats.nir.from_torch import to_nir_graph

from .nir_consumer_cases import _case, cli_export_and_run, digits_case, mismatches, residual_case  # noqa: F401 (fixtures)
from .test_nir_consumer_snntorch import if_net, round_trip, tiny_net


def run_norse(graph: nir.NIRGraph, x: torch.Tensor):
    """`norse.torch.from_nir(graph)` (its default dt) stepped as Norse's docs do, `out, state = m(x_t, state)`;
    every LIF/IF node's spikes recorded by node name."""
    import norse.torch

    net = norse.torch.from_nir(graph)
    steps: dict[str, list[torch.Tensor]] = {
        k: [] for k, n in graph.nodes.items() if isinstance(n, nir.LIF | nir.IF)}
    for k in steps:
        net.get_submodule(k.replace(".", "_")).register_forward_hook(
            lambda _m, _i, out, k=k: steps[k].append(out[0].detach().clone()))
    state, logits = None, []
    with torch.no_grad():
        for t in range(x.shape[0]):
            out, state = net(x[t], state)
            logits.append(out)
    return torch.stack(logits), {k: torch.stack(v) for k, v in steps.items()}


def assert_matches(graph: nir.NIRGraph, case) -> None:
    logits, got = run_norse(graph, case.x)
    ref = case.spikes_by_node(graph)
    assert mismatches(ref, got) == {k: 0 for k in ref}
    torch.testing.assert_close(logits, case.logits, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def if_case():
    x = torch.rand(4, 100, 1, 4, 4, generator=torch.Generator().manual_seed(2))
    return _case("if", if_net(), (1, 4, 4), 4, x)


def test_norse_import_matches_the_digits_student_spike_for_spike(request, tmp_path):
    case = request.getfixturevalue("digits_case")
    graph = round_trip(adapt_for(case.graph(), "norse"), tmp_path)
    assert_matches(graph, case)
    # The file's dt is from_nir's default, so from_nir(g) and from_nir(g, dt=g.metadata["dt"]) are one thing.
    import norse.torch

    assert graph.metadata["dt"] == DT == inspect.signature(norse.torch.from_nir).parameters["dt"].default


def test_norse_import_matches_if_neurons_spike_for_spike(if_case, tmp_path):
    assert_matches(round_trip(adapt_for(if_case.graph(), "norse"), tmp_path), if_case)


def test_canonical_file_does_not_run(request, tmp_path):
    # Why --for norse exists: Norse's Flatten counts the batch axis, and it reads tau at dt = 1e-3.
    case = request.getfixturevalue("digits_case")
    with pytest.raises(RuntimeError, match="cannot be multiplied"):
        run_norse(round_trip(case.graph(), tmp_path), case.x)


def test_tau_gives_the_trained_float32_step_factor():
    # Norse steps v by dt * (1/float32(tau)) * (...); tau * 1e-3 alone is one float32 step off for tau = 3.
    for tau in (1.5, 2.0, 3.0, 7.0, 12.5, 100.0):
        for dt in (1.0, 1e-4):
            want = torch.tensor(np.float32(1 / tau))
            got = DT * (1 / torch.from_numpy(norse_tau(np.full(2, tau * dt), dt)).float())
            assert torch.equal(got, want.expand(2)), (tau, dt)
    assert DT * (1 / torch.tensor(np.float32(3.0 * DT))) != torch.tensor(np.float32(1 / 3))


# ----------------------------------------------------------------------------- refusals


def test_residual_net_is_refused_because_the_executor_runs_depth_first(request, tmp_path):
    case = request.getfixturevalue("residual_case")
    with pytest.raises(UnsupportedLayerError) as err:
        adapt_for(case.graph(), "norse")
    msg = str(err.value)
    assert "\n" not in msg and "norse" in msg and "body_4_sn2 (its input body_4_shortcut_0" in msg
    assert "depth first" in msg and "body_3_sn2" not in msg  # the identity shortcut is run in order
    # The reason, in the library: the same file without the refusal loads and runs, but the conv-shortcut
    # join sees its shortcut one step late and the executor returns the shortcut's output as the result.
    graph = round_trip(rewrite(copy.deepcopy(case.graph())), tmp_path)
    logits, got = run_norse(graph, case.x)
    bad = mismatches(case.spikes_by_node(graph), got)
    assert bad["body_4_sn2"] > 0 and all(v == 0 for k, v in bad.items() if k != "body_4_sn2"), bad
    assert logits.shape != case.logits.shape


def test_avgpool_is_refused_because_norse_skips_it(tmp_path):
    from spikingjelly.activation_based import neuron

    graph = to_nir_graph(tiny_net(neuron.LIFNode(tau=2.0), pool=True), (1, 4, 4), 3)
    with pytest.raises(UnsupportedLayerError, match=r"--for norse: .*body_2 \(nir.AvgPool2d: from_nir maps it to None"):
        adapt_for(graph, "norse")
    import norse.torch

    net = norse.torch.from_nir(round_trip(rewrite(graph), tmp_path))
    assert "body_2" not in dict(net.named_children())


@pytest.mark.parametrize("lif_args, why", [
    ({"v_reset": -0.25}, r"body_1 \(nir.LIF: v_reset != 0"),
    ({"decay_input": False}, r"body_1 \(nir.LIF: r != 1"),
])
def test_neurons_norse_cannot_express_are_refused(lif_args, why):
    from spikingjelly.activation_based import neuron

    graph = to_nir_graph(tiny_net(neuron.LIFNode(tau=2.0, **lif_args)), (1, 4, 4), 3)
    with pytest.raises(UnsupportedLayerError, match=f"--for norse: .*{why}"):
        adapt_for(graph, "norse")


# ----------------------------------------------------------------------------- CLI


def test_cli_export_for_norse_runs_in_norse(tmp_path):
    graph = cli_export_and_run(tmp_path, "norse", run_norse)
    assert graph.metadata["dt"] == 1e-3  # from_nir's default dt, so from_nir(graph) needs no argument
