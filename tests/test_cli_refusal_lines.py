"""Refusals through the CLI say one thing: the `error:` line, with no progress line before it,
and in the terms of what the user gave (NIR node names and types for a NIR file)."""

from __future__ import annotations

import nir
import numpy as np
import pytest
from click.testing import CliRunner

from neurodistill.cli import main


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    res = invoke("train", "--model", "snn_digits", "--timesteps", 2, "--epochs", 1, "--limit-train-batches", 2,
                 "--out", out)
    assert res.exit_code == 0, res.output
    return out / "best.pt"


def test_a_for_refusal_is_the_only_line(student, tmp_path):
    res = invoke("export", student, "--target", "nir", "--for", "rockpool", "--out", tmp_path / "nir")
    assert res.exit_code == 2, res.output
    assert res.output.startswith("error: --for rockpool: ") and res.output.count("\n") == 1, res.output
    assert not (tmp_path / "nir").exists()
    ok = invoke("export", student, "--target", "nir", "--for", "snntorch", "--out", tmp_path / "ok")
    assert ok.exit_code == 0 and "float NIR graph for snntorch" in ok.output, ok.output


def _pool_before_neuron(name: str) -> nir.NIRGraph:
    """Conv2d -> AvgPool2d -> LIF: the pooling sits between a synapse and its neuron."""
    shape = (4, 4, 4)
    lif = {k: np.full(shape, v) for k, v in (("tau", 2.0), ("r", 1.0), ("v_leak", 0.0), ("v_threshold", 1.0),
                                             ("v_reset", 0.0))}
    conv = nir.Conv2d(input_shape=(8, 8), weight=np.ones((4, 1, 3, 3)), stride=1, padding=1, dilation=1, groups=1,
                      bias=np.zeros(4))
    pool = nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0]))
    flat = nir.Flatten(start_dim=0, end_dim=-1, input_type={"input": np.array(shape)})
    return nir.NIRGraph(nodes={"input": nir.Input(np.array([1, 8, 8])), "conv": conv, name: pool, "lif": nir.LIF(**lif),
                               "flat": flat, "fc": nir.Affine(np.ones((10, 64)), np.zeros(10)),
                               "output": nir.Output(np.array([10]))},
                        edges=[("input", "conv"), ("conv", name), (name, "lif"), ("lif", "flat"), ("flat", "fc"),
                               ("fc", "output")])


@pytest.mark.parametrize("name", ["3", "pool.avg"])
def test_a_nir_pooling_refusal_names_the_nir_node_and_nir_types(name, tmp_path):
    nir.write(tmp_path / "g.nir", _pool_before_neuron(name))
    res = invoke("export", tmp_path / "g.nir", "--from", "spikingjelly", "--timesteps", 4, "--out", tmp_path / "b")
    assert res.exit_code == 2, res.output
    assert res.output.startswith("error: ") and res.output.count("\n") == 1, res.output
    assert f"NIR node {name!r} (AvgPool2d): AvgPool2d between a synapse layer and its neuron" in res.output
    assert "allowed NIR nodes: Input, Output, Conv2d, Affine" in res.output
    for internal in ("graph_module", "BatchNorm", "spikingjelly LIFNode", "Dropout"):
        assert internal not in res.output, res.output
    assert not (tmp_path / "b").exists()
