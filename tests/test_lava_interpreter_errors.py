"""Every problem with the Lava interpreter is one `error:` line, exit 2, before any work starts."""

from __future__ import annotations

import sys

import pytest

from .conftest import ROOT
from .test_cli_errors import assert_user_error, invoke

TINY = ROOT / "tests" / "fixtures" / "lava-dl" / "tiny.net"


@pytest.fixture
def inputs(tmp_path):
    import numpy as np

    np.savez(tmp_path / "in.npz", bias=np.zeros((1, 3, 16, 16), np.int64), steps=2)
    return tmp_path / "in.npz"


@pytest.mark.parametrize("target", ["bundle", "net"])
def test_missing_interpreter(target, sim_bundle, inputs, tmp_path):
    src = [str(sim_bundle)] if target == "bundle" else [str(TINY), "--inputs", str(inputs)]
    res = invoke("simulate", *src, "--backend", "lava", "--lava-python", "/nonexistent/python", "--out", str(tmp_path / "o"))
    assert_user_error(res, "Lava interpreter '/nonexistent/python' (--lava-python) does not exist", "make lava-env")
    assert not (tmp_path / "o").exists()


def test_interpreter_without_lava(sim_bundle, tmp_path):
    """This test's own Python (3.11, no lava): named, with its version and the import error."""
    res = invoke("simulate", str(sim_bundle), "--backend", "lava", "--lava-python", sys.executable, "--out", str(tmp_path / "o"))
    line = assert_user_error(res, "cannot import lava", f"Python {sys.version_info.major}.{sys.version_info.minor}",
                             "lava-nc 0.10.0 needs 3.10", "ModuleNotFoundError")
    assert sys.executable in line and not (tmp_path / "o").exists()


def test_not_a_program(sim_bundle, tmp_path, monkeypatch):
    text = tmp_path / "python"
    text.write_text("not a program\n")
    monkeypatch.setenv("NEURODISTILL_LAVA_PYTHON", str(text))
    res = invoke("simulate", str(sim_bundle), "--backend", "lava", "--out", str(tmp_path / "o"))
    assert_user_error(res, f"Lava interpreter {str(text)!r} (NEURODISTILL_LAVA_PYTHON) is not an executable file")
