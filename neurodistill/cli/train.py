"""`neurodistill train` (teachers and students) and `neurodistill models`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .group import main, show_progress
from .train_options import config_overrides, with_train_options


@main.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML or TOML config; flags override it")
@click.option("--ablation", type=click.Choice(["kd", "ts_kl", "ts_ce", "ts_both", "ts_both_er"]),
              help="tser: one of TSER's Table 3 configurations (sets the separate_* switches and lam)")
@click.option("--resume", is_flag=True, help="continue the run in --out from its last.pt")
@click.option("--overwrite", is_flag=True, help="replace a run that already exists in --out")
@with_train_options
def train(config_file: str | None, ablation: str | None, resume: bool, overwrite: bool, **kwargs: Any) -> None:
    """Train an ANN teacher or distil a spiking student.

    \b
    Teacher:  neurodistill train --model ann_digits --out runs/teacher
    Student:  neurodistill train --model snn_digits --method tser --teacher runs/teacher/best.pt --out runs/student
    Several processes: torchrun --nproc_per_node 2 -m neurodistill.cli train ...
    """
    from ..config import read_config_file, resolve
    from ..distributed import launched_as_main
    from ..train import train as run_train

    overrides = config_overrides(kwargs)
    if ablation:
        from ..distill import TSER_ABLATION

        overrides.setdefault("loss", {}).update(TSER_ABLATION[ablation])
    file_values = read_config_file(config_file) if config_file else {}
    where = f"config file {config_file!r}" if config_file else "options"
    cfg = resolve(file_values, overrides, where)
    if resume and not config_file and (Path(cfg.out) / "config.yaml").is_file():
        from ..io.files import inside

        # Resuming: the run's own resolved config, with only the flags given now on top.
        run_config = inside(cfg.out, "config.yaml", "--resume: run file")
        cfg = resolve(read_config_file(run_config), overrides, f"{cfg.out}/config.yaml")
    summary = run_train(cfg, resume=resume, overwrite=overwrite, progress=show_progress())
    if not launched_as_main():  # torchrun: rank 0 prints the one summary line
        return
    click.echo(f"test accuracy {summary['test_acc']:.4f} after {summary['epochs']} epochs (last.pt; best.pt, "
               f"epoch {summary['best_epoch']} chosen on {summary['selection']['split']}: {summary['best_test_acc']:.4f}) "
               f"({summary['train_seconds']:.1f} s); run in {cfg.out}")


@main.command()
def models() -> None:
    """List the registered models (spiking students and their ANN twins)."""
    from ..models import list_models

    specs = list_models()
    width = max(len(s.name) for s in specs)
    click.echo(f"{'name':<{width}}  {'kind':<7}  {'twin':<{width}}  description")
    for s in specs:
        click.echo(f"{s.name:<{width}}  {'spiking' if s.spiking else 'ANN':<7}  {s.twin:<{width}}  {s.description}")
