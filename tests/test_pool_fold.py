"""Pooling folded into the next synapse layer, beyond the dividing average pool: an average pool
whose input it does not divide, and the sum pool (torch's LPPool2d with p = 1, sinabs' SumPool2d).
Truth: the model's own forward in float64, and Lava for the deployed bundle."""

from __future__ import annotations

import pytest
import torch
from sinabs.layers import SumPool2d
from spikingjelly.activation_based import functional, layer, neuron
from torch import nn

from neurodistill.core.capture import capture
from neurodistill.core.float_graph import run_float
from neurodistill.core.fold import pooled_conv_is_exact
from neurodistill.errors import UnsupportedLayerError
from neurodistill.models.base import Net


class _MultiStep:
    """A torch pool run on (T, B, C, H, W) as spikingjelly's multi-step layers run theirs; still an
    instance of the pool's own class, which is what capture reads."""

    def forward(self, x):
        return super().forward(x.flatten(0, 1)).unflatten(0, x.shape[:2])


class MSumPool2d(_MultiStep, SumPool2d):
    pass


class MLPPool2d(_MultiStep, nn.LPPool2d):
    pass


class MAvgPool2d(_MultiStep, nn.AvgPool2d):
    pass


def _net(pool: nn.Module, hw: int, conv_padding: int, head: str = "conv") -> Net:
    c = 3
    pooled = (hw - pool.kernel_size) // pool.kernel_size + 1 if isinstance(pool.kernel_size, int) else None
    after = [layer.Conv2d(c, 4, 3, padding=conv_padding), neuron.IFNode(v_threshold=0.5), layer.Flatten(1)]
    n = ((pooled + 2 * conv_padding - 3) + 1) ** 2 * 4
    if head == "linear":
        after, n = [layer.Flatten(1)], pooled * pooled * c
    body = nn.Sequential(layer.Conv2d(1, c, 3, padding=1), neuron.IFNode(v_threshold=2.0), pool,
                         *after, layer.Linear(n, 5))
    functional.set_step_mode(body, "m")
    with torch.no_grad():
        body[0].weight.abs_().mul_(2)  # every population spikes, some neurons not always: the comparison bites
        body[0].bias.zero_()
        if isinstance(body[3], nn.Conv2d):
            body[3].weight.mul_(4)
            body[3].bias.uniform_(0.0, 0.5)
    return Net(body, spiking=True).eval()


@pytest.mark.parametrize("pool,hw,pad,head", [
    (MAvgPool2d(2), 7, 0, "conv"),       # 7 = 3*2 + 1: the pool drops the last row and column
    (MAvgPool2d(3), 11, 0, "conv"),
    (MSumPool2d(2), 8, 1, "conv"),
    (MSumPool2d(2), 7, 0, "conv"),
    (MSumPool2d(2), 7, 0, "linear"),
    (MLPPool2d(1, 2), 8, 0, "conv"),
    (MAvgPool2d(2, divisor_override=3), 8, 1, "conv"),
])
def test_folded_pools_give_the_models_own_outputs(pool, hw, pad, head):
    torch.manual_seed(0)
    model = _net(pool, hw, pad, head)
    graph = capture(model, (1, hw, hw), timesteps=3)
    x = torch.rand(3, 4, 1, hw, hw, dtype=torch.float64) * 2
    ref = model.double()(x)
    run = run_float(graph, x, record=True)
    assert ((run["logits"] - ref).abs().max() / ref.abs().max()).item() < 1e-12
    assert all(0 < s.mean() < 0.9 for s in run["spikes"].values())  # every population spikes, not saturated


def test_a_padded_conv_that_would_read_the_dropped_rows_is_refused(monkeypatch):
    """Pooled 4x4 (from 9x9), conv 3x3 padding 1: its last window covers pooled row 4, zero padding,
    where the folded conv would read input row 8, which the pool dropped. Folded anyway, it is wrong."""
    from neurodistill.core import synapse_terms

    torch.manual_seed(0)
    model = _net(MAvgPool2d(2), 9, 1)
    with pytest.raises(UnsupportedLayerError, match=r"drops the last rows/columns of its 9x9 input"):
        capture(model, (1, 9, 9), timesteps=3)
    monkeypatch.setattr(synapse_terms, "pooled_conv_is_exact", lambda *a: True)
    graph = capture(model, (1, 9, 9), timesteps=3)
    x = torch.rand(3, 4, 1, 9, 9, dtype=torch.float64) * 2
    assert not torch.allclose(run_float(graph, x)["logits"], model.double()(x), rtol=1e-6)


def test_the_exactness_rule_by_hand():
    # pooled 3 (from 7, k 2), conv 3x3: pad 0 ends at 3 <= 3 (exact); pad 1 ends at 4 > 3 (reads a dropped row)
    assert pooled_conv_is_exact((7, 7), 2, (3, 3), (1, 1), (0, 0))
    assert not pooled_conv_is_exact((7, 7), 2, (3, 3), (1, 1), (1, 1))
    # stride 2 skips the far edge: pooled 4 (from 9), pad 1, kernel 3 -> windows start -1, 1: the last ends at 4 <= 4
    assert pooled_conv_is_exact((9, 9), 2, (3, 3), (2, 2), (1, 1))
    assert pooled_conv_is_exact((8, 8), 2, (3, 3), (1, 1), (5, 5))  # divisible: any padding


def test_a_non_linear_lp_pool_is_refused_by_name():
    torch.manual_seed(0)
    model = _net(MLPPool2d(2, 2), 8, 0)
    with pytest.raises(UnsupportedLayerError, match=r"LPPool2d with p = 2 or ceil_mode is not a linear map"):
        capture(model, (1, 8, 8))


@pytest.mark.lava
@pytest.mark.parametrize("pool,hw", [(MSumPool2d(2), 7), (MAvgPool2d(3), 11)])
def test_folded_pools_over_an_undivided_input_equal_lava(pool, hw, lava_py, tmp_path):
    from neurodistill.core.fxp import run_fxp
    from neurodistill.core.loihi2 import encoding_bias, encoding_current
    from neurodistill.export.bundle import export_module_loihi2
    from neurodistill.formats.deploy_h5 import read_graph
    from neurodistill.sim.run import _lava_spikes

    torch.manual_seed(0)
    model, T = _net(pool, hw, 0), 4
    x = torch.rand(16, 1, hw, hw) * 2
    export_module_loihi2(model, (1, hw, hw), x, torch.randint(0, 5, (16,)), tmp_path / "b", timesteps=T)
    graph = read_graph(tmp_path / "b" / "deploy.h5")
    bias, _ = encoding_bias(graph, encoding_current(graph, x[:6].numpy()))
    ours = run_fxp(graph, torch.as_tensor(bias), T)
    lava = _lava_spikes(tmp_path / "b", graph, bias, T + graph.latency_steps, lava_py)
    for name, s in lava["spikes"].items():
        assert torch.equal(s, ours["spikes"][name]), (name, int((s != ours["spikes"][name]).sum()))
    assert torch.equal(lava["v_readout_steps"].to(ours["v_readout_steps"].dtype), ours["v_readout_steps"])
    assert all(s.any() for s in ours["spikes"].values())
