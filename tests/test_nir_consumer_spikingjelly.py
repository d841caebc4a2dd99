"""spikingjelly's own NIR importer runs the canonical file (`--for spikingjelly`) spike for spike."""

from __future__ import annotations

import nir
import pytest
import torch

from neurodistill.formats.nir.consumers import adapt_for

from .nir_consumer_cases import digits_case, mismatches, residual_case  # noqa: F401 (fixtures)


def _run(graph: nir.NIRGraph, x: torch.Tensor):
    """spikingjelly's `import_from_nir`, every LIF/IF node's spikes recorded by node name."""
    from spikingjelly.activation_based import functional
    from spikingjelly.activation_based.nir_exchange import import_from_nir

    gm = import_from_nir(graph, dt=float(graph.metadata["dt"]), step_mode="m")
    spikes = {}
    # The importer wraps each neuron in a stateful module named after its node, returning (spikes, state).
    for name, m in gm.named_children():
        if isinstance(graph.nodes.get(name), nir.LIF | nir.IF):
            m.register_forward_hook(lambda _m, _i, o, k=name: spikes.__setitem__(
                k, (o[0] if isinstance(o, tuple) else o).detach().clone()))
    functional.reset_net(gm)
    with torch.no_grad():
        logits, _state = gm(x)
    return logits, spikes


@pytest.mark.parametrize("case_name", ["digits_case", "residual_case"])
def test_spikingjelly_import_matches_spike_for_spike(case_name, request, tmp_path):
    case = request.getfixturevalue(case_name)
    path = tmp_path / "net.nir"
    nir.write(path, adapt_for(case.graph(), "spikingjelly"))
    graph = nir.read(path)
    logits, got = _run(graph, case.x)
    ref = case.spikes_by_node(graph)
    assert mismatches(ref, got) == {k: 0 for k in ref}
    torch.testing.assert_close(logits, case.logits, rtol=1e-5, atol=1e-5)


def test_cli_writes_the_consumer_into_file_and_manifest(tmp_path):
    from click.testing import CliRunner

    from neurodistill.cli import main

    run = CliRunner().invoke(main, ["train", "--model", "snn_digits", "--epochs", "1", "--limit-train-batches", "2",
                                    "--out", str(tmp_path / "run")])
    assert run.exit_code == 0, run.output
    res = CliRunner().invoke(main, ["export", str(tmp_path / "run" / "last.pt"), "--target", "nir", "--for",
                                    "spikingjelly", "--out", str(tmp_path / "nir")])
    assert res.exit_code == 0, res.output
    meta = nir.read(tmp_path / "nir" / "network.nir").metadata
    assert meta["consumer"] == "spikingjelly" and "import_from_nir" in meta["consumer_importer"]
    import json

    assert json.loads((tmp_path / "nir" / "manifest.json").read_text())["consumer"] == "spikingjelly"
    # --for is a property of NIR files only: with another target it is one error line, nothing written.
    bad = CliRunner().invoke(main, ["export", str(tmp_path / "run" / "last.pt"), "--target", "loihi2", "--for",
                                    "spikingjelly", "--out", str(tmp_path / "b")])
    assert bad.exit_code == 2 and "--for spikingjelly is for --target nir" in bad.stderr, bad.output
    assert not (tmp_path / "b").exists()
