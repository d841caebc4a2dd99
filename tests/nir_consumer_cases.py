"""What every NIR consumer test runs: two networks, their inputs, and the reference they must equal.

The reference is neurodistill's float simulation of the exported network: the BatchNorm-folded
copy of the model (`folded_copy`, the network the NIR graph describes module for module), with
the output spikes of every LIF/IF layer recorded per step. A consumer's run of the NIR file must
give the same spikes in every layer at every step (0 mismatches) and the same readout.

Cases (fixtures, imported by the test modules):
  digits_case    the demo's digits student (`snn_digits`, trained 3 epochs, T = 4), 100 test digits
  residual_case  a stem, an identity-shortcut block and a 1x1-conv-shortcut block (T = 3), 100 random inputs
"""

from __future__ import annotations

from dataclasses import dataclass

import nir
import pytest
import torch
from torch import nn

from neurodistill.formats.nir.exportable import folded_copy
from neurodistill.formats.nir.from_torch import to_nir_graph

from .test_export_nir_float import lif_spikes
from .test_lava_residual import SHAPE as RESIDUAL_SHAPE
from .test_lava_residual import residual_net

N_INPUTS = 100


@dataclass
class Case:
    name: str
    model: nn.Module  # eval mode, multi-step: [T, B, *shape] -> [T, B, K]
    shape: tuple[int, ...]
    timesteps: int
    x: torch.Tensor  # [T, N, *shape], N >= 100
    logits: torch.Tensor  # reference readout per step [T, N, K]
    spikes: dict[str, torch.Tensor]  # reference spikes per step, keyed by the model's module path

    def graph(self, dt: float = 1.0) -> nir.NIRGraph:
        """The canonical float NIR graph (what `export --target nir` writes before `--for`)."""
        return to_nir_graph(self.model, self.shape, self.timesteps, dt=dt)

    def spikes_by_node(self, graph: nir.NIRGraph) -> dict[str, torch.Tensor]:
        """The reference spikes keyed by NIR node name instead of module path."""
        by_path = {path: node for node, path in graph.metadata["source_modules"].items()}
        return {by_path[p]: s for p, s in self.spikes.items()}


def _case(name: str, model: nn.Module, shape, timesteps: int, x: torch.Tensor) -> Case:
    logits, spikes = lif_spikes(folded_copy(model), x)
    assert all(s.sum() > 0 for s in spikes.values()), f"{name}: a layer never spikes; the comparison would be empty"
    return Case(name, model, tuple(shape), timesteps, x, logits, spikes)


@pytest.fixture(scope="session")
def digits_case(tmp_path_factory) -> Case:
    from neurodistill.config import resolve
    from neurodistill.data.digits import digits_arrays
    from neurodistill.train import train
    from neurodistill.train.checkpoint import load_checkpoint
    from neurodistill.train.loop import model_from_checkpoint

    T, out = 4, tmp_path_factory.mktemp("consumer_digits")
    train(resolve({"model": "snn_digits", "epochs": 3, "timesteps": T, "out": str(out)}, {}))
    model = model_from_checkpoint(load_checkpoint(out / "last.pt"), out / "last.pt").eval()
    x = digits_arrays()[2][:N_INPUTS].unsqueeze(0).repeat(T, 1, 1, 1, 1)
    return _case("digits", model, (1, 8, 8), T, x)


@pytest.fixture(scope="session")
def residual_case() -> Case:
    T = 3
    x = torch.rand(T, N_INPUTS, *RESIDUAL_SHAPE, generator=torch.Generator().manual_seed(11))
    return _case("residual", residual_net(), RESIDUAL_SHAPE, T, x)


def mismatches(ref: dict[str, torch.Tensor], got: dict[str, torch.Tensor]) -> dict[str, int]:
    """Mismatching spikes per layer (all layers of `ref` must be present in `got`, same shape)."""
    assert set(got) == set(ref), f"layers differ: missing {sorted(set(ref) - set(got))}, extra {sorted(set(got) - set(ref))}"
    out = {}
    for k, r in ref.items():
        g = torch.as_tensor(got[k]).reshape(r.shape).to(r.dtype)
        out[k] = int((g != r).sum())
    return out


def cli_export_and_run(tmp_path, consumer: str, run) -> nir.NIRGraph:
    """Train briefly, `neurodistill export --target nir --for CONSUMER` through the CLI, run the file with
    `run(graph, x) -> (logits, spikes by node)` on 50 test digits, and assert it equals the float simulation
    spike for spike. Returns the file's graph for consumer-specific checks."""
    from click.testing import CliRunner

    from neurodistill.cli import main
    from neurodistill.data.digits import digits_arrays
    from neurodistill.train.checkpoint import load_checkpoint
    from neurodistill.train.loop import model_from_checkpoint

    res = CliRunner().invoke(main, ["train", "--model", "snn_digits", "--epochs", "1", "--limit-train-batches", "2",
                                    "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    ckpt = tmp_path / "run" / "last.pt"
    res = CliRunner().invoke(main, ["export", str(ckpt), "--target", "nir", "--for", consumer,
                                    "--out", str(tmp_path / "nir")])
    assert res.exit_code == 0, res.output
    graph = nir.read(tmp_path / "nir" / "network.nir")
    assert graph.metadata["consumer"] == consumer
    T = int(graph.metadata["timesteps"])
    x = digits_arrays()[2][:50].unsqueeze(0).repeat(T, 1, 1, 1, 1)
    ref_logits, ref = lif_spikes(folded_copy(model_from_checkpoint(load_checkpoint(ckpt), ckpt).eval()), x)
    assert sum(int(s.sum()) for s in ref.values()) > 0
    logits, got = run(graph, x)
    by_node = {n: ref[p] for n, p in graph.metadata["source_modules"].items() if p in ref}
    assert mismatches(by_node, got) == {k: 0 for k in by_node}
    torch.testing.assert_close(logits, ref_logits, rtol=1e-5, atol=1e-5)
    return graph


def refusal(graph: nir.NIRGraph, consumer: str, start: str) -> str:
    """The one-line UnsupportedLayerError `adapt_for(graph, consumer)` raises; it must begin with `start`."""
    from neurodistill.errors import UnsupportedLayerError
    from neurodistill.formats.nir.consumers import adapt_for

    with pytest.raises(UnsupportedLayerError) as e:
        adapt_for(graph, consumer)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(start), msg
    return msg
