"""The validation split: stratified, seeded, disjoint, never the test set."""

from __future__ import annotations

import pytest
import torch

from neurodistill.data.split import holdout_indices
from neurodistill.errors import ConfigError


def test_holdout_is_stratified_disjoint_and_seeded():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    tr, va = holdout_indices(labels, 0.1, seed=0)
    assert set(tr).isdisjoint(va) and sorted(tr + va) == list(range(100))
    assert [int((labels[va] == c).sum()) for c in range(3)] == [5, 3, 2]  # 10% of each class
    assert holdout_indices(labels, 0.1, seed=0) == (tr, va) and holdout_indices(labels, 0.1, seed=1)[1] != va


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.2, 1.5])
def test_bad_fraction(bad):
    with pytest.raises(ConfigError, match="val_split"):
        holdout_indices(torch.tensor([0, 1, 0, 1]), bad, 0)
