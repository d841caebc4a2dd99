"""Random tensors of any shape with random labels: for tests and benchmarks."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import TensorDataset

from . import DataOptions, DatasetInfo, register_dataset


@register_dataset("synthetic")
def load_synthetic(data_dir: Path | None, options: DataOptions):
    g = torch.Generator().manual_seed(options.seed)
    shape = tuple(options.synthetic_shape)
    k = options.synthetic_classes

    def split(n: int) -> TensorDataset:
        return TensorDataset(torch.rand((n, *shape), generator=g), torch.randint(0, k, (n,), generator=g))

    n_train = options.synthetic_size
    train, test = split(n_train), split(max(1, n_train // 4))
    # A 4-D sample shape (T, C, H, W) is event-style data: frames first.
    info = DatasetInfo("synthetic", k, shape[-3:] if len(shape) == 4 else shape, shape[0] if len(shape) == 4 else None)
    return train, test, info
