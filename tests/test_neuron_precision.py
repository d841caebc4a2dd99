"""Neurons under mixed precision, and the kernel choice for both LIF and IF neurons."""

from __future__ import annotations

import os

import pytest
import torch

from neurodistill.models import create_model
from neurodistill.models.neurons import NeuronConfig, make_neuron, select_backend


def _neurons(model):
    from spikingjelly.activation_based.neuron import BaseNode

    return [m for m in model.modules() if isinstance(m, BaseNode)]


@pytest.mark.parametrize("kind", ["lif", "if"])
def test_neurons_keep_float32_state_under_autocast(kind):
    # On CUDA, spikingjelly runs its fused kernels only for float32 state (an explicit backend
    # raises otherwise); CPU autocast to bfloat16 hands the neurons half-precision input the same way.
    from spikingjelly.activation_based import functional

    torch.manual_seed(0)
    model = create_model("snn_digits", 10, 1, neuron=NeuronConfig(kind=kind))
    x = torch.rand(3, 4, 1, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out.shape == (3, 4, 10)
    nodes = _neurons(model)
    assert nodes and all(n.v.dtype == torch.float32 for n in nodes)
    functional.reset_net(model)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        spikes = nodes[0](torch.full((2, 1, 5), 0.7, dtype=torch.bfloat16))
    assert spikes.dtype == torch.float32 and set(spikes.unique().tolist()) <= {0.0, 1.0}


def test_float64_input_is_left_alone():
    node = make_neuron(NeuronConfig(kind="if", v_threshold=1.0))
    x = torch.full((3, 1, 2), 0.5, dtype=torch.float64)
    s = node(x)
    assert s.dtype == torch.float64 and node.v.dtype == torch.float64
    assert s[:, 0, 0].tolist() == [0.0, 1.0, 0.0]  # IF: v = 0.5, 1.0 -> spike, reset to 0, 0.5


def test_select_backend_reaches_lif_and_if_kernels():
    import spikingjelly._ops.if_ as if_ops
    import spikingjelly._ops.lif as lif_ops

    saved = {k: os.environ.get(k) for k in ("SJ_LIF_CUDA_IMPLEMENTATION", "SJ_IF_CUDA_IMPLEMENTATION")}
    try:
        select_backend("triton")
        assert lif_ops._selection._requested == if_ops._selection._requested == "triton"
        assert os.environ["SJ_IF_CUDA_IMPLEMENTATION"] == os.environ["SJ_LIF_CUDA_IMPLEMENTATION"] == "triton"
        select_backend("cupy")  # the 0.0.0.0.14 name of spikingjelly's CUDA kernels
        assert if_ops._selection._requested == "cuda"
    finally:
        select_backend("auto")
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
