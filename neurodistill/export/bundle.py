"""`neurodistill export --target loihi2|nir|onnx`: from a checkpoint to a directory of files.

The Python API of the export stage in one place; each target has its module (`loihi2`,
`nir_target`, `onnx_export`, `from_nir` for NIR files from other tools).
"""

from __future__ import annotations

from pathlib import Path

from ..data.samples import dataset_samples
from ..formats.manifest import Manifest
from ..io.files import file_sha256
from .from_nir import calib_from_file, export_nir_source, nir_source_module
from .loihi2 import calibration_data, export_loihi2, export_module_loihi2, load_model
from .nir_target import export_nir
from .output import prepare_out, write_dir

__all__ = ["calib_from_file", "calibration_data", "dataset_samples", "export_loihi2", "export_module_loihi2",
           "export_nir", "export_nir_source", "export_onnx", "load_model", "nir_source_module", "prepare_out",
           "write_dir"]


def export_onnx(ckpt_path: Path, out: Path, *, timesteps: int | None, overwrite: bool = False) -> dict:
    from .onnx_export import export_onnx_bundle

    def fill(tmp: Path) -> dict:
        info = export_onnx_bundle(ckpt_path, tmp, timesteps)
        return Manifest("onnx", str(Path(ckpt_path).absolute()), file_sha256(ckpt_path), info).write(tmp)

    return write_dir(out, overwrite, fill)


