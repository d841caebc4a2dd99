"""Progress bars on a terminal (a real pseudo-terminal), none in logs or CI."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios

import pytest

from .conftest import ROOT


def _on_a_terminal(*args: str, ci: bool = False) -> str:
    """Run the CLI with stderr on a pseudo-terminal; return what it wrote there."""
    master, slave = pty.openpty()
    # a terminal of 120 columns: tqdm draws nothing on one of width 0 (a fresh pty's size)
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = {k: v for k, v in os.environ.items() if k != "CI"} | ({"CI": "true"} if ci else {})
    proc = subprocess.Popen([sys.executable, "-m", "neurodistill.cli", *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=slave, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # the other end closed
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(timeout=600) == 0, b"".join(chunks).decode(errors="replace")[-2000:]
    os.close(master)
    return b"".join(chunks).decode(errors="replace")


@pytest.fixture(scope="module")
def ckpt(sim_bundle):
    import json

    return json.loads((sim_bundle / "manifest.json").read_text())["source"]


def test_export_and_simulate_show_bars_on_a_terminal(ckpt, tmp_path):
    err = _on_a_terminal("export", ckpt, "--out", str(tmp_path / "b"), "--calib", "32")
    assert "export loihi2" in err and "%|" in err
    err = _on_a_terminal("simulate", str(tmp_path / "b"), "--samples", "64", "--batch-size", "16", "--out", str(tmp_path / "s"))
    assert "simulate (fxp, 64 samples)" in err and "%|" in err


def test_no_bars_under_ci(ckpt, tmp_path):
    err = _on_a_terminal("export", ckpt, "--out", str(tmp_path / "b"), "--calib", "32", ci=True)
    assert "%|" not in err
