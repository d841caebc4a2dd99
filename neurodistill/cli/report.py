"""`neurodistill report` (simulations priced with hardware profiles) and `neurodistill profiles`."""

from __future__ import annotations

from pathlib import Path

import click

from .group import main


@main.command()
@click.argument("simdirs", metavar="SIMDIR...", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--profile", "profile_names", multiple=True, default=("cmos45-fp32", "cmos45-int8", "loihi", "loihi2"),
              show_default=True, help="hardware profile name or .toml path; repeat for several")
@click.option("--table", "table", type=click.Choice(["models", "methods"]), default="models", show_default=True,
              help="models: the full report of simulations; methods: one row per training run (run or simulation "
                   "directories): accuracy float/deployed/per step, OPs, ACs, MACs, energy, train time per batch, FR")
@click.option("--out", type=click.Path(), required=True, help="report directory")
@click.option("--overwrite", is_flag=True, help="replace the report an existing --out holds")
def report(simdirs: tuple[str, ...], profile_names: tuple[str, ...], table: str, out: str, overwrite: bool) -> None:
    """Price simulations with hardware profiles; write JSON, CSV, Markdown, LaTeX and figures.

    With --table methods, SIMDIR may also be a training run directory (summary.json); a
    simulation finds its run through its bundle's manifest."""
    from ..io.output import check_out
    from ..report.report import build, read_simulation, write

    check_out(Path(out), overwrite, "the report")
    if table == "methods":
        from ..report import methods

        res = methods.write([Path(d) for d in simdirs], list(profile_names), Path(out), overwrite=overwrite)
        click.echo(f"methods table in {out}: {len(res['rows'])} runs, {len(res['files'])} files "
                   f"(methods.md, methods.tex, methods.csv, figures); profiles: {', '.join(res['profiles'])}")
        return

    rep = build([read_simulation(Path(d)) for d in simdirs], list(profile_names))
    files = write(rep, Path(out), overwrite=overwrite)
    click.echo(f"report in {out}: {len(files)} files (report.md, report.tex, figures); profiles: {', '.join(rep['profiles'])}")


@main.group()
def profiles() -> None:
    """Hardware profiles for energy pricing (hw_profiles/*.toml)."""


@profiles.command("list")
def profiles_list() -> None:
    """List the shipped profiles."""
    from ..report.profiles import list_table

    click.echo(list_table())


@profiles.command("show")
@click.argument("name")
def profiles_show(name: str) -> None:
    """Show one profile (a shipped name or a .toml path): every constant with its source."""
    from ..report.profiles import load_profile, show_table

    click.echo(show_table(load_profile(name)))
