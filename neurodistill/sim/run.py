"""`neurodistill simulate BUNDLE`: replay a Loihi 2 bundle on test data and count what happens.

Backends: `fxp` (neurodistill's bit-accurate fixed-point simulator, batched), `float` (the
latency-free float graph, spikingjelly semantics) and `lava` (Lava's `fixed_pt` models through
the Lava environment: a chain bundle's `network.net` through netx, any other graph, residual
ones included, built from `deploy.h5` by `lava_scripts/run_graph.py`). Writes `simulation.json`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..core import neurobench
from ..core.counters import count, merge_counts, windows
from ..core.float_graph import run_float
from ..core.fxp import run_fxp
from ..core.loihi2 import encoding_bias, encoding_current
from ..core.readout import output_window, spike_prediction
from ..data.samples import dataset_samples
from ..devices import resolve_device
from ..errors import CheckpointError, ConfigError
from ..formats.deploy_h5 import read_graph
from ..formats.manifest import (
    MANIFEST_FILE,
    check_bundle_files,
    check_manifest_graph,
    read_manifest,
)
from ..io.limits import MAX_SAMPLES, check_range
from ..io.output import check_out, write_dir
from ..progress import progress as bar
from .lava_env import lava_python as checked_lava_python
from .step_accuracy import from_logits, from_readout, from_spikes, readout_window
from .step_accuracy import summarize as per_step_summary

log = logging.getLogger(__name__)
BACKENDS = ("fxp", "float", "lava")
SIM_FILES = ("simulation.json", "spikes.h5")  # what simulate writes
RUNNER = Path(__file__).resolve().parent / "lava_scripts" / "run_netx.py"  # chain bundles: network.net via netx
GRAPH_RUNNER = RUNNER.with_name("run_graph.py")  # every other graph: Lava processes built from deploy.h5


def bundle_id(bundle: Path) -> str:
    return hashlib.sha256((bundle / MANIFEST_FILE).read_bytes()).hexdigest()


LAYER_KEYS = ("name", "kind", "neurons", "spikes", "spikes_per_step", "firing_rate", "synaptic_events", "dense_ops",
              "acs", "macs", "neuron_updates", "pipeline_spikes", "chip_run_synaptic_events", "chip_run_neuron_updates")


def run_lava_script(runner: Path, source: Path, inputs: dict, lava_python: str | None) -> dict[str, np.ndarray]:
    """Run a lava_scripts runner on `source` in the Lava environment: `inputs` in, its arrays out."""
    py = checked_lava_python(lava_python)
    with tempfile.TemporaryDirectory() as d:
        np.savez(Path(d) / "in.npz", **inputs)
        res = subprocess.run([py, str(runner), str(source), str(Path(d) / "in.npz"), str(Path(d) / "out.npz")],
                             capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"the Lava runner failed:\n{res.stderr[-3000:]}")
        with np.load(Path(d) / "out.npz") as out:
            return {k: out[k] for k in out.files}


def count_fields(counts: dict, keys: tuple[str, ...] = LAYER_KEYS) -> dict:
    """The counting part of simulation.json."""
    return {"layers": [{k: layer[k] for k in keys} for layer in counts["layers"]],
            "firing_rate_neuron_weighted": counts["firing_rate_neuron_weighted"],
            "firing_rate_mean_of_layers": counts["firing_rate_mean_of_layers"],
            "totals": counts["totals"], "conventions": dict(counts["conventions"])}


def write_simulation(out: Path, sim: dict, graph, recorded: list[tuple[dict, torch.Tensor | None]] | None,
                     overwrite: bool = False) -> None:
    """`out/simulation.json`, and `spikes.h5` from the `(spikes, v_readout_steps)` of each batch when
    recorded (--save-spikes), staged and put in place together (the output rule of
    neurodistill.io.output); with `overwrite`, an older run's spikes.h5 that this run did not write
    is removed (it would not belong to this simulation.json)."""
    def fill(stage: Path) -> None:
        if recorded:
            from ..formats.nir.spikes import write_spikes

            v = [r[1] for r in recorded]
            write_spikes(stage / "spikes.h5", graph, {k: torch.cat([r[0][k] for r in recorded], 1) for k in recorded[0][0]},
                         torch.cat(v, 1) if all(x is not None for x in v) else None)
        (stage / "simulation.json").write_text(json.dumps(sim, indent=2) + "\n")

    write_dir(out, overwrite, fill, "simulate", "the simulation", owned=SIM_FILES)


def _lava_spikes(bundle: Path, graph, bias: np.ndarray, steps: int, lava_python: str | None) -> dict:
    # what users deploy: a chain's network.net through netx; a residual or branching graph (no network.net)
    # as Lava processes built from deploy.h5, with synaptic delays for its path-matching delays
    net = bundle / "network.net"
    runner, source = (RUNNER, net) if net.is_file() else (GRAPH_RUNNER, bundle / "deploy.h5")
    out = run_lava_script(runner, source, {"bias": bias, "steps": steps}, lava_python)
    firing = [p for p in graph.populations if p.neuron.kind != "readout"]
    spikes = {p.name: torch.from_numpy(out[f"spikes_{k}"]).bool().transpose(0, 1) for k, p in enumerate(firing)}
    v = torch.from_numpy(out["v_readout"]).transpose(0, 1)  # (steps, N, K)
    return {"spikes": spikes, "v_readout": v[-1], "v_readout_steps": v}


def simulate(bundle: Path, out: Path, backend: str = "fxp", samples: int = 256, batch_size: int = 64,
             encoding_once: bool = False, lava_python: str | None = None, data_dir: str | None = None,
             save_spikes: bool = False, all_steps: bool = False, device: str = "auto",
             inputs: Path | None = None, progress: bool = False, overwrite: bool = False) -> dict:
    """Run `samples` test samples through the bundle with `backend` and write `out/simulation.json`.

    The samples are the first `samples` of the bundle's dataset's test split, or of `inputs` (an
    .npz with `x (N, *input_shape)` and optional integer labels `y (N,)`), for any bundle.
    fxp computes each layer in its own T-step window only (the same accuracy and counts, faster
    for deep graphs) unless `all_steps` or `save_spikes`: then every chip step, and the
    pipeline-fill spikes are counted too (Lava always runs every step). `device`: where fxp and
    float run (`auto`: CUDA when available).
    """
    check_range("simulate", "--samples", samples, 1, MAX_SAMPLES)
    check_out(out, overwrite, "the simulation")
    if backend == "lava":
        checked_lava_python(lava_python)  # before any work: a bad interpreter is one line, not a traceback later
    manifest, graph = open_bundle(bundle)
    if inputs is not None:
        from ..data.npz_samples import read_samples

        x, y = read_samples(inputs, tuple(graph.input_shape), "--inputs", labels_required=False, limit=samples)
        x, y = x[:samples], None if y is None else y[:samples]
        source = {"split": "given", "dataset": None, "inputs": str(Path(inputs).absolute())}
    else:
        ds = manifest.get("dataset")
        if not ds:
            raise CheckpointError(f"bundle {str(bundle)!r} names no dataset (exported from Python or from a NIR file "
                                  "calibrated on your data): pass --inputs FILE.npz with 'x' (N, "
                                  f"{', '.join(map(str, graph.input_shape))}) and optional labels 'y' (N,)")
        x, y = dataset_samples(ds["name"], data_dir or ds.get("data_dir"), ds.get("data") or {}, samples, split="test")
        if tuple(x.shape[1:]) != tuple(graph.input_shape):
            raise CheckpointError(f"bundle {str(bundle)!r}: dataset {ds['name']!r} gives samples of shape "
                                  f"{list(x.shape[1:])}; the bundle's input_shape is {list(graph.input_shape)}")
        source = {"split": "test", "dataset": ds["name"]}
    sim, recorded = simulate_samples(bundle, manifest, graph, x, y, backend=backend, batch_size=batch_size,
                                     encoding_once=encoding_once, lava_python=lava_python, save_spikes=save_spikes,
                                     all_steps=all_steps, device=device, progress=progress)
    sim.update(source)
    write_simulation(out, sim, graph, recorded if save_spikes else None, overwrite)
    return sim


def open_bundle(bundle: Path):
    """(manifest, deployment graph) of a loihi2 bundle, checked against each other."""
    manifest = read_manifest(bundle)
    if manifest.get("target") != "loihi2":
        raise CheckpointError(f"{str(bundle)!r} is a {manifest.get('target')!r} export; simulate reads loihi2 bundles")
    if not (bundle / "deploy.h5").is_file():
        raise CheckpointError(f"bundle {str(bundle)!r} has no deploy.h5; re-export it")
    check_bundle_files(bundle)
    graph = read_graph(bundle / "deploy.h5")
    check_manifest_graph(manifest, graph, bundle)  # input shape, timesteps, latency, layers
    return manifest, graph


def simulate_samples(bundle: Path, manifest: dict, graph, x: torch.Tensor, y: torch.Tensor | None, *,
                     backend: str = "fxp", batch_size: int = 64, encoding_once: bool = False,
                     lava_python: str | None = None, save_spikes: bool = False, all_steps: bool = False,
                     device: str = "auto", progress: bool = False) -> tuple[dict, list]:
    """The simulation record of static inputs `x (N, *input_shape)` (labels `y (N,)` or None: no
    accuracy), and the recorded `(spikes, v_readout_steps)` per batch when `save_spikes`."""
    if backend not in BACKENDS:
        raise ConfigError(f"--backend {backend!r} is not allowed; choose one of {', '.join(BACKENDS)}")
    if batch_size < 1:
        raise ConfigError("--batch-size must be >= 1")
    T = int(manifest["timesteps"])
    steps = T + graph.latency_steps
    dev = resolve_device(device)
    parts, correct, recorded, nb_parts = [], 0, [], []
    alone, running = [0] * T, [0] * T
    starts = range(0, len(x), batch_size)
    for start in bar(starts, len(starts), f"simulate ({backend}, {len(x)} samples)", progress):
        xb = x[start: start + batch_size]
        if backend == "float":
            run = run_float(graph, xb.float().to(dev).unsqueeze(0).expand(T, *xb.shape), record=True)
            pred, spikes, pipelined = run["logits"].mean(0).flatten(1).argmax(-1), run["spikes"], False
        else:
            bias, _ = encoding_bias(graph, encoding_current(graph, xb.numpy()))
            run = (run_fxp(graph, torch.as_tensor(bias, device=dev), T, windows_only=not (all_steps or save_spikes))
                   if backend == "fxp" else _lava_spikes(bundle, graph, bias, steps, lava_python))
            pred, spikes, pipelined = run["v_readout"].flatten(1).argmax(-1), run["spikes"], True
        spikes, pred = {k: v.cpu() for k, v in spikes.items()}, pred.cpu()  # counting runs on the CPU
        if graph.readout_kind == "spikes":  # every backend: the counts in the output's T-step window
            pred = spike_prediction(spikes[graph.readout.name], T)
        if run.get("v_readout_steps") is not None:
            run["v_readout_steps"] = run["v_readout_steps"].cpu()
        if y is not None:
            yb = y[start: start + batch_size]
            correct += int((pred == yb).sum())
            a, m = (from_spikes(output_window(spikes[graph.readout.name], T), yb) if graph.readout_kind == "spikes"
                    else from_logits(run["logits"].cpu(), yb) if backend == "float"
                    else from_readout(readout_window(run["v_readout_steps"], T), yb))
            alone, running = [u + d for u, d in zip(alone, a, strict=True)], [u + d for u, d in zip(running, m, strict=True)]
        windowed = run.get("windows_only", False)  # spikes hold each layer's own T-step window
        parts.append(count(graph, spikes, T, encoding_once=encoding_once, pipelined=pipelined and not windowed,
                           pipeline_known=pipelined and not windowed, chip_steps=steps if pipelined else None))
        nb_parts.append(neurobench.batch_metrics(graph, xb.float(), windows(graph, spikes, T, pipelined and not windowed),
                                                 T, backend, membrane=backend == "float"))
        if save_spikes:
            recorded.append((spikes, run.get("v_readout_steps")))
    counts = merge_counts(parts)
    n = len(x)
    sim = {
        "backend": backend, "samples": int(n), "timesteps": T, "accuracy": None if y is None else correct / n,
        "steps_per_sample": steps if backend != "float" else T,
        "steps_computed": ("every chip step" if backend == "lava" or (backend == "fxp" and (all_steps or save_spikes))
                           else "each layer's T-step window" if backend == "fxp" else "T steps, no latency"),
        "accuracy_per_timestep": None if y is None else per_step_summary(alone, running, n),
        "bundle": str(Path(bundle).absolute()), "bundle_manifest_sha256": bundle_id(bundle), "model": manifest.get("model"),
        "neurodistill_version": __version__, **count_fields(counts),
        "neurobench": neurobench.summarize(graph, nb_parts, backend),
    }
    return sim, recorded


def simulate_bundle(bundle: str | Path, x, y=None, *, backend: str = "fxp", out: str | Path | None = None,
                    batch_size: int = 64, encoding_once: bool = False, lava_python: str | None = None,
                    all_steps: bool = False, device: str = "auto", overwrite: bool = False) -> dict:
    """Simulate a Loihi 2 bundle on your own inputs, from Python (the CLI's `simulate --inputs`).

    Shape:
        x: `(N, *input_shape)` static images (a tensor or array; direct encoding: the same image at
        each of the T steps, as in training). y: `(N,)` integer labels, or None (no accuracy).
    Returns the `simulation.json` record (accuracy, per-step accuracy, counts per layer, NeuroBench
    metrics); with `out`, also writes `out/simulation.json` for `report`.
    """
    bundle = Path(bundle)
    if out is not None:
        check_out(Path(out), overwrite, "the simulation")
    if backend == "lava":
        checked_lava_python(lava_python)
    manifest, graph = open_bundle(bundle)
    x = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    if tuple(x.shape[1:]) != tuple(graph.input_shape) or len(x) < 1:
        raise ConfigError(f"x has shape {list(x.shape)}; bundle {str(bundle)!r} takes (N, "
                          f"{', '.join(map(str, graph.input_shape))})")
    if y is not None:
        y = torch.as_tensor(np.asarray(y)).long()
        if y.shape != (len(x),):
            raise ConfigError(f"y has shape {list(y.shape)}; it must be ({len(x)},), one integer label per sample")
    sim, _ = simulate_samples(bundle, manifest, graph, x, y, backend=backend, batch_size=batch_size,
                              encoding_once=encoding_once, lava_python=lava_python, all_steps=all_steps, device=device)
    sim.update({"split": "given", "dataset": None, "inputs": "Python arrays"})
    if out is not None:
        write_simulation(Path(out), sim, graph, None, overwrite)
    return sim
