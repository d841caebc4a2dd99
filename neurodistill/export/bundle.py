"""`neurodistill export --target loihi2|nir|onnx`: from a checkpoint to a directory of files.

Everything is written into a temporary directory beside the output and renamed into place at
the end, so a failure (a layer that does not fit, NaN weights, an unsupported module) leaves
nothing behind.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..data.samples import dataset_samples
from ..errors import ConfigError, UnsupportedLayerError
from ..io.files import file_sha256
from ..io.output import check_out
from ..io.output import write_dir as io_write_dir
from ..models.checkpoint import checkpoint_timesteps, load_checkpoint, model_from_checkpoint
from ..progress import Stages

log = logging.getLogger(__name__)
FORMAT_VERSION = 1


sha256 = file_sha256  # its old name here


def prepare_out(out: Path, overwrite: bool) -> None:
    """The output rule (neurodistill.io.output), checked before any work starts."""
    check_out(out, overwrite, "the export")


def write_dir(out: Path, overwrite: bool, fill: Callable[[Path], Any]) -> Any:
    """Run `fill(stage)`, then put its files at `out` (the tool's own earlier files replaced with --overwrite)."""
    return io_write_dir(out, overwrite, fill, "export", "the export")


def load_model(ckpt_path: Path):
    ckpt = load_checkpoint(ckpt_path)
    return ckpt, model_from_checkpoint(ckpt, ckpt_path).eval()


def calibration_data(ckpt: dict, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` training samples of the checkpoint's dataset, no augmentation, in a fixed random order."""
    cfg, ds = ckpt.get("config", {}), ckpt.get("dataset", {})
    if ds.get("frames"):
        raise UnsupportedLayerError(
            "event (DVS) inputs are not supported by the loihi2 target yet: its encoding layer assumes direct-encoded "
            "static images; export --target nir or onnx instead")
    return dataset_samples(cfg.get("dataset", "digits"), cfg.get("data_dir"), cfg.get("data") or {}, n, "train", seed)


def export_loihi2(ckpt_path: Path, out: Path, *, calib: int = 256, weight_bits: int | None = None, timesteps: int | None = None,
                  accept_reset_approximation: bool = False, overwrite: bool = False, dt: float = 1.0,
                  limits: str = "loihi2", chips: int = 1) -> dict:
    """A Loihi 2 bundle from a neurodistill checkpoint (calibrated on its training data).

    A `train --deploy loihi2` checkpoint is exported with the scales it was trained with and its
    weight bits (`weight_bits` None: the checkpoint's, else 8).
    """
    if calib < 1:
        raise ConfigError(f"--calib {calib} is not allowed; it must be >= 1")
    prepare_out(out, overwrite)
    ckpt, model = load_model(ckpt_path)
    qat = ckpt.get("qat")
    if qat and weight_bits is not None and weight_bits != qat["weight_bits"]:
        raise ConfigError(f"{str(ckpt_path)!r} was trained for Loihi 2 with {qat['weight_bits']}-bit weights "
                          f"(--deploy); export it with --weight-bits {qat['weight_bits']} (or leave it out)")
    weight_bits = qat["weight_bits"] if qat else (weight_bits or 8)
    T = checkpoint_timesteps(ckpt, str(ckpt_path), timesteps)
    x, y = calibration_data(ckpt, calib)
    cfg = ckpt.get("config", {})
    source = {"source": str(Path(ckpt_path).absolute()), "source_sha256": sha256(ckpt_path), "model": ckpt["model"]["name"],
              "calibration_split": "train",
              "dataset": {"name": cfg.get("dataset", "digits"), "data_dir": cfg.get("data_dir"), "data": cfg.get("data", {}),
                          "num_classes": ckpt["model"]["num_classes"]}}
    if qat:
        source["qat"] = {k: qat.get(k) for k in ("target", "weight_bits", "encoding_scale", "scales", "before", "after")}
    return export_module_loihi2(model, tuple(ckpt["dataset"]["input_shape"]), x, y, out, timesteps=T,
                                weight_bits=weight_bits, accept_reset_approximation=accept_reset_approximation,
                                overwrite=overwrite, dt=dt, limits=limits, chips=chips, source=source,
                                scales=qat["scales"] if qat else None)


def export_module_loihi2(model: torch.nn.Module, input_shape: tuple[int, ...], x: torch.Tensor, y: torch.Tensor,
                         out: Path, *, timesteps: int, weight_bits: int = 8, accept_reset_approximation: bool = False,
                         overwrite: bool = False, dt: float = 1.0, limits: str = "loihi2", chips: int = 1,
                         source: dict | None = None, scales: dict[str, float] | None = None) -> dict:
    """A Loihi 2 bundle from any spiking `nn.Module` built from spikingjelly/torch layers (Python API).

    `scales` (population -> power-of-two scale) replaces export's choice: a QAT checkpoint's.

    Shape:
        x: calibration inputs `(N, *input_shape)` (static images, direct encoding); y: labels `(N,)`.
    """
    from ..core.capture import capture
    from ..core.float_graph import run_float
    from ..core.fxp import run_fxp
    from ..core.loihi2 import encoding_bias, encoding_current, quantize_graph
    from .graph_io import write_graph
    from .netx_writer import netx_unsupported_reason, write_netx
    from .nir_deploy import to_nir
    from .nir_float import write_nir
    from .resources import load_limits, map_resources, require_fit

    if not 2 <= weight_bits <= 8:
        raise ConfigError(f"--weight-bits {weight_bits} is not allowed; Loihi 2's Lava models take 2..8")
    if timesteps < 1:
        raise ConfigError(f"--timesteps {timesteps} is not allowed; it must be >= 1")
    if chips < 1:
        raise ConfigError(f"--chips {chips} is not allowed; it must be >= 1")
    prepare_out(out, overwrite)
    bad = [n for n, p in model.state_dict().items() if p.is_floating_point() and not torch.isfinite(p).all()]
    if bad:
        raise UnsupportedLayerError(f"NaN or Inf values in {', '.join(bad[:5])}; export needs finite weights")
    t0 = time.perf_counter()
    T = timesteps
    st = Stages("export loihi2", ["capture", "quantize", "float accuracy", "fixed-point accuracy", "write"])
    graph = capture(model, input_shape, timesteps=T, dt=dt)
    st.next()
    current = encoding_current(graph, x.numpy())
    reports = quantize_graph(graph, weight_bits, float(np.abs(current).max()), accept_reset_approximation, scales)
    resources = map_resources(graph, load_limits(limits), chips)
    require_fit(resources)

    st.next()
    float_logits = run_float(graph, x.float().unsqueeze(0).expand(T, *x.shape))["logits"]
    # the class is the flat index of the readout's largest value: a conv classifier's readout is (K, 1, 1)
    acc_float = float((float_logits.mean(0).flatten(1).argmax(-1) == y).float().mean())
    bias, enc_clip = encoding_bias(graph, current)
    st.next()
    q = run_fxp(graph, torch.as_tensor(bias), T, record=True)
    st.next()
    acc_q = float((q["v_readout"].flatten(1).argmax(-1) == y).float().mean())
    dead = [p for p, s in q["spikes"].items() if not s.any()]
    for p in dead:
        log.warning("layer %s never spikes after quantization on %d calibration samples", p, len(y))
    next(r for r in reports if r.name == graph.encoding[0].target).bias_clipped = enc_clip
    netx_reason = netx_unsupported_reason(graph)
    source = source or {"source": "python module", "source_sha256": None, "model": type(model).__name__,
                        "calibration_split": "given"}

    def fill(tmp: Path) -> dict:
        files = {"nir": "network.nir", "graph": "deploy.h5", "manifest": "manifest.json"}
        if netx_reason is None:
            write_netx(graph, tmp / "network.net")
            files["netx"] = "network.net"
        write_nir(to_nir(graph), tmp / "network.nir")
        write_graph(graph, tmp / "deploy.h5")
        manifest = {
            "format_version": FORMAT_VERSION, "neurodistill_version": __version__, "target": "loihi2", **source,
            "timesteps": T, "dt": dt, "time_unit": "step" if dt == 1.0 else "s",
            "latency_steps": graph.latency_steps, "steps_per_sample": T + graph.latency_steps,
            "input_shape": list(input_shape), "weight_bits": weight_bits,
            "encoding": {"layer": [s.name for s in graph.encoding], "population": graph.encoding[0].target,
                         "where": "host", "note": "runs once per sample; its quantized output is the population's bias"},
            "reset_schedule": "population at depth d is reset (u = v = 0) at step d + 1 of each sample",
            "layers": [_layer_entry(graph, p, r) for p, r in zip(graph.populations, reports, strict=True)],
            "calibration_samples": int(len(y)),
            "accuracy_float": acc_float, "accuracy_quantized": acc_q,
            "dead_layers_after_quantization": dead, "resources": resources, "files": files,
            "reset_approximation": _reset_note(graph, acc_float, acc_q),
            "netx": None if netx_reason is None else {"written": False, "reason": netx_reason},
            "export_seconds": round(time.perf_counter() - t0, 3),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        return manifest

    try:
        return write_dir(out, overwrite, fill)
    finally:
        st.next()
        st.__exit__()


def _reset_note(graph, acc_float: float, acc_q: float) -> dict | None:
    """With --accept-reset-approximation: which layers, and the accuracy change it measured."""
    soft = [p.name for p in graph.populations if p.neuron.kind != "readout" and p.neuron.v_reset is None]
    if not soft:
        return None
    return {"layers": soft, "trained_reset": "soft (v -= threshold)", "loihi_reset": "to 0",
            "accuracy_float_soft_reset": acc_float, "accuracy_quantized_reset_to_0": acc_q,
            "accuracy_change": acc_q - acc_float}


def _layer_entry(graph, p, r) -> dict:
    syn = graph.incoming(p.name)
    return {
        "name": p.name, "kind": p.neuron.kind, "shape": list(p.shape), "neurons": p.size, "depth": p.depth,
        "neuron_float": asdict(p.neuron),
        "neuron_loihi": {"iDecay": p.i_decay, "vDecay": p.v_decay, "vThMant": p.v_th_mant,
                         "bias_exp": 6, "bias_mant_range": [int(np.min(p.bias_mant)), int(np.max(p.bias_mant))]},
        "scale": p.scale, "weight_bits": r.weight_bits, "clipped_fraction": {"weights": r.weight_clipped, "bias": r.bias_clipped},
        "synapses": [{"name": s.name, "kind": s.kind, "source": s.source, "host": s.host, "delay": s.delay,
                      "weight_shape": list(s.weight.shape), "stride": list(s.stride), "padding": list(s.padding),
                      "groups": s.groups} for s in syn],
        "notes": r.notes,
    }


def export_nir(ckpt_path: Path, out: Path, *, timesteps: int | None, dt: float = 1.0,
               accept_reset_approximation: bool = False, overwrite: bool = False, consumer: str | None = None) -> dict:
    from .nir_consumers import get
    from .nir_float import export_nir_float

    if consumer is not None:
        get(consumer)  # an unknown consumer fails before the output directory is touched
    prepare_out(out, overwrite)

    def fill(tmp: Path) -> dict:
        info = export_nir_float(ckpt_path, tmp, timesteps, dt, accept_reset_approximation=accept_reset_approximation,
                                consumer=consumer)
        manifest = {"format_version": FORMAT_VERSION, "neurodistill_version": __version__, "target": "nir",
                    "source": str(Path(ckpt_path).absolute()), "source_sha256": sha256(ckpt_path), **_plain(info),
                    "files": {"nir": "network.nir", "manifest": "manifest.json"}}
        manifest["path"] = "network.nir"
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        return manifest

    return write_dir(out, overwrite, fill)


def export_onnx(ckpt_path: Path, out: Path, *, timesteps: int | None, overwrite: bool = False) -> dict:
    from .onnx_export import export_onnx_bundle

    def fill(tmp: Path) -> dict:
        info = _plain(export_onnx_bundle(ckpt_path, tmp, timesteps))
        manifest = {"format_version": FORMAT_VERSION, "neurodistill_version": __version__, "target": "onnx",
                    "source": str(Path(ckpt_path).absolute()), "source_sha256": sha256(ckpt_path), **info}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        return manifest

    return write_dir(out, overwrite, fill)


def _plain(obj):
    """Paths and numpy scalars to JSON-ready values."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, Path):
        return obj.name
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


# ----------------------------------------------------------------------------- a NIR graph as the source

DIGITS_SHAPE = (1, 8, 8)


def nir_source_module(nir_path: Path, source: str, source_dt: float | None = None):
    """(spikingjelly module, `nir_in.Translated`) of a NIR file written by `source`'s exporter."""
    from .nir_import import from_nir_to_torch, read_nir_file
    from .nir_in import translate

    tr = translate(read_nir_file(nir_path), source, source_dt)
    return from_nir_to_torch(tr.graph, dt=1.0), tr


def calib_from_file(path: Path, input_shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """`x (N, *input_shape)` and `y (N,)` from an .npz the user gives (`--calib FILE.npz`)."""
    from ..data.npz_samples import read_samples

    return read_samples(path, input_shape, "--calib")


def export_nir_source(nir_path: Path, out: Path, *, target: str, source: str, source_dt: float | None = None,
                      calib: int | Path = 256, weight_bits: int = 8, timesteps: int | None = None,
                      dt: float = 1.0, overwrite: bool = False, chips: int = 1, limits: str = "loihi2") -> dict:
    """`neurodistill export MODEL.nir`: a NIR graph from `source`'s exporter (see `nir_in`) to `target`.

    Calibration and the manifest's accuracies: `calib` samples of digits' training split when the
    graph takes digits' (1, 8, 8), or the `x`, `y` of an .npz file.
    """
    from .nir_in import SOURCES

    if source not in SOURCES:
        raise ConfigError(f"--from {source!r} is not known; choose one of {', '.join(SOURCES)}")
    if isinstance(calib, int) and calib < 1:
        raise ConfigError(f"--calib {calib} is not allowed; it must be >= 1 or an .npz file")
    prepare_out(out, overwrite)
    model, tr = nir_source_module(nir_path, source, source_dt)
    T = timesteps or tr.timesteps
    if not T:
        raise ConfigError(f"NIR file {str(nir_path)!r} records no time-step count (NIR has none); pass --timesteps T")
    shape = tr.input_shape
    nir_in = {"exporter": source, "source_dt": tr.dt, "nodes": tr.notes}
    if target == "nir":
        return _nir_source_as_nir(nir_path, out, tr, T, overwrite, nir_in)
    if target == "onnx":
        return _nir_source_as_onnx(nir_path, out, model, tr, T, overwrite, nir_in)
    if isinstance(calib, Path):
        x, y = calib_from_file(calib, shape)
        split = f"given ({calib.name})"
    elif shape == DIGITS_SHAPE:
        x, y = dataset_samples("digits", None, {}, calib, "train")
        split = "train"
    else:
        raise ConfigError(f"the NIR graph takes inputs of shape {list(shape)}, which no built-in dataset has (digits: "
                          f"[1, 8, 8]); give --calib FILE.npz with 'x' (N, {', '.join(map(str, shape))}) and 'y' (N,)")
    info = {"source": str(Path(nir_path).absolute()), "source_sha256": sha256(nir_path), "model": f"NIR from {source}",
            "calibration_split": split, "nir_in": nir_in}
    if shape == DIGITS_SHAPE:  # what `simulate BUNDLE` runs on
        info["dataset"] = {"name": "digits", "data_dir": None, "data": {}, "num_classes": 10}
    return export_module_loihi2(model, shape, x, y, out, timesteps=T, weight_bits=weight_bits, overwrite=overwrite,
                                dt=dt, limits=limits, chips=chips, source=info)


def _nir_source_as_nir(nir_path: Path, out: Path, tr, T: int, overwrite: bool, nir_in: dict) -> dict:
    from .nir_float import INTEGRATION, LIF_CONVENTION, NIR_FILE, THRESHOLD_RULE, write_nir

    graph = tr.graph
    graph.metadata.update({"format": "neurodistill float NIR", "neurodistill_version": __version__, "timesteps": T,
                           "input_shape": np.array(tr.input_shape, dtype=np.int64), "integration": INTEGRATION,
                           "lif_convention": LIF_CONVENTION, "threshold_comparison": THRESHOLD_RULE,
                           "reset": "hard reset to v_reset"})

    def fill(tmp: Path) -> dict:
        write_nir(graph, tmp / NIR_FILE)
        manifest = {"format_version": FORMAT_VERSION, "neurodistill_version": __version__, "target": "nir",
                    "source": str(Path(nir_path).absolute()), "source_sha256": sha256(nir_path), "path": NIR_FILE,
                    "nodes": len(graph.nodes), "edges": len(graph.edges), "dt": 1.0, "time_unit": "step",
                    "timesteps": T, "consumer": "spikingjelly", "consumer_conventions": "canonical (dt = 1 step)",
                    "nir_in": nir_in, "files": {"nir": NIR_FILE, "manifest": "manifest.json"}}
        (tmp / "manifest.json").write_text(json.dumps(_plain(manifest), indent=2) + "\n")
        return manifest

    return write_dir(out, overwrite, fill)


class _StepGraph(torch.nn.Module):
    """The imported graph without its per-call reset, for the ONNX unrolling (it runs one step per call)."""

    spiking = True

    def __init__(self, graph_module: torch.nn.Module) -> None:
        super().__init__()
        self.graph_module = graph_module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.graph_module(x)[0]


def _nir_source_as_onnx(nir_path: Path, out: Path, model, tr, T: int, overwrite: bool, nir_in: dict) -> dict:
    from .onnx_export import export_onnx

    def fill(tmp: Path) -> dict:
        info = export_onnx(_StepGraph(model.graph_module), tmp / "snn.onnx", tr.input_shape, T)
        manifest = {"format_version": FORMAT_VERSION, "neurodistill_version": __version__, "target": "onnx",
                    "source": str(Path(nir_path).absolute()), "source_sha256": sha256(nir_path), "nir_in": nir_in,
                    "models": {"snn": _plain(info)}, "files": {"snn": "snn.onnx", "manifest": "manifest.json"}}
        (tmp / "manifest.json").write_text(json.dumps(_plain(manifest), indent=2) + "\n")
        return manifest

    return write_dir(out, overwrite, fill)
