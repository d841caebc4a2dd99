"""sinabs 2.0.3 (`sinabs.from_nir`): `--for sinabs` refuses, and the real importer shows why.

sinabs builds every LIF with a subtractive reset and multi-spike output and ignores v_reset, and
nirtorch.load runs a residual join before its conv shortcut. The tests show each on the real
library: the canonical file does not even load; a graph in sinabs' conventions (`_in_sinabs_terms`,
a helper here) loads and misses spikes; with the two neuron rules set by hand on the imported
layers the digits student matches spike for spike, and the residual net misses only at the join.
"""

from __future__ import annotations

import warnings

import nir
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from neurodistill.cli import main
from neurodistill.formats.nir.consumers import adapt_for
from neurodistill.formats.nir.consumers.common import nirtorch_load_order

from .nir_consumer_cases import digits_case, mismatches, refusal, residual_case  # noqa: F401 (fixtures)

sinabs = pytest.importorskip("sinabs")
sl = pytest.importorskip("sinabs.layers")


def _load(graph: nir.NIRGraph, case):
    T, N = case.x.shape[:2]
    with warnings.catch_warnings():  # sinabs 2.0.3 calls the deprecated nirtorch.load
        warnings.simplefilter("ignore", DeprecationWarning)
        return sinabs.from_nir(graph, batch_size=N, num_timesteps=T)


def _run(model, case, neuron_rule: str = "sinabs"):
    """Run as sinabs' users do: (batch*time, ...) batch-major; spikes per LIF layer back as [T, N, ...].
    `neuron_rule="graph"` first sets reset to 0 and one spike per step on every imported LIF."""
    from sinabs.activation import MembraneReset, SingleSpike

    T, N = case.x.shape[:2]
    spikes = {}
    for name, m in model.named_children():
        if isinstance(m, sl.LIFSqueeze):
            if neuron_rule == "graph":
                m.reset_fn, m.spike_fn = MembraneReset(), SingleSpike
            m.register_forward_hook(lambda _m, _i, o, k=name: spikes.__setitem__(
                k, o.detach().reshape(N, T, *o.shape[1:]).transpose(0, 1)))
    with torch.no_grad():
        out, _state = model(case.x.transpose(0, 1).reshape(N * T, *case.x.shape[2:]))
    return out.reshape(N, T, -1).transpose(0, 1), spikes


def _tau_for_decay(alpha: np.float32) -> np.float32:
    """A float32 tau whose float32 exp(-1/tau) (sinabs' LIF.alpha_mem_calculated) is exactly alpha."""
    tau = np.float32(-1.0 / np.log(np.float64(alpha)))
    for _ in range(64):
        got = np.float32(torch.exp(-1.0 / torch.tensor(tau)).item())
        if got == alpha:
            return tau
        tau = np.nextafter(tau, np.float32(np.inf) if got < alpha else np.float32(0))
    raise AssertionError(f"no float32 tau gives decay {alpha}")


def _in_sinabs_terms(graph: nir.NIRGraph) -> nir.NIRGraph:
    """The canonical graph rewritten for sinabs' LIF (`v = exp(-1/tau)*v + I`, no dt, r unused):
    the same decay 1 - dt/tau, and the state scaled by tau/(dt*r) so that the input enters with gain
    1 (threshold scaled instead). Parameters one per channel, shaped (C, 1, 1), which sinabs' v_leak
    check accepts and nir.read's type check does not, so the graph is passed in memory."""
    dt = float(graph.metadata["dt"])
    nodes = dict(graph.nodes)
    for name, node in graph.nodes.items():
        if isinstance(node, nir.LIF):
            chan = (slice(None),) + (0,) * (node.tau.ndim - 1)
            shape = node.tau.shape[:1] + (1,) * (node.tau.ndim - 1)
            per_channel = {k: getattr(node, k)[chan] for k in ("tau", "r", "v_threshold")}
            assert all(np.all(getattr(node, k) == v.reshape(shape)) for k, v in per_channel.items()), "uniform over H, W"
            decay = np.float32(1 - dt / per_channel["tau"])
            tau = np.array([_tau_for_decay(a) for a in decay], dtype=np.float32).reshape(shape)
            thr = (per_channel["v_threshold"] * per_channel["tau"] / (dt * per_channel["r"])).reshape(shape)
            nodes[name] = nir.LIF(tau=tau, r=np.ones(shape), v_leak=np.zeros(shape), v_threshold=thr, v_reset=np.zeros(shape))
    return nir.NIRGraph(nodes, list(graph.edges), metadata=dict(graph.metadata), type_check=False)


# ----------------------------------------------------------------------------- the refusal


def _refusal(graph: nir.NIRGraph) -> str:
    return refusal(graph, "sinabs", "--for sinabs: sinabs 2.0.3's importer (sinabs.from_nir) cannot run this graph")


@pytest.mark.parametrize("case_name", ["digits_case", "residual_case"])
def test_sinabs_refuses_every_lif_for_its_reset_and_multi_spike(case_name, request):
    case = request.getfixturevalue(case_name)
    graph = case.graph()
    msg = _refusal(graph)
    lifs = [n for n, node in graph.nodes.items() if isinstance(node, nir.LIF)]
    reset_part = next(p for p in msg.split("; ") if "MembraneSubtract" in p)
    assert all(n in reset_part for n in lifs) and "MultiSpike" in reset_part and "v_reset" in reset_part
    # Every LIF here follows a Conv2d: sinabs' v_leak check would raise on it as well.
    leak_part = next(p for p in msg.split("; ") if "any(v_leak) != 0" in p)
    assert all(n in leak_part for n in lifs)


