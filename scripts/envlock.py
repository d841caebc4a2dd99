#!/usr/bin/env python3
"""Install an environment from its lock file, and check that it equals the lock.

    python scripts/envlock.py install requirements/main.lock   # make demo / make test
    python scripts/envlock.py check requirements/main.lock     # make, .ci/run, tests

Run it with the environment's own interpreter. It needs only the standard library and pip: a
fresh venv has nothing else, and the Lava environment (Python 3.10) cannot import neurodistill.

`install` makes the environment equal the lock: every entry whose marker holds is installed with
`--no-deps --require-hashes`, so pip resolves nothing and takes no release the lock did not name;
what is installed but not locked is removed. The large CUDA wheels (torch, triton and NVIDIA's
libraries, ~2.7 GiB) go one pip call each, because pip keeps every wheel it downloaded until its
command ends: one call for everything held them all at once beside the unpacked files, which is
what ran a small CI disk out of space.

`check` fails with one line per difference (a locked package missing or at another version, an
installed package the lock does not name) and when `pip check` finds a broken requirement.
"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

# Installed beside the locked packages: pip is the installer itself (a venv seeds its own), and
# neurodistill is installed from the working tree with --no-deps after the lock.
NOT_LOCKED = {"pip", "neurodistill"}
# Requirements the lock leaves out on purpose (uv's --no-emit-package, see the Makefile): pip
# check may report them missing, and nothing else.
LEFT_OUT = {"samna"}
HEAVY = re.compile(r"^(torch|triton|nvidia-.*|cuda-.*)$")


@dataclass(frozen=True)
class Entry:
    name: str  # PEP 503 normalised
    version: str
    marker: str | None
    text: str  # the requirement with its hashes, as a requirements-file line


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_lock(path: Path) -> list[Entry]:
    """The entries of a `uv pip compile` lock: `name==version[ ; marker]` plus `--hash` lines."""
    entries = []
    logical = []
    for raw in path.read_text().splitlines():
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        logical.append(line.rstrip("\\").strip())
        if line.endswith("\\"):
            continue
        text = " ".join(logical)
        logical = []
        req = text.split(" --hash", 1)[0].strip()
        spec, _, marker = req.partition(";")
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*==\s*(\S+)", spec.strip())
        if m is None:
            raise SystemExit(f"error: {path}: '{req}' is not a 'name==version' pin; regenerate it with 'make lock'")
        entries.append(Entry(normalise(m.group(1)), m.group(3), marker.strip() or None, text))
    if not entries:
        raise SystemExit(f"error: {path} names no package; regenerate it with 'make lock'")
    return entries


def _marker_holds(marker: str | None) -> bool:
    if marker is None:
        return True
    try:
        from packaging.markers import Marker
    except ImportError:  # a fresh venv: only pip's own copy is there
        from pip._vendor.packaging.markers import Marker
    return Marker(marker).evaluate()


def wanted(entries: list[Entry]) -> dict[str, Entry]:
    """The entries for this interpreter and platform (a universal lock forks on markers)."""
    return {e.name: e for e in entries if _marker_holds(e.marker)}


def installed() -> dict[str, str]:
    out = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:  # a half-removed distribution leaves metadata without a name
            out[normalise(name)] = dist.version
    return out


def differences(lock: Path) -> list[str]:
    want = wanted(parse_lock(lock))
    have = installed()
    problems = []
    for name, e in sorted(want.items()):
        if name not in have:
            problems.append(f"{name}=={e.version} is locked but not installed")
        elif have[name] != e.version:
            problems.append(f"{name} is {have[name]}, the lock says {e.version}")
    for name in sorted(set(have) - set(want) - NOT_LOCKED):
        problems.append(f"{name}=={have[name]} is installed but not in {lock.name}")
    return problems


def _pip(*args: str) -> None:
    cmd = [sys.executable, "-m", "pip", *args]
    res = subprocess.run(cmd)
    if res.returncode != 0:
        raise SystemExit(f"error: '{' '.join(cmd[2:])}' failed (exit {res.returncode}); see pip's output above")


def _install(entries: list[Entry], what: str) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".txt", prefix="envlock-") as f:
        f.write("\n".join(e.text for e in entries) + "\n")
        f.flush()
        print(f"pip install {what}", flush=True)
        _pip("install", "--quiet", "--no-deps", "--require-hashes", "-r", f.name)


def install(lock: Path) -> None:
    want = wanted(parse_lock(lock))
    have = installed()
    todo = [e for e in want.values() if have.get(e.name) != e.version]
    for e in (e for e in todo if HEAVY.match(e.name)):
        _install([e], f"{e.name}=={e.version}")
    rest = [e for e in todo if not HEAVY.match(e.name)]
    if rest:
        _install(rest, f"{len(rest)} locked packages")
    extra = sorted(set(installed()) - set(want) - NOT_LOCKED)
    if extra:
        print(f"pip uninstall (not in {lock.name}): {' '.join(extra)}", flush=True)
        _pip("uninstall", "--quiet", "--yes", *extra)


def _left_out(pip_check_line: str) -> bool:
    """'sinabs 2.0.3 requires samna, which is not installed.' for a package in LEFT_OUT."""
    m = re.match(r"^\S+ \S+ requires (\S+), which is not installed\.$", pip_check_line.strip())
    return bool(m) and normalise(m.group(1)) in LEFT_OUT


def check(lock: Path) -> None:
    problems = differences(lock)
    res = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    if res.returncode != 0:
        problems += [f"pip check: {line}" for line in res.stdout.splitlines() if line.strip() and not _left_out(line)]
    if problems:
        for p in problems:
            print(f"error: {sys.prefix}: {p}", file=sys.stderr)
        raise SystemExit(f"error: the environment at {sys.prefix} differs from {lock}: run 'make' again to reinstall it")
    print(f"{sys.prefix} equals {lock} ({len(wanted(parse_lock(lock)))} packages), pip check clean")


def main(argv: list[str]) -> None:
    if len(argv) != 2 or argv[0] not in ("install", "check"):
        raise SystemExit("usage: envlock.py install|check LOCK")
    lock = Path(argv[1])
    if not lock.is_file():
        raise SystemExit(f"error: no lock file {lock}; 'make lock' writes it")
    (install if argv[0] == "install" else check)(lock)


if __name__ == "__main__":
    main(sys.argv[1:])
