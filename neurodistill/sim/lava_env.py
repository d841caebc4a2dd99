"""Finding and checking the Lava interpreter (the `.venv-lava` environment, Python 3.10).

`simulate --backend lava` runs our Lava scripts with another Python; every way that can go wrong
(no such file, not a program, another Python, no lava importable) is found before any work starts
and reported as one ConfigError line naming the interpreter, where it came from and what to do.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from ..errors import ConfigError

FIX = ("run 'make lava-env', or pass --lava-python (or set NEURODISTILL_LAVA_PYTHON) to a Python 3.10 with "
       "lava-nc 0.10.0 and lava-dl 0.6.0")
PROBE = ("import sys; print('%d.%d' % sys.version_info[:2], flush=True); "
         "import lava.magma.core.run_configs, lava.lib.dl.netx")
_checked: set[str] = set()


def find_lava_python(explicit: str | None = None) -> tuple[str, str]:
    """(interpreter, where it came from): --lava-python, NEURODISTILL_LAVA_PYTHON, else .venv-lava."""
    if explicit:
        return explicit, "--lava-python"
    env = os.environ.get("NEURODISTILL_LAVA_PYTHON")
    if env:
        return env, "NEURODISTILL_LAVA_PYTHON"
    for root in (Path.cwd(), Path(__file__).resolve().parents[2]):
        py = root / ".venv-lava" / "bin" / "python"
        if py.exists():
            return str(py), ".venv-lava"
    raise ConfigError(f"the lava backend needs the Lava environment: {FIX}")


def lava_python(explicit: str | None = None) -> str:
    """The Lava interpreter, checked once per process: it exists, runs, is Python 3.10 and imports lava."""
    py, where = find_lava_python(explicit)
    if py in _checked:
        return py
    name = f"Lava interpreter {py!r} ({where})"
    path = Path(py)
    if not path.exists():
        raise ConfigError(f"{name} does not exist; {FIX}")
    if not path.is_file() or not os.access(path, os.X_OK):
        raise ConfigError(f"{name} is not an executable file; {FIX}")
    try:
        res = subprocess.run([py, "-c", PROBE], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ConfigError(f"{name} cannot be run ({type(e).__name__}: {e}); {FIX}") from None
    version = res.stdout.strip().splitlines()[0] if res.stdout.strip() else "?"
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or ["no output"])[-1][:200]
        why = f"Python {version}, lava-nc 0.10.0 needs 3.10" if version not in ("3.10", "?") else f"Python {version}"
        raise ConfigError(f"{name} cannot import lava ({why}: {last}); {FIX}")
    _checked.add(py)
    return py
