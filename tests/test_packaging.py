"""The wheel ships what the package reads at run time (docs/design.md#layout: hw_profiles inside the wheel)."""

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
    # every script of the directory, and by name those the Lava backends and `make lava-env` run
    scripts = {f"neurodistill/sim/lava_scripts/{p.name}" for p in (ROOT / "neurodistill" / "sim" / "lava_scripts").glob("*.py")}
    needed = {f"neurodistill/sim/lava_scripts/{n}" for n in ("run_graph.py", "run_netx.py", "run_netx_spikes.py", "smoke.py")}
    assert needed <= scripts, f"scripts the backends run are missing from the source tree: {sorted(needed - scripts)}"
    assert scripts - set(names) == set(), f"lava scripts missing from the wheel: {sorted(scripts - set(names))}"
    from neurodistill.sim import run, run_net  # the paths the backends really launch

    for runner in (run.RUNNER, run.GRAPH_RUNNER, run_net.RUNNER):
        assert f"neurodistill/sim/lava_scripts/{runner.name}" in names, runner.name
    assert not any(n.startswith(("tests/", "benchmarks/")) for n in names)
