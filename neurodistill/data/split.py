"""A validation split held out of the training split, for model selection that never sees the test set.

Stratified (each class keeps its share), fixed by a seed, and taken from the training split
twice over: the training part from the augmented dataset, the validation part from the same
images without augmentation (a validation score must not vary with random crops).
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset, Subset

from ..errors import ConfigError


def labels_of(ds: Dataset) -> torch.Tensor:
    """Every sample's label: the dataset's own `targets`/`labels` when it has them, else read one by one."""
    for attr in ("targets", "labels"):
        got = getattr(ds, attr, None)
        if got is not None and len(got) == len(ds):
            return torch.as_tensor(list(got) if not torch.is_tensor(got) else got).long()
    return torch.as_tensor([int(ds[i][1]) for i in range(len(ds))])


def holdout_indices(labels: torch.Tensor, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, validation) indices: `round(fraction * n_c)` of each class c (at least one where the
    class has two or more samples), chosen by a generator seeded with `seed`. Pure."""
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"val_split = {fraction!r} is not allowed; it must be in (0, 1), or 0 to select on test")
    g = torch.Generator().manual_seed(seed)
    train, val = [], []
    for c in torch.unique(labels).tolist():
        idx = (labels == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        k = max(1, round(fraction * len(idx))) if len(idx) >= 2 else 0
        val += idx[:k].tolist()
        train += idx[k:].tolist()
    return sorted(train), sorted(val)


def split(train_aug: Dataset, train_plain: Dataset, fraction: float, seed: int) -> tuple[Subset, Subset]:
    """(training part of the augmented split, validation part of the plain one)."""
    tr, va = holdout_indices(labels_of(train_plain), fraction, seed)
    return Subset(train_aug, tr), Subset(train_plain, va)
