"""`neurodistill export MODEL.nir`: a NIR graph written by another tool, exported to any target."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..data.samples import dataset_samples
from ..errors import ConfigError, UnsupportedLayerError
from ..formats.manifest import MANIFEST_FILE, Manifest
from ..formats.nir.conventions import HARD_RESET, graph_metadata
from ..formats.nir.file import NIR_FILE, read_nir_file, write_nir
from ..io.files import file_sha256
from .loihi2 import export_module_loihi2
from .output import prepare_out, write_dir

DIGITS_SHAPE = (1, 8, 8)


def nir_source_module(nir_path: Path, source: str, source_dt: float | None = None, source_reset: str | None = None):
    """(spikingjelly module, `formats.nir.translate.Translated`) of a NIR file written by `source`'s exporter;
    `source_reset` (zero, subtract) where that exporter does not record the reset."""
    from ..formats.nir.to_torch import from_nir_to_torch
    from ..formats.nir.translate import translate

    tr = translate(read_nir_file(nir_path), source, source_dt, source_reset)
    return from_nir_to_torch(tr.graph, dt=1.0), tr


def calib_from_file(path: Path, input_shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """`x (N, *input_shape)` and `y (N,)` from an .npz the user gives (`--calib FILE.npz`)."""
    from ..data.npz_samples import read_samples

    return read_samples(path, input_shape, "--calib")


def export_nir_source(nir_path: Path, out: Path, *, target: str, source: str, source_dt: float | None = None,
                      source_reset: str | None = None, calib: int | Path = 256, weight_bits: int = 8, timesteps: int | None = None,
                      dt: float = 1.0, overwrite: bool = False, chips: int = 1, limits: str = "loihi2") -> dict:
    """`neurodistill export MODEL.nir`: a NIR graph from `source`'s exporter (see `formats.nir.translate`) to `target`.

    Calibration and the manifest's accuracies: `calib` samples of digits' training split when the
    graph takes digits' (1, 8, 8), or the `x`, `y` of an .npz file.
    """
    from ..formats.nir.translate import SOURCES, check_reset, in_nir_terms

    if source not in SOURCES:
        raise ConfigError(f"--from {source!r} is not known; choose one of {', '.join(SOURCES)}")
    check_reset(source, source_reset)  # before anything is read or written
    if isinstance(calib, int) and calib < 1:
        raise ConfigError(f"--calib {calib} is not allowed; it must be >= 1 or an .npz file")
    prepare_out(out, overwrite)
    model, tr = nir_source_module(nir_path, source, source_dt, source_reset)
    T = timesteps or tr.timesteps
    if not T:
        raise ConfigError(f"NIR file {str(nir_path)!r} records no time-step count (NIR has none); pass --timesteps T")
    shape = tr.input_shape
    nir_in = {"exporter": source, "source_dt": tr.dt, "reset": tr.graph.metadata["source_reset"], "nodes": tr.notes}
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
    info = {"source": str(Path(nir_path).absolute()), "source_sha256": file_sha256(nir_path), "model": f"NIR from {source}",
            "calibration_split": split, "nir_in": nir_in}
    if shape == DIGITS_SHAPE:  # what `simulate BUNDLE` runs on
        info["dataset"] = {"name": "digits", "data_dir": None, "data": {}, "num_classes": 10}
    try:
        return export_module_loihi2(model, shape, x, y, out, timesteps=T, weight_bits=weight_bits,
                                    overwrite=overwrite, dt=dt, limits=limits, chips=chips, source=info)
    except UnsupportedLayerError as e:
        raise UnsupportedLayerError(in_nir_terms(str(e), tr.graph)) from None


def _nir_source_as_nir(nir_path: Path, out: Path, tr, T: int, overwrite: bool, nir_in: dict) -> dict:
    graph = tr.graph
    graph.metadata.update(graph_metadata(1.0, T, format="neurodistill float NIR", reset=HARD_RESET,
                                         input_shape=np.array(tr.input_shape, dtype=np.int64)))

    def fill(tmp: Path) -> dict:
        write_nir(graph, tmp / NIR_FILE)
        entries = {"path": NIR_FILE, "nodes": len(graph.nodes), "edges": len(graph.edges), "dt": 1.0, "time_unit": "step",
                   "timesteps": T, "consumer": "spikingjelly", "consumer_conventions": "canonical (dt = 1 step)",
                   "nir_in": nir_in, "files": {"nir": NIR_FILE, "manifest": MANIFEST_FILE}}
        return Manifest("nir", str(Path(nir_path).absolute()), file_sha256(nir_path), entries).write(tmp)

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
        entries = {"nir_in": nir_in, "models": {"snn": info}, "files": {"snn": "snn.onnx", "manifest": MANIFEST_FILE}}
        return Manifest("onnx", str(Path(nir_path).absolute()), file_sha256(nir_path), entries).write(tmp)

    return write_dir(out, overwrite, fill)
