"""`neurodistill simulate NET.net --inputs FILE`: run a netx `.net` file written by lava-dl (or anyone).

The file is read by `formats.netx.reader.read_netx` and run as `netx.hdf5.Network(net_config=NET)` runs
it: from rest, no staggered reset, input as binary spikes into the first synapse layer (a file
whose input layer has no neuron) or as per-sample bias mantissas of the input layer's neuron.
Backends `fxp` (batched, `fxp_spikes.run_fxp_spike_input`) and `lava` (lava_scripts/
run_netx_spikes.py in the Lava environment); both write the same `simulation.json`.

Inputs (`.npz` or `.npy`): `spikes (N, steps, *input shape)` 0/1 for spike-input files, or
`bias (N, *input shape)` integers for bias-input files (then `--steps`, or `steps` in the npz);
optional `labels (N,)` for an accuracy (the class is the argmax of the last layer's voltage
after the last step when it never fires, else of its spike counts).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..core.counters import count, merge_counts
from ..core.fxp_spikes import input_mode, run_fxp_spike_input
from ..core.graph import INPUT, DeployGraph
from ..errors import ConfigError, DatasetError
from ..formats.netx.reader import read_netx
from ..io.files import file_sha256, input_file
from ..io.limits import MAX_TIMESTEPS, check_memory, check_range
from ..io.npz import member_names, read_arrays
from ..io.output import check_out
from .lava_env import lava_python as checked_lava_python
from .run import LAYER_KEYS, count_fields, resolve_device, run_lava_script, write_simulation

RUNNER = Path(__file__).resolve().parent / "lava_scripts" / "run_netx_spikes.py"


def paper_ops(graph: DeployGraph) -> None:
    """Paper-convention operations of each synapse layer, from its weight (a foreign file has no original layer)."""
    for s in graph.synapses:
        if not s.dense_ops:
            s.dense_ops = int(np.prod(s.weight.shape)) * (int(np.prod(s.out_shape[1:])) if s.kind == "conv" else 1)


def load_inputs(path: Path, graph: DeployGraph, steps: int | None) -> tuple[np.ndarray, int, np.ndarray | None]:
    """(inputs, steps, labels) from `path`, checked against the graph's input shape and mode."""
    mode = input_mode(graph)
    key = "spikes" if mode == "spikes" else "bias"
    where = str(path)
    if path.suffix not in (".npz", ".npy"):
        raise DatasetError(f"{where}: inputs must be a .npz (with {key!r} and optional 'labels') or a .npy file")
    if path.suffix == ".npz":
        names = member_names(path, "--inputs")
        if key not in names:
            raise DatasetError(f"{where}: this network takes {key!r} input (its input is {mode}); "
                               f"the file has {', '.join(names) or 'no arrays'}")
        z = read_arrays(path, "--inputs", names=(key, "labels", "steps"))
        x, labels = z[key], z.get("labels")
        if steps is None and "steps" in z:
            s = z["steps"]
            if s.size != 1 or not np.issubdtype(s.dtype, np.integer):
                raise DatasetError(f"{where}: 'steps' must be one integer, got {s.dtype} {list(s.shape)}")
            steps = int(s.reshape(()))
    else:
        x, labels = read_arrays(path, "--inputs", npy_name=key)[key], None
    shape = tuple(graph.input_shape)
    if not np.issubdtype(x.dtype, np.integer) and not np.issubdtype(x.dtype, np.bool_) and not (
            np.issubdtype(x.dtype, np.floating) and np.array_equal(x, np.round(x))):
        raise DatasetError(f"{where}: {key} must hold integers, got dtype {x.dtype}")
    if mode == "spikes":
        if x.ndim != len(shape) + 2 or tuple(x.shape[2:]) != shape:
            raise DatasetError(f"{where}: spikes have shape {tuple(x.shape)}; this network needs "
                               f"(samples, steps, {', '.join(map(str, shape))})")
        if not np.isin(x, (0, 1)).all():
            raise DatasetError(f"{where}: spikes must be 0 or 1")
        if steps is not None and steps != x.shape[1]:
            raise ConfigError(f"--steps {steps} disagrees with the {x.shape[1]} steps of the input spikes in {where}")
        steps = x.shape[1]
    else:
        if tuple(x.shape[1:]) != shape:
            raise DatasetError(f"{where}: bias has shape {tuple(x.shape)}; this network needs "
                               f"(samples, {', '.join(map(str, shape))})")
        if np.abs(x).max(initial=0) >= 2**15:
            raise DatasetError(f"{where}: bias mantissas must be in [-32767, 32767] (Lava's 16-bit bias_mant)")
        if steps is None:
            raise ConfigError(f"this network takes bias input: give --steps (or 'steps' in {where})")
    check_range(where, "steps", int(steps), 1, MAX_TIMESTEPS)
    if len(x) == 0:
        raise DatasetError(f"{where}: no samples")
    if labels is not None and labels.shape != (len(x),):
        raise DatasetError(f"{where}: labels have shape {labels.shape}; expected ({len(x)},)")
    check_memory(x.size * 8, f"{where}: {key} as 64-bit integers")
    return x.astype(np.int64), int(steps), labels


