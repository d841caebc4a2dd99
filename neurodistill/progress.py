"""Progress bars (tqdm) for long stages: shown on a terminal, silent in logs and CI (the CLI decides)."""

from __future__ import annotations

from collections.abc import Iterable


def progress(it: Iterable, total: int, desc: str, enabled: bool):
    if not enabled:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, total=total, desc=desc, leave=False, dynamic_ncols=True)


_shown = False  # set once by the CLI (a terminal, not CI); library calls stay quiet by default


def show(on: bool) -> None:
    global _shown
    _shown = bool(on)


class Stages:
    """A bar over the named stages of one long call: `with Stages(desc, names) as st: ...; st.next()`."""

    def __init__(self, desc: str, names: list[str]) -> None:
        self.names, self.i, self.bar = names, 0, None
        if _shown:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=len(names), desc=desc, leave=False, dynamic_ncols=True)
            self.bar.set_postfix_str(names[0])

    def next(self) -> None:
        self.i += 1
        if self.bar is not None:
            self.bar.update(1)
            if self.i < len(self.names):
                self.bar.set_postfix_str(self.names[self.i])

    def __enter__(self) -> Stages:
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()
