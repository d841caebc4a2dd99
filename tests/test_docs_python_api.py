"""The Python example of docs/export.md runs as written (export, simulate, NIR, ONNX from a module)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from .conftest import ROOT


def test_export_md_python_example_runs(tmp_path):
    text = (ROOT / "docs" / "export.md").read_text()
    code = re.search(r"and the bundle then simulates on your data:\n\n```python\n(.*?)```", text, re.S).group(1)
    (tmp_path / "example.py").write_text(code)
    res = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    sim = json.loads((tmp_path / "sims" / "mine" / "simulation.json").read_text())
    manifest = json.loads((tmp_path / "bundles" / "mine" / "manifest.json").read_text())
    assert sim["samples"] == 64 and sim["accuracy"] == manifest["accuracy_quantized"]  # same samples, same fixed point
    assert (tmp_path / "mine.nir").stat().st_size > 0 and (tmp_path / "mine.onnx").stat().st_size > 0
