"""Checkpoints: plain tensors and Python only (loadable with weights_only=True), written atomically."""

from __future__ import annotations

import os
import pickle
import random
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..errors import CheckpointError

FORMAT = "neurodistill-checkpoint"
FORMAT_VERSION = 1


def atomic_write(path: str | Path, write) -> None:
    """Call `write(tmp_path)`, then rename over `path`: a reader sees the old file or the new one,
    never a partial one, even if the process is killed in between."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path) -> Any:
    """A JSON file's value; a `CheckpointError` naming the file when it cannot be read or parsed."""
    import json

    try:
        return json.loads(Path(path).read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{str(path)!r} is not valid JSON ({' '.join(str(e).split())})") from None
    except OSError as e:
        raise CheckpointError(f"{str(path)!r} cannot be read ({e.strerror or e})") from None


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    body = {"format": FORMAT, "format_version": FORMAT_VERSION, "neurodistill_version": __version__, **payload}
    atomic_write(path, lambda tmp: torch.save(body, tmp))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A neurodistill checkpoint, or a CheckpointError naming the file and what is wrong."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint {str(p)!r} does not exist")
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError, KeyError,
            AttributeError, TypeError, IndexError) as e:
        # torch.load's failures on foreign or damaged bytes span many types; all mean the same here
        reason = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise CheckpointError(f"checkpoint {str(p)!r} is corrupt or truncated ({reason}); re-create it") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(
            f"{str(p)!r} is not a neurodistill checkpoint (no format marker {FORMAT!r}); "
            "pass a last.pt or best.pt written by 'neurodistill train'"
        )
    if ckpt.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {str(p)!r} has format version {ckpt['format_version']}; this neurodistill reads <= {FORMAT_VERSION}"
        )
    for key in ("model", "state_dict"):
        if key not in ckpt:
            raise CheckpointError(f"checkpoint {str(p)!r} has no {key!r} entry; it is incomplete")
    return ckpt


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
