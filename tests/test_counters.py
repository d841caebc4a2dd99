"""Counting by the conventions of docs/simulate.md#counting-conventions, on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurodistill.core.counters import count, fanout_map
from neurodistill.core.graph import INPUT, DeployGraph, Neuron, Population, Synapse
from neurodistill.export.resources import connections


def test_linear_4_to_3_with_two_spikes_is_six_events():
    syn = Synapse("fc", "dense", "a", "b", np.ones((3, 4)), (4,), (3,))
    spikes_in = torch.tensor([1.0, 0.0, 1.0, 0.0])
    assert float((spikes_in * fanout_map(syn)).sum()) == 6


def test_conv_corner_spike_is_four_events():
    """3x3 conv, 1 -> 1 channel, padding 1, 4x4 input, one spike at a corner: 4 (naive: 9)."""
    syn = Synapse("c", "conv", "a", "b", np.ones((1, 1, 3, 3)), (1, 4, 4), (1, 4, 4), (1, 1), (1, 1))
    s = torch.zeros(1, 4, 4)
    s[0, 0, 0] = 1
    assert float((s * fanout_map(syn)).sum()) == 4


@pytest.mark.parametrize("shape,out,k,stride,pad,groups", [
    ((2, 7, 10), (3, 7, 4), 3, (1, 2), (1, 0), 1),
    ((4, 8, 8), (4, 4, 4), 3, (2, 2), (1, 1), 4),
    ((2, 4, 4), (5, 2, 2), 3, (2, 2), (1, 1), 1),
])
def test_fanout_sums_to_the_padding_aware_connections(shape, out, k, stride, pad, groups):
    w = np.ones((out[0], shape[0] // groups, k, k))
    syn = Synapse("c", "conv", "a", "b", w, shape, out, stride, pad, groups)
    assert float(fanout_map(syn).sum()) == connections(syn)  # two independent computations


def _tiny_graph() -> DeployGraph:
    """input -> (host dense 2->3) -> A (3 LIF) -> dense 3->2 -> readout."""
    a = Population("A", (3,), Neuron("lif"), depth=0)
    r = Population("readout", (2,), Neuron("readout"), depth=1)
    enc = Synapse("enc", "dense", INPUT, "A", np.ones((3, 2)), (2,), (3,), dense_ops=6)
    fc = Synapse("fc", "dense", "A", "readout", np.ones((2, 3)), (3,), (2,), dense_ops=6)
    return DeployGraph((2,), [a, r], [enc, fc], {"A": np.zeros(3), "readout": np.zeros(2)}, timesteps=2)


def test_count_by_hand():
    g = _tiny_graph()
    # chip steps = T + latency = 3; A's window is steps 0..1 (depth 0); step 2 is pipeline
    s = torch.zeros(3, 2, 3, dtype=torch.bool)  # (steps, B=2, 3 neurons)
    s[0, 0, 0] = s[0, 0, 1] = s[1, 1, 2] = True  # 3 spikes in the window
    s[2, 0, 0] = True  # pipeline
    c = count(g, {"A": s}, timesteps=2)
    a, r = c["layers"]
    assert (a["spikes"], a["spikes_per_step"], a["pipeline_spikes"]) == (3, [2.0, 1.0], 1)
    assert a["firing_rate"] == pytest.approx(3 / (3 * 2 * 2))
    assert a["macs"] == 6 * 2 * 2  # encoding dense_ops x T x samples
    assert r["synaptic_events"] == 3 * 2  # 3 input spikes x fan-out 2
    assert r["acs"] == pytest.approx((3 / 12) * 2 * 6 * 2)  # fr_in x T x dense_ops x samples
    assert a["neuron_updates"] == 3 * 2 * 2 and r["firing_rate"] is None
    assert c["firing_rate_neuron_weighted"] == c["firing_rate_mean_of_layers"] == pytest.approx(0.25)
    once = count(g, {"A": s}, timesteps=2, encoding_once=True)
    assert once["layers"][0]["macs"] == 6 * 2 and "once per inference" in once["conventions"]["macs"]
    assert c["totals"]["ops"] == c["totals"]["acs"] + c["totals"]["macs"]