def _lava_run(net: Path, x: np.ndarray, steps: int, mode: str, graph: DeployGraph, lava_python: str | None) -> dict:
    out = run_lava_script(RUNNER, net, {"steps": steps, "spikes" if mode == "spikes" else "bias": x}, lava_python)
    spikes = {p.name: torch.from_numpy(out[f"spikes_{k}"]).bool().transpose(0, 1) for k, p in enumerate(graph.populations)}
    return {"spikes": spikes, "v_readout_steps": torch.from_numpy(out["v_last"]).long().transpose(0, 1)}


def predict(graph: DeployGraph, run: dict) -> torch.Tensor:
    last = graph.readout.name
    s = run["spikes"][last]
    if s.any():
        return s.reshape(s.shape[0], s.shape[1], -1).sum(0).argmax(-1)
    v = run["v_readout_steps"][-1]
    return v.reshape(v.shape[0], -1).argmax(-1)


def simulate_net(net: Path, out: Path, inputs: Path, backend: str = "fxp", steps: int | None = None,
                 batch_size: int = 64, lava_python: str | None = None, save_spikes: bool = False,
                 device: str = "auto", overwrite: bool = False) -> dict:
    check_out(out, overwrite, "the simulation")
    dev = resolve_device(device)
    if backend not in ("fxp", "lava"):
        raise ConfigError(f"--backend {backend!r} is not allowed for a .net file; choose fxp or lava")
    if batch_size < 1:
        raise ConfigError("--batch-size must be >= 1")
    input_file(inputs, "--inputs", DatasetError)
    if backend == "lava":
        checked_lava_python(lava_python)  # before any work: a bad interpreter is one line
    graph = read_netx(net)
    paper_ops(graph)
    mode = input_mode(graph)
    x, steps, labels = load_inputs(inputs, graph, steps)
    parts, recorded, correct = [], [], 0
    chunk = len(x) if backend == "lava" else batch_size  # one Lava network runs every sample in turn
    for start in range(0, len(x), chunk):
        xb = x[start: start + chunk]
        if backend == "fxp":
            xt = torch.from_numpy(xb).to(dev)
            run = (run_fxp_spike_input(graph, xt.transpose(0, 1).bool(), steps) if mode == "spikes"
                   else run_fxp_spike_input(graph, None, steps, in_bias=xt))
            run["spikes"] = {k: v.cpu() for k, v in run["spikes"].items()}
            run["v_readout_steps"] = run["v_readout_steps"].cpu()
        else:
            run = _lava_run(net, xb, steps, mode, graph, lava_python)
        in_sp = torch.from_numpy(xb).transpose(0, 1).bool() if mode == "spikes" else None
        parts.append(count(graph, run["spikes"], steps, pipelined=False, input_spikes=in_sp))
        if labels is not None:
            correct += int((predict(graph, run) == torch.from_numpy(labels[start: start + chunk])).sum())
        if save_spikes:
            recorded.append(run)
    counts = merge_counts(parts)
    counts["totals"] = {k: v for k, v in counts["totals"].items() if not k.startswith("chip_run")}
    sim = {
        "backend": backend, "samples": int(len(x)), "timesteps": steps, "steps_per_sample": steps,
        "accuracy": correct / len(x) if labels is not None else None, "input": mode,
        "net": str(Path(net).absolute()), "net_sha256": file_sha256(net),
        "inputs": str(inputs), "model": net.stem, "neurodistill_version": __version__,
        # every step is counted: the counts are the whole run, with no pipeline fill apart
        **count_fields(counts, tuple(k for k in LAYER_KEYS if k != "pipeline_spikes" and not k.startswith("chip_run"))),
    }
    sim["conventions"].update({"window": "every step of the run (netx runs a .net file from rest, with no reset)",
                               "dense_ops": sim["conventions"]["dense_ops"] + " (of the file's layers)"})
    if any(s.source == INPUT for s in graph.synapses) and mode == "spikes":
        sim["conventions"]["acs"] += "; the input spikes feed the first layer on chip (ACs, not MACs)"
    write_simulation(out, sim, graph, [(r["spikes"], r["v_readout_steps"]) for r in recorded] if save_spikes else None,
                     overwrite)
    return sim
