"""`neurodistill demo`: the whole chain on the built-in digits dataset."""

from __future__ import annotations

from pathlib import Path

import click

from .group import main, show_progress


@main.command()
@click.option("--out", type=click.Path(), default="runs/demo", show_default=True, help="demo directory")
@click.option("--seed", type=int, default=0, show_default=True, help="random seed")
def demo(out: str, seed: int) -> None:
    """The whole chain on the built-in digits dataset, no download.

    Trains an ANN teacher, then a spiking student (T=4) with TSER; each stage writes its
    files into a subdirectory of OUT.
    """
    from ..demo import run_demo

    result = run_demo(Path(out), seed=seed, progress=show_progress())
    click.echo(result)
