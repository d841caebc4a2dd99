"""Command line: one click command per stage; each parses options and calls one stage function.

`group` holds the `neurodistill` group and its error rule; each other module adds its commands.
"""

from . import demo, export, report, simulate, train  # noqa: F401 - each registers its commands on `main`
from .group import main
from .train_options import TRAIN_OPTIONS

__all__ = ["TRAIN_OPTIONS", "main"]
