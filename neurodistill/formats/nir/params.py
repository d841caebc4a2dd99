"""A NIR neuron node's parameters as one Loihi population takes them: one value per layer."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ...errors import UnsupportedLayerError


def node_line(name: str, node: Any) -> str:
    """How a refusal names a node: by its name in the file and its NIR type."""
    return f"NIR node {name!r} ({type(node).__name__})"


def uniform(name: str, node: Any, field: str) -> float:
    """The one value of `node.field`; a per-neuron array must hold a single finite value, since a
    Loihi population shares its neuron parameters."""
    values = np.unique(np.asarray(getattr(node, field), dtype=np.float64))
    if values.size != 1:
        raise UnsupportedLayerError(
            f"{node_line(name, node)}: {field} differs between neurons ({values.size} values, "
            f"{values.min():g}..{values.max():g}); a Loihi population here takes one value per layer")
    if not math.isfinite(values[0]):
        raise UnsupportedLayerError(f"{node_line(name, node)}: {field} = {values[0]:g}; allowed: a finite number")
    return float(values[0])


def filled(node: Any, field: str, value: float) -> np.ndarray:
    """`value` in the shape of `node.field` (NIR wants per-neuron arrays)."""
    return np.full(np.shape(np.asarray(getattr(node, field))), value, dtype=np.float64)
