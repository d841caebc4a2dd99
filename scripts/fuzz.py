"""Fuzz every input kind neurodistill reads (tests/fuzz_inputs): a table of outcomes and the failures.

    .venv/bin/python scripts/fuzz.py                       # every case (>= 500; about 4 min on 2 cores)
    .venv/bin/python scripts/fuzz.py --kinds nir,npz --limit 20
    .venv/bin/python scripts/fuzz.py --subset              # the short subset tests/test_fuzz_inputs.py runs

Prints one line per case (to stderr), then a table of counts per input kind and outcome, then the
failures grouped by cause. Writes every record to --json (benchmarks/results/fuzz.json). Exits 1
if any case is a FAILURE (crash, hang, memory, half-written, outside-read) or a pristine input is
not ok.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fuzz_inputs import cases as fc  # noqa: E402
from tests.fuzz_inputs import harness  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from train_step import machine  # noqa: E402  (the benchmarks' one record of the machine)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kinds", default=",".join(fc.KINDS), help=f"comma-separated subset of {','.join(fc.KINDS)}")
    ap.add_argument("--limit", type=int, default=None, help="at most this many cases per kind (evenly spread)")
    ap.add_argument("--seed", type=int, default=fc.SEED, help=f"case i uses random.Random(seed*1000+i) [{fc.SEED}]")
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "fuzz.json"), help="where to write the records")
    ap.add_argument("--subset", action="store_true", help="the short subset of tests/test_fuzz_inputs.py")
    ap.add_argument("--cases", default=None, help="comma-separated case ids or numbers to run (e.g. 12,040-nir-...)")
    ap.add_argument("--work", default=None, help="work directory [a new temporary directory]")
    ap.add_argument("--keep", action="store_true", help="keep the directories of failed cases")
    ap.add_argument("--quiet", action="store_true", help="no line per case")
    args = ap.parse_args()

    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(fc.KINDS))
    if unknown:
        ap.error(f"unknown kinds {unknown}; choose from {', '.join(fc.KINDS)}")
    selected = fc.subset(fc.all_cases()) if args.subset else fc.all_cases()
    selected = [c for c in selected if c.kind in kinds]
    if args.cases:
        want = {w.strip() for w in args.cases.split(",")}
        selected = [c for c in selected if c.case_id in want or str(c.index) in want]
    if args.limit is not None:
        selected = [c for k in kinds for c in fc._spread([c for c in selected if c.kind == k], args.limit)]
    if not selected:
        ap.error("no case selected")
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="neurodistill-fuzz-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    print(f"building base inputs in {work} ...", file=sys.stderr)
    base = fc.build_base(work, with_bomb=any(c.case_id.endswith("-bomb") for c in selected))
    print(f"base inputs in {time.perf_counter() - t0:.0f} s; {len(selected)} cases", file=sys.stderr)

    def progress(rec: dict, i: int, n: int) -> None:
        if not args.quiet:
            mark = "FAIL " if rec["failure"] else ""
            print(f"[{i}/{n}] {rec['case']}: {mark}{rec['outcome']} ({rec['seconds']:.1f} s) {rec['detail'][:140]}",
                  file=sys.stderr, flush=True)

    records = harness.Suite(work, base, keep=args.keep, seed=args.seed, progress=progress).run(selected)
    elapsed = time.perf_counter() - t0
    failures = [r for r in records if r["failure"]]
    print()
    print(harness.table(records))
    print(f"\n{len(records)} cases in {elapsed:.0f} s; {len(failures)} failures")
    if failures:
        print("\nfailures by cause (count, kinds, one example):")
        print(harness.format_failures(records))
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "neurodistill"], capture_output=True,
                                text=True).stdout.strip())
    out.write_text(json.dumps({
        "command": " ".join(sys.argv), "seed": args.seed, "kinds": kinds, "cases": len(records),
        "failures": len(failures), "seconds": round(elapsed, 1), "git": rev, "package_modified": dirty,
        "python": platform.python_version(), "machine": machine(), "case_seconds": harness.CASE_SECONDS,
        "memory_bound_bytes": harness.MEMORY_BOUND, "counts": harness.counts(records),
        "failure_groups": [{k: v for k, v in g.items()} for g in harness.failure_groups(records)],
        "records": records}, indent=1) + "\n")
    print(f"\nrecords in {out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
