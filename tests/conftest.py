"""Shared fixtures: the Lava interpreter, a trained digits teacher, CLI helpers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def lava_python() -> str | None:
    """The Lava environment's interpreter: NEURODISTILL_LAVA_PYTHON, else .venv-lava."""
    env = os.environ.get("NEURODISTILL_LAVA_PYTHON")
    if env:
        return env
    p = ROOT / ".venv-lava" / "bin" / "python"
    return str(p) if p.exists() else None


@pytest.fixture(scope="session")
def lava_py() -> str:
    py = lava_python()
    if py is None:
        if os.environ.get("CI"):
            pytest.fail("CI=true but the Lava environment is missing: run 'make lava-env'")
        pytest.skip("Lava environment missing (.venv-lava); run 'make lava-env'")
    return py


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600, env_extra: dict | None = None):
    """Run `neurodistill ARGS` in a fresh interpreter (for kills, torchrun and real exit codes)."""
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "neurodistill.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )


@pytest.fixture(scope="session")
def digits_teacher(tmp_path_factory) -> Path:
    """An ANN digits teacher (about 2 s on 2 CPU cores), shared by the tests that need one."""
    from neurodistill.config import resolve
    from neurodistill.train import train

    out = tmp_path_factory.mktemp("teacher")
    train(resolve({"model": "ann_digits", "epochs": 30, "out": str(out)}, {}))
    return out / "best.pt"


@pytest.fixture(scope="session")
def sim_bundle(tmp_path_factory) -> Path:
    """A trained (8 epochs) and exported digits Loihi 2 bundle, shared by simulate and report tests."""
    from click.testing import CliRunner

    from neurodistill.cli import main
    from neurodistill.config import resolve
    from neurodistill.train import train

    d = tmp_path_factory.mktemp("sim")
    train(resolve({"model": "snn_digits", "epochs": 8, "out": str(d / "run")}, {}))
    res = CliRunner().invoke(main, ["export", str(d / "run" / "best.pt"), "--out", str(d / "bundle"), "--calib", "128"])
    assert res.exit_code == 0, res.output
    return d / "bundle"
