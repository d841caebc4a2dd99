"""`make demo` from a fresh clone: seconds for set-up plus the whole chain, on this machine.

    python benchmarks/demo_time.py [--no-cache]

Clones this repository's HEAD into a temporary directory and runs `make demo` there (it creates
`.venv`, installs neurodistill with its dependencies, then runs teacher, tser student, loihi2
export, fixed-point simulation and report), then `make demo` once more (set-up done: the chain
alone). `--no-cache` makes pip download everything (PIP_NO_CACHE_DIR=1), as on a machine that
never installed torch. Checks that the report and its figures exist. The goal of issue 4:
<= 10 minutes including set-up on a 2-core CPU. Prints a table and writes
benchmarks/results/demo_time.json.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_step import machine, write_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def timed(cmd: list[str], cwd: Path, env: dict) -> tuple[float, str]:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}")
    return wall, res.stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-cache", action="store_true", help="pip downloads every package (no pip cache)")
    args = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHONPATH"))}
    if args.no_cache:
        env["PIP_NO_CACHE_DIR"] = "1"
    with tempfile.TemporaryDirectory() as d:
        clone = Path(d) / "neurodistill"
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
        first, out = timed(["make", "demo"], clone, env)
        second, _ = timed(["make", "demo"], clone, env)
        report = clone / "runs" / "demo" / "report"
        figures = sorted(p.name for p in report.glob("*.png"))
        if not (report / "report.md").is_file() or len(figures) < 5:
            sys.exit(f"the demo wrote no complete report in {report}: {figures}")
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone, capture_output=True, text=True).stdout.strip()
    rows = {"fresh_clone_make_demo_s": first, "make_demo_after_setup_s": second, "setup_s": first - second}
    for k, v in rows.items():
        print(f"{k:<28} {v:10.1f}")
    print(f"goal: fresh_clone_make_demo_s <= 600 ({'met' if first <= 600 else 'NOT met'})")
    write_result("demo_time.json", {"benchmark": "demo_time", "commit": head, "pip_cache": not args.no_cache,
                                    "machine": machine(), "results": rows, "figures": figures,
                                    "last_lines": out.strip().splitlines()[-6:]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
