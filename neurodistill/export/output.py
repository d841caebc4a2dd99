"""Where an export writes: the output rule checked before any work, then one staged directory renamed into place."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..io.output import check_out
from ..io.output import write_dir as io_write_dir


def prepare_out(out: Path, overwrite: bool) -> None:
    """The output rule (neurodistill.io.output), checked before any work starts."""
    check_out(out, overwrite, "the export")


def write_dir(out: Path, overwrite: bool, fill: Callable[[Path], Any]) -> Any:
    """Run `fill(stage)`, then put its files at `out` (the tool's own earlier files replaced with --overwrite)."""
    return io_write_dir(out, overwrite, fill, "export", "the export")
