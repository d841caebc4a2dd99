"""NIR in from Norse 1.1's own exporter (`norse.torch.utils.export_nir.to_nir`, dt = 1e-3).

Norse writes LIFBoxCell as LIF(tau = dt/tau_mem_inv, r = 1): dt times the time constant its
own Euler step uses (norse/norse#411), read as Norse computes it. Its exporter has no Flatten
(the node is written as None and the file cannot be saved), so the classifier here is a
Conv2d over the whole 8x8 map; it needs per-neuron parameter tensors, an unbatched sample and
`infer_types()` before `nir.write` (scalars and the batch axis make writing fail).
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


def params(tau_mem_inv: float = 200.0):
    from norse.torch.functional.lif_box import LIFBoxParameters

    return LIFBoxParameters(tau_mem_inv=torch.full((4, 8, 8), tau_mem_inv), v_th=torch.ones(4, 8, 8),
                            v_leak=torch.zeros(4, 8, 8), v_reset=torch.zeros(4, 8, 8))


def write(net, path):
    import nir
    from norse.torch.utils.export_nir import to_nir

    g = to_nir(net, torch.zeros(1, 8, 8))
    g.infer_types()
    nir.write(path, g)
    return path


def norse_run(net, x, T, layer=3):
    """Norse's own run of a SequentialState: spikes of its module `layer` (T, B, ...) and the outputs (T, B, K)."""
    spikes, outs, state = [], [], None
    h = net[layer].register_forward_hook(lambda _m, _i, out: spikes.append(out[0].detach()))
    with torch.no_grad():
        for _ in range(T):
            out, state = net(x, state)
            outs.append(out.reshape(len(x), -1))
    h.remove()
    return torch.stack(spikes), torch.stack(outs)


def test_norse_export_deploys_as_norse_runs_it(tmp_path):
    import norse.torch as norse

    net = norse.SequentialState(torch.nn.Conv2d(1, 4, 3, padding=1), norse.LIFBoxCell(params()),
                                torch.nn.Conv2d(4, 10, 8)).eval()
    spiking_weights(net[0], net[2], seed=3)
    with torch.no_grad():
        net[0].weight.mul_(5.0)  # Norse's Euler step divides the input by tau/dt = 5
    path = write(net, tmp_path / "norse.nir")
    x, y = digits()
    spikes, outs = norse_run(net, x, T, layer=1)
    check_against_framework(path, "norse", x, spikes, outs)
    acc = float((outs.mean(0).argmax(-1) == y).float().mean())
    deploy_and_compare(path, "norse", acc, tmp_path, lava_python())
