"""Run a netx `.net` bundle in Lava (fixed_pt) and record every layer's spikes.

Runs with the Lava interpreter (.venv-lava, Python 3.10); imports nothing from neurodistill.
Files in, files out:
    python run_netx.py NET INPUT.npz OUT.npz
INPUT.npz holds `bias` (N, C, H, W) int: the encoding population's per-sample bias mantissas
(the host's encoding output) and `steps` (steps per sample). Each sample runs `steps` steps in
one compiled network, layer k reset at step k+1 of the sample (netx reset_interval), which is
the schedule neurodistill's simulator uses. OUT.npz gets `spikes_<k>` (N, steps, *shape in
C,H,W order) for every layer k and `v_readout` (N, steps, K).
"""

import sys

import numpy as np


def to_lava(a: np.ndarray) -> np.ndarray:
    return a.transpose(tuple(range(a.ndim))[::-1])  # (C, H, W) -> (W, H, C)


def start_from_rest(neurons, synapses) -> None:
    """Every sample starts on a chip at rest, as the batched simulator assumes: without this a
    layer would carry the previous sample's tail (its state and its synapse's last
    accumulations, delay lines included) into the steps before its staggered reset."""
    for neuron in neurons:
        for var in (neuron.u, neuron.v):
            var.set(np.zeros(var.shape, dtype=np.int32))
    for syn in synapses:
        buf = getattr(syn, "a_buf", None) or getattr(syn, "a_buff", None)
        if buf is not None:
            buf.set(np.zeros(buf.shape, dtype=np.int32))


def main(net_path: str, in_path: str, out_path: str) -> int:
    import lava.proc.conv.utils as conv_utils

    conv_utils.TORCH_IS_AVAILABLE = False  # as lava-dl's own tests: torch in Lava's workers can break
    from lava.lib.dl import netx
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.monitor.process import Monitor

    data = np.load(in_path)
    bias, steps = data["bias"].astype(np.int64), int(data["steps"])
    n = bias.shape[0]
    net = netx.hdf5.Network(net_config=net_path, reset_interval=steps, reset_offset=0)
    layers = list(net.layers)
    monitors = []
    for layer in layers:
        mon = Monitor()
        mon.probe(layer.neuron.s_out, n * steps)
        monitors.append(mon)
    vmon = Monitor()
    vmon.probe(layers[-1].neuron.v, n * steps)
    cfg = Loihi2SimCfg(select_tag="fixed_pt")
    try:
        for i in range(n):
            if i == 0:
                layers[0].neuron.bias_mant.init = to_lava(bias[i])
            else:
                layers[0].neuron.bias_mant.set(to_lava(bias[i]))
                start_from_rest([layer.neuron for layer in layers], [getattr(layer, "synapse", None) for layer in layers])
            net.run(condition=RunSteps(num_steps=steps), run_cfg=cfg)
        out = {}
        for k, (layer, mon) in enumerate(zip(layers, monitors, strict=True)):
            s = mon.get_data()[layer.neuron.name]["s_out"]  # (n*steps, W, H, C) or (n*steps, N)
            s = s.reshape(n, steps, *s.shape[1:])
            out[f"spikes_{k}"] = s.transpose(0, 1, *range(s.ndim - 1, 1, -1)).astype(np.uint8)
        v = vmon.get_data()[layers[-1].neuron.name]["v"]
        out["v_readout"] = v.reshape(n, steps, -1).astype(np.int64)
    finally:
        net.stop()
    np.savez(out_path, **out)
    print(f"ran {n} samples x {steps} steps in Lava (fixed_pt), {len(layers)} layers")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
