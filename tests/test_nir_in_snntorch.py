"""NIR in from snnTorch 1.0's own exporter (`snntorch.export_nir.export_to_nir`, dt = 1e-4 hard-coded).

snnTorch writes Leaky(beta) as LIF(tau = dt/(1 - beta), r = tau/dt, v_reset = 0) whatever its
reset mechanism; `reset_mechanism="zero"` is the Leaky that computes what the file says.
Its exporter needs per-neuron beta and threshold tensors (scalars fail its shape check) and
`ignore_dims=[0]` (the batch axis), as below.
"""

from __future__ import annotations

import torch

from .conftest import lava_python
from .test_nir_in_common import (
    T,
    check_against_framework,
    deploy_and_compare,
    digits,
    spiking_weights,
)


def leaky_net(beta=0.8, output_neuron: bool = False):
    import snntorch as snn

    layers = [torch.nn.Conv2d(1, 4, 3, padding=1),
              snn.Leaky(beta=torch.full((4, 8, 8), beta) if isinstance(beta, float) else beta,
                        threshold=torch.ones(4, 8, 8), init_hidden=True, reset_mechanism="zero"),
              torch.nn.Flatten(), torch.nn.Linear(256, 10)]
    if output_neuron:
        layers.append(snn.Leaky(beta=torch.full((10,), 0.9), threshold=torch.ones(10), init_hidden=True,
                                reset_mechanism="zero", output=True))
    net = torch.nn.Sequential(*layers)
    spiking_weights(net[0], net[3], seed=2, gain=4.0)
    return net.eval()


def write(net, path):
    import nir
    from snntorch.export_nir import export_to_nir

    nir.write(path, export_to_nir(net, torch.zeros(1, 1, 8, 8), ignore_dims=[0]))
    return path


def test_snntorch_export_deploys_as_snntorch_runs_it(tmp_path):
    from snntorch import utils

    net = leaky_net()
    path = write(net, tmp_path / "snntorch.nir")
    x, y = digits()
    utils.reset(net)
    spikes, outs = [], []
    h = net[1].register_forward_hook(lambda _m, _i, out: spikes.append(out.detach()))
    with torch.no_grad():
        for _ in range(T):
            outs.append(net(x))
    h.remove()
    spikes, outs = torch.stack(spikes), torch.stack(outs)
    check_against_framework(path, "snntorch", x, spikes, outs)
    acc = float((outs.mean(0).argmax(-1) == y).float().mean())
    deploy_and_compare(path, "snntorch", acc, tmp_path, lava_python())
