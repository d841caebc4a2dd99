"""NIR in from sinabs 2.0.3's own exporter (`sinabs.nir.to_nir`, time in steps).

sinabs writes LIF(tau_mem) as LIF(tau = tau_mem, r = 1) and computes `v = a v + (1 - a) I`,
`a = exp(-1/tau_mem)` (its default `norm_input=True`); its exporter does not record the reset
or the spike function, so the network here uses sinabs' SingleSpike and MembraneReset, the
neuron the file describes (NIR: one spike, reset to v_reset = 0). Its exporter needs tau_mem and
the threshold as per-neuron tensors (a scalar next to a tensor fails NIR's shape check).
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


def lif_net(batch_size: int, tau=5.0):
    import sinabs.activation as sa
    import sinabs.layers as sl

    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1),
        sl.LIFSqueeze(tau_mem=torch.full((4, 8, 8), tau) if isinstance(tau, float) else tau, batch_size=batch_size,
                      spike_fn=sa.SingleSpike, reset_fn=sa.MembraneReset(), spike_threshold=torch.ones(4, 8, 8)),
        torch.nn.Flatten(), torch.nn.Linear(256, 10)).eval()


def write(net, path):
    import nir
    from sinabs.nir import to_nir

    g = to_nir(net, torch.zeros(1, 1, 8, 8))
    g.infer_types()  # sinabs leaves Conv2d's input_shape None, which nir.write cannot store
    nir.write(path, g)
    return path


def run_sinabs(sim, src, weighted, x):
    """sinabs' own run of `src`'s weights in `sim` (built for len(x) samples: its state buffers have
    the batch size in their shape): the first neuron layer's spikes and the outputs, (T, N, ...)."""
    for i in weighted:
        sim[i].load_state_dict(src[i].state_dict())
    # sinabs' Squeeze layers take (batch*time, ...) with time fastest
    xs = x.unsqueeze(1).expand(len(x), T, *x.shape[1:]).reshape(len(x) * T, *x.shape[1:])
    seen = []
    h = sim[1].register_forward_hook(lambda _m, _i, out: seen.append(out.detach()))
    with torch.no_grad():
        outs = sim(xs)
    h.remove()
    to_tb = lambda a: a.reshape(len(x), T, *a.shape[1:]).transpose(0, 1)  # noqa: E731
    return to_tb(seen[0]), to_tb(outs)


def test_sinabs_export_deploys_as_sinabs_runs_it(tmp_path):
    net = lif_net(1)
    spiking_weights(net[0], net[3], seed=4)
    with torch.no_grad():
        net[0].weight.mul_(5.0)  # sinabs scales the input by 1 - exp(-1/5)
    path = write(net, tmp_path / "sinabs.nir")
    x, y = digits()
    spikes, outs = run_sinabs(lif_net(len(x)), net, (0, 3), x)
    check_against_framework(path, "sinabs", x, spikes, outs)
    acc = float((outs.mean(0).argmax(-1) == y).float().mean())
    deploy_and_compare(path, "sinabs", acc, tmp_path, lava_python())


def test_a_sinabs_sum_pool_deploys_as_sinabs_runs_it(tmp_path):
    """nir.SumPool2d (sinabs' SumPool2d, torch's LPPool2d with p = 1) before the classifier: read as the
    same sum pool, which the deployment folds into the classifier's weights."""
    import sinabs.activation as sa
    import sinabs.layers as sl

    def net(batch_size: int):
        return torch.nn.Sequential(
            torch.nn.Conv2d(1, 4, 3, padding=1),
            sl.IAFSqueeze(batch_size=batch_size, spike_fn=sa.SingleSpike, reset_fn=sa.MembraneReset(),
                          spike_threshold=torch.ones(4, 8, 8)),
            sl.SumPool2d(2), torch.nn.Flatten(), torch.nn.Linear(64, 10)).eval()

    src = net(1)
    spiking_weights(src[0], src[4], seed=6)
    path = write(src, tmp_path / "sinabs.nir")
    x, y = digits()
    spikes, outs = run_sinabs(net(len(x)), src, (0, 4), x)
    check_against_framework(path, "sinabs", x, spikes, outs, neuron="IFNode")
    acc = float((outs.mean(0).argmax(-1) == y).float().mean())
    deploy_and_compare(path, "sinabs", acc, tmp_path, None)
