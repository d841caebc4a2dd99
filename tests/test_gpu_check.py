"""`make gpu-check` (scripts/gpu_check.py) on a machine without CUDA: a one-line refusal, nothing written.
What it runs on a GPU is listed in its docstring; the CUDA-only tests it selects carry the `gpu` marker."""

from __future__ import annotations

import os
import subprocess
import sys

from .conftest import ROOT

SCRIPT = ROOT / "scripts" / "gpu_check.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no GPU, even on a machine that has one
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=120)


def test_refuses_without_cuda():
    before = sorted((ROOT / "benchmarks" / "results").iterdir())
    res = _run()
    assert res.returncode == 2 and res.stderr.strip() == "error: make gpu-check needs a CUDA device, and this torch sees none"
    assert sorted((ROOT / "benchmarks" / "results").iterdir()) == before


def test_unknown_step_is_refused():
    res = _run("--only", "tests,warp")
    assert res.returncode == 2 and "--only warp is not a step; choose from tests, train_step" in res.stderr


def test_every_cuda_only_test_is_selected_by_the_gpu_marker():
    """A test skipped for want of CUDA but not marked `gpu` would never run in gpu-check."""
    import re

    for path in sorted((ROOT / "tests").glob("test_*.py")):
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if re.match(r"@pytest\.mark\.skipif\(.*cuda\.is_available\(\)", line):
                decorators = lines[max(0, i - 3):i + 3]
                assert any("@pytest.mark.gpu" in d for d in decorators), f"{path.name}:{i + 1} lacks @pytest.mark.gpu"
