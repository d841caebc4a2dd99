"""Samples of a dataset split as tensors, for calibration and simulation (no augmentation)."""

from __future__ import annotations

import torch

from . import DataOptions, load_dataset


def dataset_samples(name: str, data_dir: str | None, data: dict, n: int, split: str = "train",
                    seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` samples of a split, no augmentation, in a fixed random order (train) or in order (test)."""
    opts = DataOptions(augment=False, synthetic_shape=tuple(data.get("synthetic_shape", (3, 32, 32))),
                       synthetic_classes=data.get("synthetic_classes", 10), synthetic_size=data.get("synthetic_size", 256),
                       image_size=data.get("image_size", 224), seed=data.get("seed", 0))
    train, test, _ = load_dataset(name, data_dir, opts)
    ds = train if split == "train" else test
    idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed)) if split == "train" else torch.arange(len(ds))
    xs, ys = zip(*(ds[int(i)] for i in idx[: min(n, len(ds))]), strict=True)
    return torch.stack(xs), torch.as_tensor(ys)
