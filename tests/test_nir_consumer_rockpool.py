"""Rockpool 3.1.0 (`rockpool.nn.modules.from_nir`): `--for rockpool` refuses, and the real importer shows why.

Its importer reads nir.LIF through a field nir.LIF does not have, maps no Conv2d, Flatten or IF,
and its CubaLIF (LIFTorch) resets by subtraction with several spikes a step; the tests run each
of those on the library itself (it imports without samna).
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

from .nir_consumer_cases import digits_case, refusal, residual_case  # noqa: F401 (fixtures)

pytest.importorskip("rockpool")


def _from_nir(graph: nir.NIRGraph):
    from rockpool.nn.modules import from_nir

    with warnings.catch_warnings():  # it calls the deprecated nirtorch.load
        warnings.simplefilter("ignore", DeprecationWarning)
        return from_nir(graph)


def _refusal(graph: nir.NIRGraph) -> str:
    return refusal(graph, "rockpool", "--for rockpool: Rockpool 3.1.0's importer (rockpool.nn.modules.from_nir) cannot run this graph")


def _part(msg: str, fragment: str) -> str:
    return next(p for p in msg.split("; ") if fragment in p)


def _dense(neuron: nir.NIRNode, n: int) -> nir.NIRGraph:
    return nir.NIRGraph(
        nodes={"x": nir.Input(input_type=np.array([n])),
               "fc": nir.Affine(weight=np.eye(n, dtype=np.float32), bias=np.zeros(n, np.float32)),
               "neuron": neuron, "output": nir.Output(output_type=np.array([n]))},
        edges=[("x", "fc"), ("fc", "neuron"), ("neuron", "output")],
    )


def _lif(n: int) -> nir.LIF:
    return nir.LIF(tau=np.full(n, 2.0), r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.ones(n), v_reset=np.zeros(n))


# ----------------------------------------------------------------------------- the refusal


@pytest.mark.parametrize("case_name", ["digits_case", "residual_case"])
def test_rockpool_refuses_every_lif_conv_and_flatten(case_name, request):
    case = request.getfixturevalue(case_name)
    graph = case.graph()
    msg = _refusal(graph)
    by_type = {t: [n for n, node in graph.nodes.items() if type(node).__name__ == t] for t in ("LIF", "Conv2d", "Flatten")}
    assert all(n in _part(msg, "node.tau_mem") for n in by_type["LIF"])
    assert all(n in _part(msg, "Conv2d: from_nir has no mapping") for n in by_type["Conv2d"])
    assert all(n in _part(msg, "Flatten: from_nir has no mapping") for n in by_type["Flatten"])


def test_rockpool_refuses_the_join_nirtorch_load_runs_too_early(request):
    case = request.getfixturevalue("residual_case")
    msg = _refusal(case.graph())
    assert _part(msg, "depth-first").startswith("body_4_sn2 (") and "before body_4_shortcut_0," in msg


def test_rockpool_refuses_if_and_cuba_lif_neurons():
    n = 3
    msg = _refusal(_dense(nir.IF(r=np.ones(n), v_threshold=np.ones(n), v_reset=np.zeros(n)), n))
    assert "neuron (IF: from_nir has no mapping for it" in msg
    cuba = nir.CubaLIF(tau_syn=np.full(n, 2.0), tau_mem=np.full(n, 2.0), r=np.ones(n), v_leak=np.zeros(n),
                       v_threshold=np.ones(n), v_reset=np.zeros(n))
    assert "neuron (CubaLIF: LIFTorch resets by subtracting the threshold" in _refusal(_dense(cuba, n))


# ----------------------------------------------------------------------------- why, on the real importer


@pytest.mark.parametrize("case_name", ["digits_case", "residual_case"])
def test_the_canonical_file_does_not_load_in_rockpool(case_name, request, tmp_path):
    case = request.getfixturevalue(case_name)
    nir.write(tmp_path / "net.nir", case.graph())
    with pytest.raises(NotImplementedError, match="Conv2d"):
        _from_nir(nir.read(tmp_path / "net.nir"))


def test_rockpool_cannot_read_a_lif_even_after_a_dense_layer():
    graph = _dense(_lif(3), 3)
    assert "neuron (LIF: from_nir reads node.tau_mem" in _refusal(graph)
    with pytest.raises(AttributeError, match="tau_mem"):
        _from_nir(graph)


def test_rockpool_cuba_lif_fires_several_spikes_and_keeps_the_remainder():
    n = 2
    cuba = nir.CubaLIF(tau_syn=np.full(n, 2.0), tau_mem=np.full(n, 2.0), r=np.ones(n), v_leak=np.zeros(n),
                       v_threshold=np.ones(n), v_reset=np.zeros(n))
    net = _from_nir(_dense(cuba, n))
    lif = net.get_submodule("neuron")
    assert lif.dt == 1.0  # min(tau_mem/(1 + r))
    with torch.no_grad():
        spikes, _state = net(torch.full((1, 1, n), 10.0))  # (batch, time, channels)
    v = 10.0 * np.exp(-0.5)  # isyn = exp(-dt/tau_syn)*I; v = isyn at the first step
    assert spikes.flatten().tolist() == [np.floor(v)] * n
    torch.testing.assert_close(lif.vmem, torch.full((n,), v - np.floor(v)), rtol=1e-6, atol=1e-6)


def test_a_graph_without_neurons_passes_and_runs_in_rockpool():
    torch.manual_seed(0)
    lin = torch.nn.Linear(4, 3)
    graph = nir.NIRGraph(
        nodes={"x": nir.Input(input_type=np.array([4])),
               "fc": nir.Affine(weight=lin.weight.detach().numpy(), bias=lin.bias.detach().numpy()),
               "output": nir.Output(output_type=np.array([3]))},
        edges=[("x", "fc"), ("fc", "output")],
    )
    net = _from_nir(adapt_for(graph, "rockpool"))
    x = torch.rand(5, 2, 4)
    with torch.no_grad():
        out, _state = net(x)
        torch.testing.assert_close(out, lin(x))


# ----------------------------------------------------------------------------- CLI


def test_cli_export_for_rockpool_is_one_error_line_and_no_file(tmp_path):
    ckpt = tmp_path / "snn"
    res = CliRunner().invoke(main, ["train", "--model", "snn_digits", "--epochs", "1", "--limit-train-batches", "2",
                                    "--out", str(ckpt)])
    assert res.exit_code == 0, res.output
    out = tmp_path / "nir"
    res = CliRunner().invoke(main, ["export", str(ckpt / "last.pt"), "--target", "nir", "--for", "rockpool", "--out", str(out)])
    assert res.exit_code == 2, (res.output, res.exception)
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "--for rockpool" in lines[0] and "tau_mem" in lines[0], res.stderr
    assert not (out / "network.nir").exists()
