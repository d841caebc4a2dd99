"""The run directory: checking and making it, and the files train writes there beside the checkpoints."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, ConfigError
from ..io.files import inside, kind_of
from ..io.output import check_out, remove_own, write_marker
from .checkpoint import atomic_write

TRAIN_FILES = ("last.pt", "best.pt", "config.yaml", "metrics.csv", "summary.json")  # what train writes


def check_out_dir(out: Path, resume: bool, overwrite: bool) -> Path:
    """The run directory after the output rule (neurodistill.io.output), checked with no side
    effect: --resume needs its last.pt; a new run needs a missing or empty directory, or --overwrite."""
    if resume:
        kind = kind_of(out)
        if kind not in ("missing", "a directory"):
            raise ConfigError(f"--out {str(out)!r} is {kind}, not a run directory")
        last = inside(out, "last.pt", "--resume: run file")
        if not last.is_file():
            raise CheckpointError(f"--resume: there is no {str(last)!r} to resume from; run without --resume first")
        return out.resolve() if out.is_symlink() else out
    if (out / "last.pt").exists() and not overwrite:
        raise ConfigError(
            f"--out {str(out)!r} already holds a run (last.pt); pass --resume to continue it, "
            "--overwrite to replace it, or choose another --out"
        )
    return check_out(out, overwrite, "the run")


def create_out_dir(out: Path, resume: bool, overwrite: bool) -> None:
    """Make the run directory, once everything the run needs has loaded: with --overwrite the
    files an earlier run wrote there are removed first (a user's other files stay)."""
    if not resume:
        check_out(out, overwrite, "the run")
        if out.is_dir():
            remove_own(out, TRAIN_FILES)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(".*.tmp"):
        stale.unlink()  # left by a process killed while writing; the real file is intact
    if not resume:
        write_marker(out, "train", list(TRAIN_FILES))


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    atomic_write(path, lambda tmp: Path(tmp).write_text(buf.getvalue()))


def write_json(path: Path, obj: Any) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=2) + "\n"))


def write_config(out: Path, cfg) -> None:
    """config.yaml: the run's resolved config (see `run_config`)."""
    atomic_write(out / "config.yaml", lambda tmp: Path(tmp).write_text(to_yaml(run_config(cfg))))


def run_config(cfg) -> dict[str, Any]:
    """The resolved config as config.yaml records it: paths absolute, so --resume works from anywhere."""
    d = cfg.to_dict()
    for key in ("teacher", "init", "data_dir", "out"):
        if d.get(key):
            d[key] = str(Path(d[key]).absolute())
    return d


def to_yaml(d: dict) -> str:
    import yaml

    return yaml.safe_dump(d, sort_keys=False)


def open_tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("tensorboard = true needs the tensorboard package: pip install 'neurodistill[tensorboard]'") from None
    return SummaryWriter(log_dir=str(out / "tb"))