def test_sinabs_refuses_the_join_nirtorch_load_runs_too_early(request):
    case = request.getfixturevalue("residual_case")
    msg = _refusal(case.graph())
    assert "body_4_sn2 (nirtorch.load orders nodes by a depth-first walk, so it runs this node before body_4_shortcut_0," in msg
    # The identity shortcut into body_3_sn2 comes after its branch in edge order, so it runs in time.
    assert "body_3_sn2 (nirtorch" not in msg


def test_sinabs_refuses_nodes_it_has_no_mapping_for_and_if_neurons():
    n = 4
    graph = nir.NIRGraph(
        nodes={
            "x": nir.Input(input_type=np.array([1, 4, 4])),
            "conv": nir.Conv2d(input_shape=(4, 4), weight=np.ones((n, 1, 1, 1), np.float32), stride=1, padding=0,
                               dilation=1, groups=1, bias=np.zeros(n, np.float32)),
            "pool": nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
            "neuron": nir.IF(r=np.ones((n, 2, 2)), v_threshold=np.ones((n, 2, 2)), v_reset=np.zeros((n, 2, 2))),
            "output": nir.Output(output_type=np.array([n, 2, 2])),
        },
        edges=[("x", "conv"), ("conv", "pool"), ("pool", "neuron"), ("neuron", "output")],
    )
    msg = _refusal(graph)
    assert "pool (AvgPool2d: from_nir has no mapping for it)" in msg
    assert "neuron (IF: from_nir builds it with sinabs' MembraneSubtract reset and MultiSpike" in msg
    assert "conv (" not in msg


# ----------------------------------------------------------------------------- why, on the real importer


@pytest.mark.parametrize("case_name", ["digits_case", "residual_case"])
def test_the_canonical_file_does_not_load_in_sinabs(case_name, request, tmp_path):
    case = request.getfixturevalue(case_name)
    nir.write(tmp_path / "net.nir", case.graph())
    with pytest.raises(ValueError, match="truth value of an array with more than one element is ambiguous"):
        _load(nir.read(tmp_path / "net.nir"), case)


def test_digits_in_sinabs_terms_misses_spikes_until_the_neuron_rule_is_set_by_hand(request):
    case = request.getfixturevalue("digits_case")
    graph = _in_sinabs_terms(case.graph())
    ref = case.spikes_by_node(graph)
    _, as_imported = _run(_load(graph, case), case)
    assert all(v > 0 for v in mismatches(ref, as_imported).values())
    assert max(int(s.max()) for s in as_imported.values()) > 1, "MultiSpike: several spikes in one step"
    logits, by_hand = _run(_load(graph, case), case, neuron_rule="graph")
    assert mismatches(ref, by_hand) == {k: 0 for k in ref}
    torch.testing.assert_close(logits, case.logits, rtol=1e-5, atol=1e-5)


def test_residual_in_sinabs_terms_misses_only_at_the_misordered_join(request):
    case = request.getfixturevalue("residual_case")
    graph = _in_sinabs_terms(case.graph())
    ref = case.spikes_by_node(graph)
    model = _load(graph, case)
    real_order = [n.name for n in model.execution_order]
    assert real_order == nirtorch_load_order(graph)
    assert real_order.index("body_4_shortcut_0") > real_order.index("body_4_sn2")
    out, by_hand = _run(model, case, neuron_rule="graph")
    # The executor returns the last node it ran, here the shortcut conv, not the readout.
    assert out.shape[-1] == 6 * 3 * 5 != case.logits.shape[-1]
    missed = mismatches(ref, by_hand)
    assert missed.pop("body_4_sn2") > 0
    assert missed == {k: 0 for k in missed}


def test_a_graph_without_neurons_passes_and_runs_in_sinabs():
    """What the importer reads right (Conv2d, Flatten counted without the batch axis, Affine) passes unchanged."""
    torch.manual_seed(0)
    conv, lin = torch.nn.Conv2d(2, 3, 3, padding=1), torch.nn.Linear(3 * 4 * 5, 2)
    graph = nir.NIRGraph(
        nodes={
            "x": nir.Input(input_type=np.array([2, 4, 5])),
            "conv": nir.Conv2d(input_shape=(4, 5), weight=conv.weight.detach().numpy(), stride=1, padding=1,
                               dilation=1, groups=1, bias=conv.bias.detach().numpy()),
            "flat": nir.Flatten(input_type={"input": np.array([3, 4, 5])}, start_dim=0, end_dim=-1),
            "fc": nir.Affine(weight=lin.weight.detach().numpy(), bias=lin.bias.detach().numpy()),
            "output": nir.Output(output_type=np.array([2])),
        },
        edges=[("x", "conv"), ("conv", "flat"), ("flat", "fc"), ("fc", "output")],
    )
    assert adapt_for(graph, "sinabs").nodes.keys() == graph.nodes.keys()
    x = torch.rand(6, 2, 4, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        out, _ = sinabs.from_nir(adapt_for(graph, "sinabs"), batch_size=6, num_timesteps=1)(x)
    torch.testing.assert_close(out, lin(conv(x).flatten(1)).detach())


# ----------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def spiking_ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("snn")
    res = CliRunner().invoke(main, ["train", "--model", "snn_digits", "--epochs", "1", "--limit-train-batches", "2",
                                    "--out", str(out)])
    assert res.exit_code == 0, res.output
    return out / "last.pt"


def test_cli_export_for_sinabs_is_one_error_line_and_no_file(spiking_ckpt, tmp_path):
    out = tmp_path / "nir"
    res = CliRunner().invoke(main, ["export", str(spiking_ckpt), "--target", "nir", "--for", "sinabs", "--out", str(out)])
    assert res.exit_code == 2, (res.output, res.exception)
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "--for sinabs" in lines[0] and "MembraneSubtract" in lines[0], res.stderr
    assert "Traceback" not in res.output
    assert not (out / "network.nir").exists()
