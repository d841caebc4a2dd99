"""Writing checkpoints (atomically) and the RNG state a run resumes with.

Reading them, and what a checkpoint means, lives with the models (`neurodistill.models.checkpoint`):
export, simulate and QAT read checkpoints too, and sit below training. Its names are re-exported
here, where callers have imported them from."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..errors import CheckpointError
from ..io.files import read_json as io_read_json
from ..io.output import atomic_write  # noqa: F401 - its old home; callers import it from here
from ..models.checkpoint import (  # noqa: F401 - re-exported: their home is models.checkpoint
    FORMAT,
    FORMAT_VERSION,
    check_entries,
    checkpoint_timesteps,
    load_checkpoint,
    model_from_checkpoint,
)


def read_json(path: Path) -> Any:
    """A JSON file's value; a `CheckpointError` naming the file when it is missing, not a regular file,
    too large, not UTF-8 or not JSON."""
    return io_read_json(path, "file", CheckpointError)


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    body = {"format": FORMAT, "format_version": FORMAT_VERSION, "neurodistill_version": __version__, **payload}
    atomic_write(path, lambda tmp: torch.save(body, tmp))


def rng_state() -> dict[str, Any]:
    """Every RNG a training step draws from, as tensors and plain Python."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *[_py(v) for v in np_state[2:]]],
        "python": _tuple_to_list(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), *n[2:]))
    random.setstate(_list_to_tuple(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        # one state per GPU the saving process saw; a machine (or CUDA_VISIBLE_DEVICES) with fewer
        # GPUs restores those it has, instead of indexing past its devices
        for i, s in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(s, i)


def _py(v):
    return v.item() if hasattr(v, "item") else v


def _tuple_to_list(v):
    return [_tuple_to_list(x) for x in v] if isinstance(v, tuple | list) else v


def _list_to_tuple(v):
    return tuple(_list_to_tuple(x) for x in v) if isinstance(v, list | tuple) else v


