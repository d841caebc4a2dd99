"""Samples a user gives as an .npz file: `x (N, *input_shape)` floats and integer labels `y (N,)`.

Read by `export MODEL.nir --calib FILE.npz` (labels required: the manifest's accuracies) and
`simulate BUNDLE --inputs FILE.npz` (labels optional: without them, no accuracy).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import DatasetError
from ..io.limits import MAX_SAMPLES
from ..io.npz import member_names, read_arrays


def read_samples(path: Path, input_shape: tuple[int, ...], flag: str,
                 labels_required: bool = True, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`x` as float32 and `y` as int64 (None when absent and not required); with `limit`, only the
    first `limit` samples are read from the file."""
    where = str(path)
    shape = f"(N, {', '.join(map(str, input_shape))})"
    need = f"give an .npz file with 'x' {shape}" + (" and 'y' (N,)" if labels_required else " and optional labels 'y' (N,)")
    if path.suffix != ".npz":
        raise DatasetError(f"{flag} {where!r}: {need}")
    names = member_names(path, flag)
    missing = [k for k in (("x", "y") if labels_required else ("x",)) if k not in names]
    if missing:
        raise DatasetError(f"{where}: needs arrays 'x' {shape}" + (" and 'y' (N,)" if labels_required else "")
                           + f"; missing {', '.join(missing)} (it has {', '.join(names) or 'none'})")
    z = read_arrays(path, flag, names=("x", "y"), rows=limit)
    x, y = z["x"], z.get("y")
    if x.ndim != len(input_shape) + 1 or tuple(x.shape[1:]) != tuple(input_shape):
        raise DatasetError(f"{where}: 'x' has shape {list(x.shape)}; the graph needs {shape}")
    if len(x) < 1:
        raise DatasetError(f"{where}: 'x' holds no samples; it needs N >= 1 samples of shape {shape}")
    if len(x) > MAX_SAMPLES:
        raise DatasetError(f"{where}: 'x' holds {len(x):,} samples; at most {MAX_SAMPLES:,} are run")
    if y is not None and limit is not None and len(y) > len(x):
        y = y[: len(x)]
    if y is not None and (y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer)):
        raise DatasetError(f"{where}: 'y' must be integer labels of shape ({len(x)},); it is {y.dtype} {list(y.shape)}")
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_) or np.iscomplexobj(x) or not np.isfinite(x).all():
        raise DatasetError(f"{where}: 'x' must hold finite numbers")
    return torch.from_numpy(x.astype(np.float32)), None if y is None else torch.from_numpy(y.astype(np.int64))
