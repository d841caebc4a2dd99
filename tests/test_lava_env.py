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


def test_staged_cuda_pins_are_torchs_own(lava_py):
    """requirements-lava-cuda.txt pins what the Lava environment's torch itself requires: a pin that
    drifted from torch's metadata would make the last pip call reinstall (and hold) a second copy."""
    from packaging.requirements import Requirement

    code = (
        "import importlib.metadata as m, json\n"
        "print(json.dumps({'torch': m.requires('torch'), "
        "'installed': {d.metadata['Name'].lower(): d.version for d in m.distributions()}}))"
    )
    res = subprocess.run([lava_py, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    import json

    info = json.loads(res.stdout)
    torch_pins = {}
    for line in info["torch"]:
        req = Requirement(line)
        if req.marker is None or "extra" not in str(req.marker):
            torch_pins[req.name.lower()] = str(req.specifier)
    staged = [
        Requirement(line)
        for line in (ROOT / "requirements-lava-cuda.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert len(staged) >= 12
    for req in staged:
        name = req.name.lower()
        assert name in info["installed"], f"{name} is staged but not installed"
        if name in torch_pins:
            assert str(req.specifier) == torch_pins[name], name
        assert req.specifier.contains(info["installed"][name]), name
    # every CUDA library torch pins is staged, so the final call downloads none of them
    cuda = {n for n in torch_pins if n.startswith("nvidia-") or n == "triton"}
    assert cuda <= {r.name.lower() for r in staged}
