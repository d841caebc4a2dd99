"""NIR in, property: for random small networks built in snnTorch, Norse, sinabs and spikingjelly
(tests/test_nir_in_property_nets.py: grids that make threshold ties likely, random resets, Leaky or
Synaptic, LIF or IF, sum pools), each written by the framework's own NIR exporter, neurodistill either
refuses the file with one typed line (UnsupportedLayerError or ConfigError) or reproduces the
framework's own run spike for spike, in

1. the rebuilt float model (`nir_source_module`, what `export` calibrates and `--target nir/onnx` write),
2. the deployment graph in float (`run_float`: `simulate --backend float`),
3. the fixed-point graph (`run_fxp`: `simulate --backend fxp`, which Lava matches bit for bit:
   checked here on one tie case through the CLI), where Loihi's arithmetic is exact on the grid:
   decays of 1/2 or 1/4 per step. sinabs' LIF decays by exp(-1/tau), which 12-bit vDecay only
   approximates, and a spikingjelly/sinabs `>=` neuron with a leak lands on Loihi's strict `>` when v
   equals the threshold exactly (docs/loihi2.md): those fixed-point spikes are counted, not required.

A refusal is allowed only where the framework computes what Loihi 2 cannot: reset by subtraction and
snnTorch's Synaptic (its reset to zero skips the next step's input).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurodistill.errors import ConfigError, UnsupportedLayerError
from neurodistill.export.bundle import nir_source_module

from .conftest import lava_python
from .test_nir_in_common import invoke
from .test_nir_in_property_nets import BUILDERS, SHAPE, Net, T, inputs

CASES = {"snntorch": 24, "norse": 24, "sinabs": 20, "spikingjelly": 24}


def _expect_refusal(net: Net) -> bool:
    return net.reset == "subtract" or "Synaptic" in net.what


def _our_float(model, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    from spikingjelly.activation_based import neuron

    nodes = [m for m in model.modules() if isinstance(m, neuron.BaseNode)]
    seen: list[list[torch.Tensor]] = [[] for _ in nodes]
    hooks = [m.register_forward_hook(lambda _m, _i, out, s=s: s.append(out.detach())) for m, s in zip(nodes, seen, strict=True)]
    with torch.no_grad():
        out = model(x.unsqueeze(0).expand(T, *x.shape).contiguous())
    for h in hooks:
        h.remove()
    return [s[0] for s in seen], out.reshape(T, len(x), -1)


def _deployed(model, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor], list]:
    """(float graph spikes, fixed-point spikes in each population's T-step window, populations), as
    `export` builds the graph and `simulate --backend float/fxp` runs it."""
    from neurodistill.core.capture import capture
    from neurodistill.core.float_graph import run_float
    from neurodistill.core.fxp import run_fxp
    from neurodistill.core.loihi2 import encoding_bias, encoding_current, quantize_graph
    from neurodistill.export.range_check import fit_ranges

    graph = capture(model, SHAPE, timesteps=T)
    current = encoding_current(graph, x.numpy())
    reports = quantize_graph(graph, 8, float(np.abs(current).max()))
    fit_ranges(graph, reports, T, fixed=set())
    fl = run_float(graph, x.unsqueeze(0).expand(T, *x.shape), record=True)["spikes"]
    bias, _ = encoding_bias(graph, current)
    q = run_fxp(graph, torch.as_tensor(bias), T, windows_only=True)["spikes"]
    pops = graph.populations[:-1]
    return [fl[p.name] for p in pops], [q[p.name].float() for p in pops], pops


def _mismatches(a: list[torch.Tensor], b: list[torch.Tensor]) -> int:
    assert len(a) == len(b)
    return sum(int((x.reshape(y.shape) != y).sum()) for x, y in zip(a, b, strict=True))


def _fxp_exact(net: Net, pops) -> bool:
    """Loihi's arithmetic reproduces every spike: exact decays, and no `>=` neuron with a leak."""
    ge_with_leak = [p for p in pops if p.neuron.kind == "lif" and not net.what.startswith(("snntorch", "norse"))]
    return net.exact_decay and not ge_with_leak


def run_case(framework: str, seed: int, tmp_path) -> dict:
    x = inputs(1000 + seed)
    net = BUILDERS[framework](seed, tmp_path, x)
    try:
        model, _ = nir_source_module(net.path, framework, source_reset=net.reset)
        dep_float, dep_fxp, pops = _deployed(model, x)
    except (UnsupportedLayerError, ConfigError) as e:
        line = str(e)
        assert "\n" not in line and line, (net.what, line)
        assert _expect_refusal(net), f"{net.what}: refused: {line}"
        return {"refused": 1}
    assert not _expect_refusal(net), f"{net.what}: accepted, but the framework computes what Loihi cannot"
    ours, outs = _our_float(model, x)
    assert _mismatches(ours, net.spikes) == 0, net.what
    torch.testing.assert_close(outs, net.outputs.reshape(outs.shape), rtol=1e-5, atol=1e-5, msg=net.what)
    assert _mismatches(dep_float, net.spikes) == 0, net.what
    fxp = _mismatches(dep_fxp, net.spikes)
    exact = _fxp_exact(net, pops)
    assert fxp == 0 or not exact, f"{net.what}: {fxp} fixed-point spikes differ from {framework}'s"
    spikes = sum(int(s.sum()) for s in net.spikes)
    return {"accepted": 1, "spikes": spikes, "fxp_checked": int(exact), "fxp_mismatch_unchecked": 0 if exact else fxp}


@pytest.mark.parametrize("framework", list(CASES))
def test_nir_in_reproduces_the_framework_or_refuses(framework, tmp_path):
    totals: dict[str, int] = {}
    for seed in range(CASES[framework]):
        for k, v in run_case(framework, seed, tmp_path).items():
            totals[k] = totals.get(k, 0) + v
    print(f"{framework}: {CASES[framework]} cases {totals}")
    assert totals.get("accepted", 0) >= CASES[framework] // 2 and totals.get("spikes", 0) > 0
    assert totals.get("fxp_checked", 0) >= 1


def test_a_threshold_tie_is_one_spike_apart_nowhere(tmp_path):
    """snnTorch fires on mem > threshold: w = 1, beta = 0.5, threshold 1, input 1 gives mem 1, 1.5, 1, 1.5
    and spikes 0, 1, 0, 1; the float rebuild, `simulate --backend float`, fxp and Lava give the same."""
    import nir
    import snntorch as snn
    from snntorch import utils
    from snntorch.export_nir import export_to_nir

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 1, bias=False),
                              snn.Leaky(beta=torch.full((1,), 0.5), threshold=torch.ones(1), init_hidden=True,
                                        reset_mechanism="zero"),
                              torch.nn.Linear(1, 10)).eval()
    with torch.no_grad():
        net[1].weight.zero_()
        net[1].weight[0, 0] = 1.0
    path = tmp_path / "tie.nir"
    nir.write(path, export_to_nir(net, torch.zeros(1, *SHAPE), ignore_dims=[0]))
    x = torch.zeros(2, *SHAPE)
    x[:, 0, 0, 0] = 1.0
    seen = []
    h = net[2].register_forward_hook(lambda _m, _i, out: seen.append(out.detach()))
    utils.reset(net)
    with torch.no_grad():
        for _ in range(T):
            net(x)
    h.remove()
    assert torch.stack(seen)[:, 0, 0].tolist() == [0.0, 1.0, 0.0, 1.0]
    model, _ = nir_source_module(path, "snntorch", source_reset="zero")
    ours, _ = _our_float(model, x)
    dep_float, dep_fxp, _ = _deployed(model, x)
    for run in (ours, dep_float, dep_fxp):
        assert _mismatches(run, [torch.stack(seen)]) == 0
    lava = lava_python()
    if lava is not None:  # the same integers in Lava: every spike of fxp, the tie included
        _lava_on_given_inputs(path, x, tmp_path, lava, torch.stack(seen))


