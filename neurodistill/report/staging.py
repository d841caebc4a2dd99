"""All-or-nothing writing of a report's files into an existing or new directory."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def write_staged(out: Path, fill: Callable[[Path], list[str]], stale: tuple[str, ...] = ()) -> list[str]:
    """`fill(stage)` writes files into a staging directory inside `out` and returns their names;
    only then are they moved into `out`, so a failure leaves `out` as it was (and removes it if
    this call created it). Names in `stale` that this run did not write are removed, so a
    directory never mixes the files of two reports."""
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".report.", dir=out))
    try:
        files = fill(stage)
        for f in files:
            os.replace(stage / f, out / f)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    shutil.rmtree(stage, ignore_errors=True)
    for name in stale:
        if name not in files:
            (out / name).unlink(missing_ok=True)
    return files
