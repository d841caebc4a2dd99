"""Fuzzing every input kind through the real CLI: a short deterministic subset of tests/fuzz_inputs.

About 90 cases spread over every kind (checkpoints, configs, NIR files, npz inputs and calibration
files, hardware profiles, simulation directories, bundles, `--out` paths, security cases), each in
a directory of its own. A case passes when it is `ok` (exit 0, a valid result) or `refused`
(exit 2, one `error:` line last on stderr, no traceback) and it left no file behind, changed no
file it does not own, opened nothing outside its inputs, stayed under the memory bound and the
time limit; a security case passes only when refused; a pristine input must be ok. The test
fails listing every failure with its case id. `scripts/fuzz.py` runs all of them (>= 500).

The second test shows the harness catches what it claims: reads outside the case directory
(in process and under strace), and every rule of the classification on constructed results.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzz_inputs import cases as fc
from tests.fuzz_inputs import harness


@pytest.fixture(scope="module")
def fuzz_base(tmp_path_factory) -> tuple[Path, fc.Base]:
    work = tmp_path_factory.mktemp("fuzz")
    return work, fc.build_base(work)


@pytest.mark.slow
def test_fuzz_inputs_subset(fuzz_base):
    work, base = fuzz_base
    everything = fc.all_cases()
    assert len(everything) >= 500 and {c.kind for c in everything} == set(fc.KINDS)
    selected = fc.subset(everything)
    assert {c.kind for c in selected} == set(fc.KINDS) and 60 <= len(selected) <= 100
    records = harness.Suite(work, base).run(selected)
    print("\n" + harness.table(records))
    failures = [r for r in records if r["failure"]]
    assert not failures, f"{len(failures)} of {len(records)} fuzz cases failed:\n" + "\n".join(
        f"  {r['case']} [{r['outcome']}] {r['detail'][:300]}\n      ({r['what'][:160]}; {r['command'][:200]})"
        for r in failures)


def _case_dir(work: Path, name: str) -> Path:
    d = work / "cases" / name
    d.mkdir(parents=True)
    return d


def test_the_harness_catches_what_it_claims(fuzz_base, tmp_path):
    work, base = fuzz_base
    decoy_profile = str(base.decoy / "loihi2.toml")
    cmd = fc.Command(["profiles", "show", decoy_profile], "a profile outside the case directory", None, "stdout")
    # a file outside the case directory, opened in process (audit hook) and by the real CLI (strace)
    d = _case_dir(work, "selfcheck-inproc")
    worker = harness.Worker(work)
    try:
        run = worker.run(cmd.argv, d, 60)
    finally:
        worker.close()
    v = harness.classify(cmd, False, run, d, {}, {}, {}, {}, [])
    assert v.outcome == "outside-read" and "decoy" in v.detail, (v, run)
    d = _case_dir(work, "selfcheck-strace")
    run = harness.run_subprocess(cmd.argv, d, 60, work, "selfcheck-strace")
    assert run["opened_count"] > 100, run  # strace saw the interpreter start
    v = harness.classify(cmd, False, run, d, {}, {}, {}, {}, [])
    assert v.outcome == "outside-read" and "decoy" in v.detail, (v, run)

    # the classification, rule by rule, on constructed results
    out = tmp_path / "case"
    out.mkdir()
    cmd = fc.Command(["x"], "", "out", "none", ("out/USER_NOTES.txt",))
    f1, f2 = ("file", 1, "a"), ("file", 1, "b")

    def c(run: dict, before=None, after=None, security=False, decoy_after=None) -> str:
        run = {"exit_code": 2, "stdout": "", "stderr": "error: no\n", "peak_rss": 0, **run}
        return harness.classify(cmd, security, run, out, before or {}, after or {}, {}, decoy_after or {},
                                ["out"]).outcome

    assert c({}) == "refused"
    assert c({"stderr": "warning: something\nerror: no\n\n"}) == "refused"
    assert c({"stderr": "error: no\n  more\n"}) == "crash"  # a multi-line error
    assert c({"stderr": "error: a\nerror: b\n"}) == "crash"
    assert c({"stderr": "Traceback (most recent call last):\nerror: no\n"}) == "crash"
    assert c({"stderr": ""}) == "crash"
    assert c({"exit_code": 1, "stderr": "error: no\n"}) == "crash"
    assert c({"exit_code": 1, "exception": 'Traceback\n  File "/x/neurodistill/a.py", line 3\nKeyError: 1\n'}) == "crash"
    assert c({"exit_code": -11, "signal": 11}) == "crash"
    assert c({"exit_code": None, "timed_out": True}) == "hang"
    assert c({"exit_code": 1, "exception": "Traceback\nMemoryError\n"}) == "memory"
    assert c({"peak_rss": harness.MEMORY_BOUND + 1}) == "memory"
    assert c({"exit_code": None, "memory_killed": True}) == "memory"
    assert c({}, before={"in.pt": f1}, after={"in.pt": f1, "out": ("dir",)}) == "half-written"  # refused, left --out
    assert c({}, before={"in.pt": f1}, after={"in.pt": f2}) == "half-written"  # refused, changed an input
    assert c({}, decoy_after={"x": f1}) == "half-written"  # wrote into the decoy
    assert c({"opens": [["/elsewhere/secret", "r"]]}) == "outside-read"
    assert c({"stderr": f"error: {harness.SECRET}\n"}) == "outside-read"
    assert c({"events": ["os.system('true FUZZPAYLOAD')"]}) == "outside-read"
    ok = {"exit_code": 0, "stderr": "", "stdout": "done\n"}
    user = {"out": ("dir",), "out/USER_NOTES.txt": f1}
    assert c(ok, before=user, after={**user, "out/result": f1}) == "ok"
    assert c(ok, before=user, after={"out": ("dir",), "out/result": f1}) == "half-written"  # deleted the user's file
    assert c(ok, before={"in.pt": f1}, after={"in.pt": f2, "out": ("dir",)}) == "half-written"  # changed its input
    assert c(ok, before={}, after={"out": ("dir",), ".out.tmp": ("dir",)}) == "half-written"  # wrote beside --out
    assert c(ok, security=True) == "outside-read"  # a security case passes only when refused
    bad = fc.Command(["x"], "", "out", "simulate")
    assert harness.classify(bad, False, ok, out, {}, {}, {}, {}, ["out"]).outcome == "crash"  # exit 0, no result
