"""`export --target nir`: a spiking checkpoint's float network as `network.nir` (BatchNorm folded)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..errors import CheckpointError
from ..formats.manifest import MANIFEST_FILE, Manifest
from ..formats.nir.consumers import DEFAULT, adapt_for, get
from ..formats.nir.file import NIR_FILE, write_nir
from ..formats.nir.from_torch import to_nir_graph
from ..io.files import file_sha256
from ..models.checkpoint import checkpoint_meta, load_checkpoint, model_from_checkpoint
from .output import prepare_out, write_dir

log = logging.getLogger(__name__)


def export_nir(ckpt_path: Path, out: Path, *, timesteps: int | None, dt: float = 1.0,
               accept_reset_approximation: bool = False, overwrite: bool = False, consumer: str | None = None) -> dict:
    if consumer is not None:
        get(consumer)  # an unknown consumer fails before the output directory is touched
    prepare_out(out, overwrite)

    def fill(tmp: Path) -> dict:
        info = export_nir_float(ckpt_path, tmp, timesteps, dt, accept_reset_approximation=accept_reset_approximation,
                                consumer=consumer)
        entries = {**info, "files": {"nir": NIR_FILE, "manifest": MANIFEST_FILE}, "path": NIR_FILE}
        return Manifest("nir", str(Path(ckpt_path).absolute()), file_sha256(ckpt_path), entries).write(tmp)

    return write_dir(out, overwrite, fill)


def export_nir_float(ckpt_path: Path, out_dir: Path, timesteps: int | None, dt: float = 1.0, *,
                     accept_reset_approximation: bool = False, consumer: str | None = None) -> dict[str, Any]:
    """Write `out_dir/network.nir` for a neurodistill spiking checkpoint; return what the manifest needs.

    `timesteps` None takes the checkpoint's (its event frame count, else its training T).
    `consumer` (a name in `formats.nir.consumers`) rewrites the graph into that importer's conventions.
    """
    consumer = consumer or DEFAULT
    get(consumer)  # an unknown name fails before the checkpoint is read
    ckpt = load_checkpoint(ckpt_path)
    meta = ckpt["model"]
    if not meta.get("spiking"):
        raise CheckpointError(
            f"checkpoint {str(ckpt_path)!r} holds the ANN {meta.get('name')!r}; the float NIR export is for "
            "spiking models (train one with --model snn_...)"
        )
    info = checkpoint_meta(ckpt, str(ckpt_path), timesteps)
    timesteps = info.timesteps
    model = model_from_checkpoint(ckpt, ckpt_path)
    graph = adapt_for(to_nir_graph(model, info.input_shape, int(timesteps), dt, accept_reset_approximation), consumer)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = write_nir(graph, out_dir / NIR_FILE)
    # only once the graph is written: a --for refusal is then the run's only line, not one after progress
    log.info("float NIR graph: %d nodes, %d edges, dt=%g, T=%d", len(graph.nodes), len(graph.edges), dt, timesteps)
    return {
        "path": str(path), "nodes": len(graph.nodes), "edges": len(graph.edges), "dt": float(graph.metadata["dt"]),
        "consumer": consumer, "consumer_conventions": graph.metadata["consumer_conventions"],
        "timesteps": int(timesteps), "time_unit": graph.metadata["time_unit"], "readout": graph.metadata["readout"],
        "reset_approximated": graph.metadata.get("reset_approximated", ""),
    }
