"""Run a netx `.net` file (e.g. one written by lava-dl) in Lava (fixed_pt) and record every layer.

Runs with the Lava interpreter (.venv-lava, Python 3.10); imports nothing from neurodistill
(only `to_lava` from its sibling run_netx.py). Files in, files out:
    python run_netx_spikes.py NET INPUT.npz OUT.npz
INPUT.npz holds `steps` (steps per sample) and one of
  `spikes` (N, steps, *input shape in C,H,W order) 0/1: binary input spikes, sent by a
      `lava.proc.io.source.RingBuffer` into `net.inp` (a net whose input layer has no neuron,
      or that has no input layer: its first Dense/Conv reads them);
  `bias` (N, *input shape in C,H,W order) int: per-sample bias mantissas of the input layer's
      neuron (`net.in_layer.neuron.bias_mant`), for a net whose input layer has a neuron: netx
      leaves that block's `inp` unconnected, so input goes through the neuron, as lava-dl's
      own tiny.net test feeds it.
OUT.npz gets `spikes_<k>` (N, steps, *shape in C,H,W order) for every layer k of `net.layers`
and `v_last` (N, steps, *shape in C,H,W order), the last layer's voltage after each step.

Schedule: the network is `netx.hdf5.Network(net_config=NET)` with netx's neuron and synapse
models; it is compiled once and run for N*steps steps, and every sample starts from rest:
u and v are zeroed at the first step of each sample (netx's LIFReset with one common reset
phase instead of netx's staggered one) and the Dense/Conv buffered accumulations are zeroed
after the last step of each sample (`lava.proc.io.reset.Reset`). Within a sample nothing is
reset, as netx without `reset_interval`. This is the same as run_netx.py's `start_from_rest`,
but without Var.set/get, which Lava 0.10 moves one element per message (recording PilotNet's
150 k neurons through Monitors took ~3 s per step). Spikes and the voltage are written to
.npy memory maps by small recorder processes instead.
"""

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_netx import to_lava  # noqa: E402


def from_lava(x: np.ndarray, n: int, steps: int) -> np.ndarray:
    """(n*steps, W, H, C) or (n*steps, N) -> (n, steps, C, H, W) or (n, steps, N)."""
    x = x.reshape(n, steps, *x.shape[1:])
    return x.transpose(0, 1, *range(x.ndim - 1, 1, -1))


def processes():
    """Recorder, VarRecorder, BiasWriter processes and their fixed_pt Python models."""
    procs = process_classes()
    return procs, process_models(*procs)


def process_classes():
    """The Recorder, VarRecorder and BiasWriter processes."""
    from lava.magma.core.process.ports.ports import InPort, RefPort
    from lava.magma.core.process.process import AbstractProcess

    class Recorder(AbstractProcess):
        """Writes what arrives at `a_in` at step t to row t-1 of an .npy memory map."""

        def __init__(self, shape, path):
            super().__init__(shape=shape, path=path)
            self.a_in = InPort(shape=shape)

    class VarRecorder(AbstractProcess):
        """Writes a Var's value after step t (post management) to row t-1 of an .npy memory map."""

        def __init__(self, var, path):
            super().__init__(shape=var.shape, path=path)
            self.ref = RefPort(var.shape)
            self.ref.connect_var(var)

    class BiasWriter(AbstractProcess):
        """After the last step of sample i, writes sample i+1's values (rows of an .npy) to a Var."""

        def __init__(self, var, path, steps):
            super().__init__(shape=var.shape, path=path, steps=steps)
            self.ref = RefPort(var.shape)
            self.ref.connect_var(var)

    return Recorder, VarRecorder, BiasWriter


