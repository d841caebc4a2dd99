"""Progress bars (tqdm) for long stages: shown on a terminal, silent in logs and CI (the CLI decides)."""

from __future__ import annotations

from collections.abc import Iterable


def progress(it: Iterable, total: int, desc: str, enabled: bool):
    if not enabled:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, total=total, desc=desc, leave=False, dynamic_ncols=True)
