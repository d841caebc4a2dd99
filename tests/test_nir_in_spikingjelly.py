"""NIR in from spikingjelly 2.0's own exporter (`nir_exchange.export_to_nir`, dt = 1e-4)."""

from __future__ import annotations

import pytest
import torch

from .conftest import lava_python
from .test_nir_in_common import (
    T,
    check_against_framework,
    deploy_and_compare,
    digits,
    spiking_weights,
)


def _net(decay_input: bool):
    from spikingjelly.activation_based import layer, neuron

    net = torch.nn.Sequential(
        layer.Conv2d(1, 4, 3, padding=1, step_mode="m"),
        neuron.LIFNode(tau=3.0, decay_input=decay_input, v_threshold=1.0, v_reset=0.0, step_mode="m"),
        layer.Flatten(step_mode="m"), layer.Linear(256, 10, step_mode="m"))
    spiking_weights(net[0], net[3], seed=1)
    if decay_input:  # the input is divided by tau: larger weights for the same firing
        with torch.no_grad():
            net[0].weight.mul_(3.0)
    return net.eval()


@pytest.mark.parametrize("decay_input", [True, False])
def test_spikingjelly_export_deploys_as_spikingjelly_runs_it(decay_input, tmp_path):
    from spikingjelly.activation_based import functional
    from spikingjelly.activation_based.nir_exchange import export_to_nir

    net = _net(decay_input)
    path = tmp_path / "sj.nir"
    export_to_nir(net, torch.zeros(T, 1, 1, 8, 8), save_path=path)
    x, y = digits()
    seen = []
    h = net[1].register_forward_hook(lambda _m, _i, out: seen.append(out.detach()))
    functional.reset_net(net)
    with torch.no_grad():
        out = net(x.unsqueeze(0).expand(T, *x.shape).contiguous())
    h.remove()
    check_against_framework(path, "spikingjelly", x, seen[0], out)
    acc = float((out.mean(0).argmax(-1) == y).float().mean())
    # Lava once (decay_input=True); the other form differs only in the float reading
    deploy_and_compare(path, "spikingjelly", acc, tmp_path, lava_python() if decay_input else None)
