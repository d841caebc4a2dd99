"""The committed locks: what make installs, that they fit pyproject's ranges, and that both
environments equal them (versions as installed, pip check clean)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tomllib

import pytest
from packaging.requirements import Requirement

from .conftest import ROOT

MAIN_LOCK = ROOT / "requirements" / "main.lock"
LAVA_LOCK = ROOT / "requirements" / "lava.lock"
ENVLOCK = ROOT / "scripts" / "envlock.py"


def _envlock():
    spec = importlib.util.spec_from_file_location("envlock", ENVLOCK)
    module = importlib.util.module_from_spec(spec)
    sys.modules["envlock"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


envlock = _envlock()


def _by_name(lock):
    out = {}
    for e in envlock.parse_lock(lock):
        out.setdefault(e.name, []).append(e)
    return out


def _requirements(lines):
    return [Requirement(line) for line in lines if line.split("#", 1)[0].strip()]


def _assert_lock_admits(lock, reqs, where):
    pins = _by_name(lock)
    for req in reqs:
        name = envlock.normalise(req.name)
        assert name in pins, f"{where} asks for {req}, which {lock.name} does not lock"
        for e in pins[name]:  # a universal lock may fork one name by Python version
            assert req.specifier.contains(e.version, prereleases=True), f"{lock.name} locks {name}=={e.version}; {where} asks {req}"


def test_main_lock_satisfies_pyprojects_ranges():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = _requirements(project["dependencies"] + project["optional-dependencies"]["dev"] + project["optional-dependencies"]["interop"])
    assert len(reqs) >= 15
    _assert_lock_admits(MAIN_LOCK, reqs, "pyproject.toml")
    _assert_lock_admits(MAIN_LOCK, _requirements((ROOT / "requirements" / "constraints.txt").read_text().splitlines()),
                        "requirements/constraints.txt")


def test_lava_lock_satisfies_its_input():
    reqs = _requirements((ROOT / "requirements" / "lava.in").read_text().splitlines())
    assert {r.name for r in reqs} >= {"lava-nc", "lava-dl"}
    _assert_lock_admits(LAVA_LOCK, reqs, "requirements/lava.in")
    pins = _by_name(LAVA_LOCK)
    assert [e.version for e in pins["lava-nc"]] == ["0.10.0"] and [e.version for e in pins["lava-dl"]] == ["0.6.0"]


@pytest.mark.parametrize("lock", [MAIN_LOCK, LAVA_LOCK], ids=["main", "lava"])
def test_every_lock_entry_is_pinned_with_hashes(lock):
    entries = envlock.parse_lock(lock)
    assert len(entries) > 40
    for e in entries:
        assert e.text.count("--hash=sha256:") >= 1, f"{e.name} has no hash in {lock.name}"


def test_torch_family_is_locked_to_one_release():
    """torchaudio's metadata does not tie it to its torch release (the failure this lock fixes)."""
    pins = {n: [e.version for e in es] for n, es in _by_name(MAIN_LOCK).items()}
    assert pins["torch"] == pins["torchaudio"] == ["2.11.0"]
    assert pins["torchvision"] == ["0.26.0"]


def test_parse_lock_reads_continuations_markers_and_comments(tmp_path):
    lock = tmp_path / "x.lock"
    lock.write_text(
        "# header\n"
        "Foo_Bar==1.2 ; sys_platform == 'win32' \\\n"
        "    --hash=sha256:aa \\\n    --hash=sha256:bb\n    # via baz\n"
        "qux==3.0\n"
    )
    a, b = envlock.parse_lock(lock)
    assert (a.name, a.version, a.marker) == ("foo-bar", "1.2", "sys_platform == 'win32'")
    assert a.text == "Foo_Bar==1.2 ; sys_platform == 'win32' --hash=sha256:aa --hash=sha256:bb"
    assert (b.name, b.version, b.marker) == ("qux", "3.0", None)
    assert set(envlock.wanted([a, b])) == ({"qux"} if sys.platform != "win32" else {"foo-bar", "qux"})
    lock.write_text("foo>=1.0\n")
    with pytest.raises(SystemExit, match="not a 'name==version' pin"):
        envlock.parse_lock(lock)


def test_differences_name_what_drifted(tmp_path):
    """The check that guards both environments must see a wrong version, a missing and an extra package."""
    lock = tmp_path / "drift.lock"
    have = envlock.installed()
    kept = sorted(set(have) - envlock.NOT_LOCKED - {"numpy", "click"})
    lines = [f"{n}=={have[n]}" for n in kept]
    lines += ["numpy==0.0.1", "surely-not-installed==1.0"]  # click left out: installed, not locked
    lock.write_text("\n".join(lines) + "\n")
    assert envlock.differences(lock) == [
        f"numpy is {have['numpy']}, the lock says 0.0.1",
        "surely-not-installed==1.0 is locked but not installed",
        f"click=={have['click']} is installed but not in drift.lock",
    ]


def _check(python, lock):
    return subprocess.run([python, str(ENVLOCK), "check", str(lock)], capture_output=True, text=True, timeout=300)


def test_main_environment_equals_its_lock():
    res = _check(sys.executable, MAIN_LOCK)
    assert res.returncode == 0, res.stderr
    assert "pip check clean" in res.stdout


@pytest.mark.lava
def test_lava_environment_equals_its_lock(lava_py):
    res = _check(lava_py, LAVA_LOCK)
    assert res.returncode == 0, res.stderr
    assert "pip check clean" in res.stdout


def test_check_fails_on_the_wrong_environment():
    """The main interpreter is not the Lava environment: the check must say so, not pass."""
    res = _check(sys.executable, LAVA_LOCK)
    assert res.returncode == 1
    assert "lava-nc==0.10.0 is locked but not installed" in res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("error: the environment at ")


def test_samna_is_left_out_and_only_it_is_forgiven():
    """samna's PyPI stub pip-installs another build when imported; the lock leaves it out and the
    check forgives exactly that one missing requirement."""
    assert "samna" not in _by_name(MAIN_LOCK)
    assert "sinabs" in _by_name(MAIN_LOCK)
    assert importlib.util.find_spec("samna") is None
    assert envlock._left_out("sinabs 2.0.3 requires samna, which is not installed.")
    assert not envlock._left_out("sinabs 2.0.3 requires nirtorch, which is not installed.")
    assert not envlock._left_out("sinabs 2.0.3 has requirement samna>=0.33, but you have samna 0.1.")
