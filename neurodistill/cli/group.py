"""The `neurodistill` click group: user errors (ours, typed in `errors.py`, and click's usage
errors) print one line, `error: ...`, and exit with status 2; anything else keeps its traceback."""

from __future__ import annotations

import logging
import os
import sys

import click

from .. import __version__
from ..errors import NeurodistillError


class CLI(click.Group):
    """A click group whose user errors are one line and exit status 2."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.UsageError as e:
            hint = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
            click.echo(f"error: {e.format_message()}{hint}", err=True)
            sys.exit(2)
        except click.ClickException as e:
            click.echo(f"error: {e.format_message()}", err=True)
            sys.exit(2)
        except NeurodistillError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(e.exit_code)
        except click.exceptions.Abort:
            click.echo("aborted", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s", stream=sys.stderr, force=True)


def show_progress() -> bool:
    # Bars on a terminal only: logs and CI get one line per epoch instead.
    return sys.stderr.isatty() and not os.environ.get("CI")


@click.group(cls=CLI, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="neurodistill")
@click.option("-v", "--verbose", is_flag=True, help="debug logging")
def main(verbose: bool) -> None:
    """neurodistill: distil, export to Loihi 2, simulate and report spiking neural networks."""
    _setup_logging(verbose)
    from ..progress import show

    show(show_progress())