def process_models(Recorder, VarRecorder, BiasWriter):
    """The fixed_pt Python models of `process_classes()`, by process class."""
    from lava.magma.core.decorator import implements, requires, tag
    from lava.magma.core.model.py.model import PyLoihiProcessModel
    from lava.magma.core.model.py.ports import PyInPort, PyRefPort
    from lava.magma.core.model.py.type import LavaPyType
    from lava.magma.core.resources import CPU
    from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

    @implements(proc=Recorder, protocol=LoihiProtocol)
    @requires(CPU)
    @tag("fixed_pt")
    class PyRecorder(PyLoihiProcessModel):
        a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)

        def __init__(self, proc_params):
            super().__init__(proc_params)
            self.out = np.load(proc_params["path"], mmap_mode="r+")

        def run_spk(self):
            self.out[self.time_step - 1] = self.a_in.recv()

    @implements(proc=VarRecorder, protocol=LoihiProtocol)
    @requires(CPU)
    @tag("fixed_pt")
    class PyVarRecorder(PyLoihiProcessModel):
        ref: PyRefPort = LavaPyType(PyRefPort.VEC_DENSE, np.int32, precision=24)

        def __init__(self, proc_params):
            super().__init__(proc_params)
            self.out = np.load(proc_params["path"], mmap_mode="r+")

        def post_guard(self):
            return True

        def run_post_mgmt(self):
            self.out[self.time_step - 1] = self.ref.read()

    @implements(proc=BiasWriter, protocol=LoihiProtocol)
    @requires(CPU)
    @tag("fixed_pt")
    class PyBiasWriter(PyLoihiProcessModel):
        ref: PyRefPort = LavaPyType(PyRefPort.VEC_DENSE, np.int32, precision=16)

        def __init__(self, proc_params):
            super().__init__(proc_params)
            self.values = np.load(proc_params["path"], mmap_mode="r")
            self.steps = proc_params["steps"]

        def post_guard(self):
            return self.time_step % self.steps == 0 and self.time_step // self.steps < len(self.values)

        def run_post_mgmt(self):
            self.ref.write(np.asarray(self.values[self.time_step // self.steps], np.int32))
            self.ref.wait()

    return {Recorder: PyRecorder, VarRecorder: PyVarRecorder, BiasWriter: PyBiasWriter}


def model_map(procs: list, models: dict) -> dict:
    """Lava's compiler looks processes up in `exception_proc_model_map` by instance (and cannot
    discover models of classes defined in a script), so map each instance to its model."""
    return {p: models[type(p)] for p in procs}


def run(net_path: str, in_path: str, out_path: str, tmp: Path) -> int:
    import lava.proc.conv.utils as conv_utils

    conv_utils.TORCH_IS_AVAILABLE = False  # as lava-dl's own tests: torch in Lava's workers can break
    from lava.lib.dl import netx
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.reset import Reset
    from lava.proc.io.source import RingBuffer

    t0 = time.time()
    (Recorder, VarRecorder, BiasWriter), models = processes()
    data = np.load(in_path)
    steps = int(data["steps"])
    # one reset phase for all layers (set below); netx's own would stagger it by layer
    net = netx.hdf5.Network(net_config=net_path, reset_interval=steps)
    layers = list(net.layers)
    for layer in layers:
        layer.neuron.proc_params.overwrite("reset_offset", 1 % steps)  # u = v = 0 at each sample's first step
        syn = getattr(layer, "synapse", None)
        buf = getattr(syn, "a_buf", None) or getattr(syn, "a_buff", None)
        if buf is not None:  # the accumulation of a sample's last step must not reach the next sample
            Reset(interval=steps, offset=steps - 1).connect_var(buf)
    custom = []
    if "spikes" in data:
        spikes = data["spikes"].astype(np.int32)
        n = spikes.shape[0]
        if spikes.shape[1] != steps:
            raise SystemExit(f"input spikes have {spikes.shape[1]} steps per sample, steps is {steps}")
        flat = spikes.reshape(n * steps, *spikes.shape[2:])
        src = RingBuffer(data=to_lava(flat))  # (W, H, C, n*steps): column time_step-1 is sent
        if src.s_out.shape != net.inp.shape:
            raise SystemExit(f"input spikes {src.s_out.shape} (Lava order) do not fit net.inp {net.inp.shape}")
        src.s_out.connect(net.inp)
        mode = "spikes"
    else:
        if type(layers[0]).__name__ != "Input":
            raise SystemExit(f"{net_path}: bias input needs an input layer with a neuron; this net reads spikes")
        bias = np.stack([to_lava(b) for b in data["bias"].astype(np.int32)])
        n = bias.shape[0]
        layers[0].neuron.bias_mant.init = bias[0]
        np.save(tmp / "bias.npy", bias)
        custom.append(BiasWriter(layers[0].neuron.bias_mant, str(tmp / "bias.npy"), steps))
        mode = "bias"
    total = n * steps
    for k, layer in enumerate(layers):
        shape = layer.neuron.s_out.shape
        np.lib.format.open_memmap(tmp / f"s{k}.npy", "w+", np.uint8, (total, *shape)).flush()
        custom.append(Recorder(shape, str(tmp / f"s{k}.npy")))
        layer.neuron.s_out.connect(custom[-1].a_in)
    vshape = layers[-1].neuron.v.shape
    np.lib.format.open_memmap(tmp / "v.npy", "w+", np.int32, (total, *vshape)).flush()
    custom.append(VarRecorder(layers[-1].neuron.v, str(tmp / "v.npy")))
    cfg = Loihi2SimCfg(select_tag="fixed_pt", exception_proc_model_map=model_map(custom, models))
    t1 = time.time()
    try:
        net.run(condition=RunSteps(num_steps=total), run_cfg=cfg)
    finally:
        net.stop()
    t2 = time.time()
    out = {f"spikes_{k}": from_lava(np.load(tmp / f"s{k}.npy"), n, steps) for k in range(len(layers))}
    out["v_last"] = from_lava(np.load(tmp / "v.npy"), n, steps).astype(np.int64)
    np.savez(out_path, **out)
    print(f"ran {n} samples x {steps} steps in Lava (fixed_pt), {len(layers)} layers, input by {mode}: "
          f"build {t1 - t0:.1f} s, run {t2 - t1:.1f} s")
    return 0


def main(net_path: str, in_path: str, out_path: str) -> int:
    with tempfile.TemporaryDirectory(prefix="run_netx_spikes-") as tmp:  # the recorders' memory maps
        return run(net_path, in_path, out_path, Path(tmp))


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
