"""The set-up scripts the Makefile calls: free-space check and the Python 3.10 finder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from .conftest import ROOT

CHECK = ROOT / "scripts" / "check-disk.sh"
FIND = ROOT / "scripts" / "find-python310.sh"


def _run(args, env_extra=None, env=None):
    if env is None:  # the caller's SKIP_DISK_CHECK must not leak into the checks below
        env = {k: v for k, v in os.environ.items() if k != "SKIP_DISK_CHECK"} | (env_extra or {})
    return subprocess.run(["bash", *map(str, args)], capture_output=True, text=True, timeout=60, env=env)


def _free_gib(path) -> float:
    return shutil.disk_usage(path).free / 2**30


def test_check_disk_refuses_with_the_numbers(tmp_path):
    res = _run([CHECK, tmp_path, 10**7, "the test environment"])
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: the test environment needs about 10000000 GiB free")
    free = float(lines[0].split("; ")[1].split(" GiB")[0])
    assert abs(free - _free_gib(tmp_path)) < 1.0


def test_check_disk_passes_when_there_is_room_and_can_be_skipped(tmp_path):
    res = _run([CHECK, tmp_path, 0.001, "x"])
    assert res.returncode == 0 and res.stdout.startswith("disk: ")
    res = _run([CHECK, tmp_path, 10**7, "x"], env_extra={"SKIP_DISK_CHECK": "1"})
    assert res.returncode == 0 and res.stderr == ""


def test_find_python310_rejects_a_wrong_lava_python():
    res = _run([FIND], env_extra={"LAVA_PYTHON": sys.executable})  # this is 3.11+
    assert res.returncode == 1
    assert "is not a working Python 3.10 interpreter" in res.stderr


def test_find_python310_explains_what_to_install_when_none(tmp_path):
    # A PATH holding only the tools the script uses, and a HOME without pyenv: no Python 3.10 anywhere.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "cat", "ls", "sort"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path)}
    res = subprocess.run([str(bin_dir / "bash"), str(FIND)], capture_output=True, text=True, timeout=60, env=env)
    assert res.returncode == 1
    assert "No Python 3.10 found" in res.stderr and "LAVA_PYTHON=" in res.stderr


@pytest.mark.lava
def test_find_python310_accepts_the_lava_interpreter(lava_py):
    res = _run([FIND], env_extra={"LAVA_PYTHON": lava_py})
    assert res.returncode == 0 and res.stdout.strip() == lava_py
