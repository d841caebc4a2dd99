"""`export --target loihi2`: capture, quantize, check the chip's resources, write the bundle.

Everything is written into a temporary directory beside the output and renamed into place at
the end, so a failure (a layer that does not fit, NaN weights, an unsupported module) leaves
nothing behind.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.quantize import BIAS_EXP
from ..data.samples import dataset_samples
from ..errors import ConfigError, UnsupportedLayerError
from ..formats.manifest import MANIFEST_FILE, Manifest
from ..io.files import file_sha256
from ..models.checkpoint import checkpoint_meta, load_checkpoint, model_from_checkpoint
from ..progress import Stages
from .output import prepare_out, write_dir

log = logging.getLogger(__name__)


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
    meta = checkpoint_meta(ckpt, str(ckpt_path), timesteps)
    if not meta.spiking:
        raise UnsupportedLayerError(f"checkpoint {str(ckpt_path)!r} holds the ANN {meta.model!r}: it has no spiking "
                                    "neurons, and the loihi2 target runs spiking models (train one with --model snn_...)")
    x, y = calibration_data(ckpt, calib)
    cfg = ckpt.get("config", {})
    source = {"source": str(Path(ckpt_path).absolute()), "source_sha256": file_sha256(ckpt_path), "model": ckpt["model"]["name"],
              "calibration_split": "train",
              "dataset": {"name": cfg.get("dataset", "digits"), "data_dir": cfg.get("data_dir"), "data": cfg.get("data", {}),
                          "num_classes": ckpt["model"]["num_classes"]}}
    if qat:
        source["qat"] = {k: qat.get(k) for k in ("target", "weight_bits", "encoding_scale", "scales", "before", "after")}
    return export_module_loihi2(model, meta.input_shape, x, y, out, timesteps=meta.timesteps,
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
    _check_request(model, weight_bits, timesteps, chips)
    prepare_out(out, overwrite)
    t0 = time.perf_counter()
    st = Stages("export loihi2", ["capture", "quantize", "float accuracy", "fixed-point accuracy", "write"])
    try:
        d = _deploy(model, input_shape, x, y, st, timesteps=timesteps, weight_bits=weight_bits, dt=dt, limits=limits,
                    chips=chips, scales=scales, accept_reset_approximation=accept_reset_approximation)
        source = source or {"source": "python module", "source_sha256": None, "model": type(model).__name__,
                            "calibration_split": "given"}
        entries = {**{k: v for k, v in source.items() if k not in ("source", "source_sha256")},
                   **_run_entries(d, input_shape, timesteps, dt, weight_bits, len(y))}
        manifest = Manifest("loihi2", source.get("source"), source.get("source_sha256"), entries)
        return write_dir(out, overwrite, lambda tmp: _write_bundle(tmp, d, manifest, t0))
    finally:
        st.next()
        st.__exit__()


def _check_request(model: torch.nn.Module, weight_bits: int, timesteps: int, chips: int) -> None:
    if not 2 <= weight_bits <= 8:
        raise ConfigError(f"--weight-bits {weight_bits} is not allowed; Loihi 2's Lava models take 2..8")
    if timesteps < 1:
        raise ConfigError(f"--timesteps {timesteps} is not allowed; it must be >= 1")
    if chips < 1:
        raise ConfigError(f"--chips {chips} is not allowed; it must be >= 1")
    bad = [n for n, p in model.state_dict().items() if p.is_floating_point() and not torch.isfinite(p).all()]
    if bad:
        raise UnsupportedLayerError(f"NaN or Inf values in {', '.join(bad[:5])}; export needs finite weights")


@dataclass
class Deployed:
    """A quantized deployment graph and what export measured on it."""

    graph: Any
    reports: list
    resources: dict
    accuracy_float: float
    accuracy_quantized: float
    dead: list[str]
    netx_reason: str | None
    nir_reason: str | None = None
    range_safety: dict | None = None


def _deploy(model, input_shape, x, y, st: Stages, *, timesteps: int, weight_bits: int, dt: float, limits: str,
            chips: int, scales, accept_reset_approximation: bool) -> Deployed:
    """Capture, quantize, check the resources, and measure the float and fixed-point accuracy."""
    from ..core.capture import capture
    from ..core.float_graph import run_float
    from ..core.fxp import run_fxp
    from ..core.loihi2 import encoding_bias, encoding_current, quantize_graph
    from ..core.readout import spike_prediction
    from ..formats.netx.writer import netx_unsupported_reason
    from ..formats.nir.deploy import nir_unsupported_reason
    from .range_check import fit_ranges, settle_readout
    from .resources import load_limits, map_resources, require_fit

    T = timesteps
    graph = capture(model, input_shape, timesteps=T, dt=dt)
    st.next()
    current = encoding_current(graph, x.numpy())
    reports = quantize_graph(graph, weight_bits, float(np.abs(current).max()), accept_reset_approximation, scales)
    ranges = fit_ranges(graph, reports, T, fixed=set(scales or ()))
    resources = map_resources(graph, load_limits(limits), chips)
    require_fit(resources)
    st.next()
    float_logits = run_float(graph, x.float().unsqueeze(0).expand(T, *x.shape))["logits"]
    # the class is the flat index of the readout's largest value: a conv classifier's readout is (K, 1, 1);
    # a spike readout's "logits" are its spikes, whose mean's argmax is the count rule's (core/readout.py)
    acc_float = float((float_logits.mean(0).flatten(1).argmax(-1) == y).float().mean())
    bias, enc_clip = encoding_bias(graph, current)
    st.next()
    q = run_fxp(graph, torch.as_tensor(bias), T, record=True)
    if settle_readout(graph, reports, ranges, q["spikes"], y):
        q = run_fxp(graph, torch.as_tensor(bias), T, record=True)
    st.next()
    pred_q = (spike_prediction(q["spikes"][graph.readout.name], T) if graph.readout_kind == "spikes"
              else q["v_readout"].flatten(1).argmax(-1))
    acc_q = float((pred_q == y).float().mean())
    dead = [p for p, s in q["spikes"].items() if not s.any()]
    for p in dead:
        log.warning("layer %s never spikes after quantization on %d calibration samples", p, len(y))
    next(r for r in reports if r.name == graph.encoding[0].target).bias_clipped = enc_clip
    return Deployed(graph, reports, resources, acc_float, acc_q, dead, netx_unsupported_reason(graph),
                    nir_unsupported_reason(graph), ranges)


def _run_entries(d: Deployed, input_shape, T: int, dt: float, weight_bits: int, samples: int) -> dict[str, Any]:
    """The loihi2 manifest's entries after its source: timing, layers, resources, accuracies."""
    graph = d.graph
    return {
        "timesteps": T, "dt": dt, "time_unit": "step" if dt == 1.0 else "s",
        "latency_steps": graph.latency_steps, "steps_per_sample": T + graph.latency_steps,
        "readout": graph.readout_kind,
        "input_shape": list(input_shape), "weight_bits": weight_bits,
        "encoding": {"layer": [s.name for s in graph.encoding], "population": graph.encoding[0].target,
                     "where": "host", "note": "runs once per sample; its quantized output is the population's bias"},
        "reset_schedule": "population at depth d is reset (u = v = 0) at step d + 1 of each sample",
        "layers": [_layer_entry(graph, p, r) for p, r in zip(graph.populations, d.reports, strict=True)],
        "calibration_samples": int(samples),
        "accuracy_float": d.accuracy_float, "accuracy_quantized": d.accuracy_quantized,
        "dead_layers_after_quantization": d.dead, "resources": d.resources,
        "files": {**({"nir": "network.nir"} if d.nir_reason is None else {}), "graph": "deploy.h5",
                  "manifest": MANIFEST_FILE, **({"netx": "network.net"} if d.netx_reason is None else {})},
        "reset_approximation": _reset_note(graph, d.accuracy_float, d.accuracy_quantized),
        "netx": None if d.netx_reason is None else {"written": False, "reason": d.netx_reason},
        "nir": None if d.nir_reason is None else {"written": False, "reason": d.nir_reason},
        "range_safety": d.range_safety,
    }


