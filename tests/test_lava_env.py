"""The Lava environment (.venv-lava) runs a 2-layer network: required in CI."""

from __future__ import annotations

import subprocess

import pytest

from .conftest import ROOT

pytestmark = pytest.mark.lava


def test_lava_smoke_network_runs(lava_py):
    script = ROOT / "neurodistill" / "sim" / "lava_scripts" / "smoke.py"
    res = subprocess.run([lava_py, str(script)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "lava smoke check ok" in res.stdout


def test_lava_versions(lava_py):
    code = "import importlib.metadata as m, sys; print(sys.version_info[:2], m.version('lava-nc'), m.version('lava-dl'))"
    out = subprocess.run([lava_py, "-c", code], capture_output=True, text=True, timeout=120).stdout.strip()
    assert out == "(3, 10) 0.10.0 0.6.0"
