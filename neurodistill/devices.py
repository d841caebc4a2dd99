"""The one device rule for every command: `auto`, `cpu`, `cuda` or `cuda:N`, checked against this torch."""

from __future__ import annotations

import torch

from .errors import ConfigError

CHOICES = ("auto", "cpu", "cuda")  # what --device offers; cuda:N is accepted too


def resolve_device(name: str, local_rank: int | None = None) -> torch.device:
    """The torch device `name` asks for, or a `ConfigError` that says what is allowed.

    `local_rank` (a torchrun process's GPU) picks the card for `auto` and `cuda`; without it they
    mean torch's current CUDA device. `cpu` is always allowed; every CUDA choice needs a CUDA torch
    that sees the card."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    index: int | None = local_rank
    if name.startswith("cuda:") and name[5:].isdigit():
        index = int(name[5:])
    elif name != "cuda":
        raise ConfigError(f"--device {name!r} is not allowed; choose auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise ConfigError(f"--device {name} asked for, but this torch sees no CUDA device; use --device cpu")
    if index is not None and index >= torch.cuda.device_count():
        raise ConfigError(f"--device {name} asked for CUDA device {index}, but this machine has "
                          f"{torch.cuda.device_count()} (0..{torch.cuda.device_count() - 1})")
    return torch.device("cuda", index) if index is not None else torch.device("cuda")