def _write_bundle(tmp: Path, d: Deployed, manifest: Manifest, t0: float) -> dict:
    from ..formats.deploy_h5 import write_graph
    from ..formats.netx.writer import write_netx
    from ..formats.nir.deploy import to_nir
    from ..formats.nir.file import write_nir

    if d.netx_reason is None:
        write_netx(d.graph, tmp / "network.net")
    if d.nir_reason is None:
        write_nir(to_nir(d.graph), tmp / "network.nir")
    else:
        log.warning("network.nir left out of the bundle (deploy.h5 and the manifest hold the network): %s", d.nir_reason)
    write_graph(d.graph, tmp / "deploy.h5")
    manifest.entries["export_seconds"] = round(time.perf_counter() - t0, 3)
    return manifest.write(tmp)


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
                         "bias_exp": BIAS_EXP, "bias_mant_range": [int(np.min(p.bias_mant)), int(np.max(p.bias_mant))]},
        "scale": p.scale, "weight_bits": r.weight_bits, "clipped_fraction": {"weights": r.weight_clipped, "bias": r.bias_clipped},
        "synapses": [{"name": s.name, "kind": s.kind, "source": s.source, "host": s.host, "delay": s.delay,
                      "weight_shape": list(s.weight.shape), "stride": list(s.stride), "padding": list(s.padding),
                      "groups": s.groups} for s in syn],
        "notes": r.notes,
    }


