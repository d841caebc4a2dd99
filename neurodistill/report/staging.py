"""All-or-nothing writing of a report's files (the output rule of neurodistill.io.output)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..io.output import write_dir


def write_staged(out: Path, fill: Callable[[Path], list[str]], stale: tuple[str, ...] = (),
                 overwrite: bool = False) -> list[str]:
    """`fill(stage)` writes files into a staging directory and returns their names; only then are
    they put at `out`, so a failure leaves `out` as it was. The report's own earlier files (`stale`
    and those its marker lists) that this run did not write are removed, so a directory never mixes
    the files of two reports; a user's other files stay."""
    return write_dir(out, overwrite, fill, "report", "the report", owned=stale)
