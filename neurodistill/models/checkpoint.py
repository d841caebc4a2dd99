"""Reading checkpoints and rebuilding the models they describe.

A checkpoint holds tensors and plain Python only (`torch.load(weights_only=True)`); every entry a
reader relies on is type-checked here, so a damaged or foreign file is one line naming the entry.
What every export reads besides the weights (time steps, input shape, event frames) is read in
one place, `checkpoint_meta`, so the loihi2, nir and onnx targets cannot disagree on it.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError, ConfigError, ModelError, UnsafeFileError
from ..io.files import input_file
from ..io.limits import MAX_CLASSES, MAX_TIMESTEPS, check_memory, check_range
from .registry import create_model

FORMAT = "neurodistill-checkpoint"
FORMAT_VERSION = 1


_GLOBAL = re.compile(r"(?:unsupported GLOBAL|Unsupported global: GLOBAL) ([\w.]+)")


def _load_failure(p: Path, e: BaseException) -> CheckpointError:
    """Say what the bytes are: a pickle naming a global that is not allowed, not a checkpoint at all, or damaged."""
    text = str(e)
    found = _GLOBAL.search(text)
    if found:
        return UnsafeFileError(f"{str(p)!r} is refused: it is a pickle that names the Python global {found.group(1)!r}, "
                               "which no neurodistill checkpoint holds (loading it could run code); it is not a "
                               "neurodistill checkpoint, or it was altered")
    with open(p, "rb") as f:
        head = f.read(4)
    if head[:4] == b"PK\x03\x04":
        reason = ("its pickle cannot be read" if "Weights only" in text else "its zip archive is incomplete"
                  if text.startswith("[Errno") or "central directory" in text else " ".join(text.split())[:120])
        return CheckpointError(f"checkpoint {str(p)!r} is damaged or truncated ({reason}); re-create it")
    if head[:1] == b"\x80":
        return CheckpointError(f"checkpoint {str(p)!r} is a damaged pickle or a legacy torch file this version cannot "
                               "read safely; re-create it with 'neurodistill train'")
    return CheckpointError(f"{str(p)!r} is not a checkpoint (neither a torch zip archive nor a pickle; it starts with "
                           f"{head!r}); pass a last.pt or best.pt written by 'neurodistill train'")


def _check_zip_sizes(p: Path) -> None:
    """A torch zip whose members claim more memory than the machine has is refused before torch.load."""
    try:
        with zipfile.ZipFile(p) as z:
            total = sum(i.file_size for i in z.infolist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # not a zip (or a damaged one): torch.load says which
    check_memory(total, f"checkpoint {str(p)!r}", CheckpointError)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A neurodistill checkpoint, or a CheckpointError naming the file and what is wrong.

    Only tensors and plain Python are unpickled (weights_only); the entries every reader uses are
    type-checked here, so a wrong value is one line naming the entry, not an error deep inside."""
    p = input_file(path, "checkpoint", CheckpointError)
    _check_zip_sizes(p)
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError, KeyError,
            AttributeError, TypeError, IndexError, MemoryError, OverflowError, UnicodeDecodeError) as e:
        # torch.load's failures on foreign or damaged bytes span many types; _load_failure says which case it is
        raise _load_failure(p, e) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(
            f"{str(p)!r} is not a neurodistill checkpoint (no format marker {FORMAT!r}); "
            "pass a last.pt or best.pt written by 'neurodistill train'"
        )
    check_entries(ckpt, str(p))
    return ckpt