def _lava_on_given_inputs(path, x: torch.Tensor, tmp_path, lava: str, expected: torch.Tensor) -> None:
    from .test_nir_in_common import _spikes

    np.savez(tmp_path / "x.npz", x=x.numpy(), y=np.zeros(len(x), np.int64))
    bundle = tmp_path / "bundle"
    res = invoke("export", path, "--from", "snntorch", "--source-reset", "zero", "--timesteps", T, "--calib",
                 tmp_path / "x.npz", "--out", bundle)
    assert res.exit_code == 0, res.output
    runs = {}
    for backend in ("fxp", "lava"):
        res = invoke("simulate", bundle, "--backend", backend, "--inputs", tmp_path / "x.npz", "--save-spikes",
                     "--lava-python", lava, "--out", tmp_path / backend)
        assert res.exit_code == 0, res.output
        runs[backend] = {k: v for k, v in _spikes(tmp_path / backend / "spikes.h5").items() if k.endswith("/spikes")}
    assert len(runs["fxp"]) == 1 and runs["fxp"].keys() == runs["lava"].keys()
    (key,) = runs["fxp"]
    assert np.array_equal(runs["fxp"][key], runs["lava"][key])
    # (samples, chip steps, neurons); the population fed by the host's encoding is at depth 0
    assert runs["lava"][key][:, :T, 0].T.astype(float).tolist() == expected.reshape(T, len(x)).tolist()
