"""The wheel ships what the package reads at run time (DESIGN.md: hw_profiles inside the wheel)."""

from __future__ import annotations

import subprocess
import sys
import zipfile

from .conftest import ROOT


def test_wheel_contains_profiles_limits_and_lava_scripts(tmp_path):
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path),
                          str(ROOT)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    names = zipfile.ZipFile(next(tmp_path.glob("neurodistill-*.whl"))).namelist()
    shipped = {p.name for p in (ROOT / "hw_profiles").glob("*.toml")}
    assert shipped and {f"neurodistill/hw_profiles/{n}" for n in shipped} <= set(names)
    assert "neurodistill/export/targets/loihi2.toml" in names
    assert {"neurodistill/sim/lava_scripts/run_netx.py", "neurodistill/sim/lava_scripts/smoke.py"} <= set(names)
    assert not any(n.startswith(("tests/", "benchmarks/")) for n in names)