def _entry(where: str, key: str, value: Any, allowed: str) -> CheckpointError:
    shown = repr(value) if not isinstance(value, torch.Tensor) else f"a tensor of shape {list(value.shape)}"
    return CheckpointError(f"checkpoint {where!r}: entry {key} = {shown[:80]} is not allowed; allowed: {allowed}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_entries(ckpt: dict[str, Any], where: str) -> None:
    """The entries every reader of a checkpoint relies on, present and of their types."""
    version = ckpt.get("format_version", 0)
    if not _is_int(version) or version < 0:
        raise _entry(where, "format_version", version, f"an integer 0..{FORMAT_VERSION}")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {where!r} has format version {version}; this neurodistill reads <= {FORMAT_VERSION}")
    for key in ("model", "state_dict"):
        if key not in ckpt:
            raise CheckpointError(f"checkpoint {where!r} has no {key!r} entry; it is incomplete")
    model = ckpt["model"]
    if not isinstance(model, dict):
        raise _entry(where, "model", model, "a mapping describing the model (name, num_classes, in_channels, ...)")
    if not isinstance(model.get("name"), str):
        raise _entry(where, "model.name", model.get("name"), "a registered model name")
    for key, hi in (("num_classes", MAX_CLASSES), ("in_channels", 4096)):
        v = model.get(key)
        if not _is_int(v) or not 1 <= v <= hi:
            raise _entry(where, f"model.{key}", v, f"an integer from 1 to {hi:,}")
    if not isinstance(model.get("spiking", False), bool):
        raise _entry(where, "model.spiking", model.get("spiking"), "true or false")
    if model.get("neuron") is not None and not isinstance(model["neuron"], dict):
        raise _entry(where, "model.neuron", model["neuron"], "a mapping of neuron settings, or none")
    for key in ("config", "dataset", "qat", "method"):
        if ckpt.get(key) is not None and not isinstance(ckpt[key], dict):
            raise _entry(where, key, ckpt[key], "a mapping, or none")
    shape = (ckpt.get("dataset") or {}).get("input_shape")
    if shape is not None and (not isinstance(shape, list | tuple) or not 1 <= len(shape) <= 4
                              or not all(_is_int(d) and 1 <= d <= 65536 for d in shape)):
        raise _entry(where, "dataset.input_shape", shape, "a list of 1 to 4 sizes, each 1..65536 (e.g. [3, 32, 32])")
    qat = ckpt.get("qat")
    if qat and (not _is_int(qat.get("weight_bits")) or not 2 <= qat["weight_bits"] <= 8):
        raise _entry(where, "qat.weight_bits", qat.get("weight_bits"), "an integer from 2 to 8")
    state = ckpt["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise _entry(where, "state_dict", type(state).__name__ if not isinstance(state, dict) else "a mapping with "
                     "non-tensor values", "a mapping of parameter names to tensors")


def checkpoint_timesteps(ckpt: dict[str, Any], where: str, given: int | None = None) -> int:
    """The time steps T an export of this checkpoint runs: `given` (--timesteps) if set, else the
    dataset's frame count for event data (training used it), else the training config's T.
    The one rule for every export target; always within 1..MAX_TIMESTEPS."""
    if given is not None:
        return check_range("--timesteps", "T", given, 1, MAX_TIMESTEPS)
    dataset = ckpt.get("dataset") if isinstance(ckpt.get("dataset"), dict) else {}
    config = ckpt.get("config") if isinstance(ckpt.get("config"), dict) else {}
    steps = dataset.get("frames") or config.get("timesteps")
    if steps is None:
        raise CheckpointError(f"checkpoint {where!r} records no time-step count; pass --timesteps T")
    return check_range(f"checkpoint {where!r}", "timesteps", steps, 1, MAX_TIMESTEPS)


@dataclass(frozen=True)
class CheckpointMeta:
    """What an export reads from a checkpoint besides its weights."""

    model: str
    spiking: bool
    input_shape: tuple[int, ...]  # one sample, without time and batch
    frames: int | None  # event (DVS) data: frames per sample; None for static images
    timesteps: int | None  # T an export runs (`checkpoint_timesteps`); None for an ANN


def checkpoint_meta(ckpt: dict[str, Any], where: str, timesteps: int | None = None) -> CheckpointMeta:
    """The one reading of a checkpoint's model name, input shape, frames and export T
    (`timesteps` is --timesteps; it is not used for an ANN, which has no time axis)."""
    dataset = ckpt.get("dataset") if isinstance(ckpt.get("dataset"), dict) else {}
    shape = dataset.get("input_shape")
    if not isinstance(shape, list | tuple) or not shape or not all(_is_int(d) and d > 0 for d in shape):
        raise CheckpointError(f"checkpoint {where!r} records no valid dataset input_shape ({shape!r}); "
                              "re-create it with 'neurodistill train'")
    frames = dataset.get("frames") or None
    spiking = bool(ckpt["model"].get("spiking"))
    return CheckpointMeta(model=str(ckpt["model"].get("name")), spiking=spiking, input_shape=tuple(shape),
                          frames=frames, timesteps=checkpoint_timesteps(ckpt, where, timesteps) if spiking else None)


def model_from_checkpoint(ckpt: dict[str, Any], path: str | Path) -> nn.Module:
    """Rebuild the model a checkpoint describes and load its weights."""
    meta = ckpt["model"]
    try:
        # checkpoints written before --readout existed hold no "readout": theirs was the voltage
        model = create_model(meta["name"], meta["num_classes"], meta["in_channels"], meta.get("neuron"),
                             meta.get("readout") or "voltage")
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"checkpoint {str(path)!r} has an incomplete model description ({e})") from None
    except (ConfigError, ModelError) as e:  # an unknown model or neuron setting, named by the registry
        raise CheckpointError(f"checkpoint {str(path)!r}: {e}") from None
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        first = str(e).splitlines()[1 if len(str(e).splitlines()) > 1 else 0].strip()[:200]
        raise CheckpointError(
            f"checkpoint {str(path)!r}: its weights do not fit model {meta['name']!r} ({first})"
        ) from None
    return model
