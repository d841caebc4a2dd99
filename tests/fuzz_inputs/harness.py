"""Run fuzz cases and classify each outcome.

Outcomes:

- `ok`: exit status 0 and a valid result (the command's own output files parse; see VALIDATORS).
- `refused`: exit status 2, exactly one stderr line starting `error:` and it is the last
  non-empty line, no `Traceback` anywhere.
- FAILURES:
  - `crash`: any other exit status (or signal), an uncaught exception, a traceback in the output,
    a multi-line or missing `error:` line, or exit 0 without a valid result;
  - `hang`: no result within the case's time limit;
  - `memory`: peak RSS above MEMORY_BOUND (the process is killed when its tree passes it), or a
    MemoryError / failed allocation that was not turned into a one-line refusal;
  - `half-written`: a refused case changed the case directory at all (its `--out` left behind,
    a staging directory, a changed input); an ok case changed or deleted a file it does not
    own (a user's file inside `--out`, an input outside it) or wrote outside its `--out`;
    or anything in the decoy directory changed;
  - `outside-read`: a file outside the case directory and the package / interpreter /
    site-packages / system directories was opened (Python-level opens through an audit hook
    for in-process cases, every successful open(2) through strace for subprocess cases), the
    decoy secret appeared in the output, a pickle payload ran (`os.system`, `subprocess`), or
    a security case was accepted (exit 0): a file that reaches outside its directory must be
    refused.

Runners: `inproc` cases run through click's CliRunner on `neurodistill.cli.main` inside a
persistent worker process (one import of torch for many cases; `signal.alarm` for the time
limit; the parent watches the worker's memory and kills it on a hard timeout, restarting it
for the next case), so a runaway case cannot take the test process down. `subprocess` cases run
`python -m neurodistill.cli` under `strace -f -e trace=open,openat,openat2,creat`, which also
sees the C-level opens of libhdf5 (external links, external storage, virtual datasets).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import select
import shutil
import signal
import site
import subprocess
import sys
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CASE_SECONDS = float(os.environ.get("FUZZ_CASE_SECONDS", "60"))
HARD_GRACE_SECONDS = 30  # past the limit, the parent kills a worker that did not answer
MEMORY_BOUND = 4 * 2**30  # bytes of resident memory for one case (the process tree)
WORKER_CASES = 50  # a fresh worker after this many cases: results do not depend on what ran before
STRACE = shutil.which("strace") or "/usr/bin/strace"
SECRET = "NEURODISTILL-FUZZ-SECRET-7f3a9c"  # in every decoy file; must never reach the output

OUTCOMES = ("ok", "refused", "crash", "hang", "memory", "half-written", "outside-read")
FAILURES = ("crash", "hang", "memory", "half-written", "outside-read")
MEMORY_WORDS = ("MemoryError", "Unable to allocate", "can't allocate memory", "Cannot allocate memory",
                "std::bad_alloc", "out of memory")
# audit events that mean code from a file ran: a pickle or YAML payload (whose arguments carry PAYLOAD)
EXEC_EVENTS = ("os.system", "subprocess.Popen", "os.exec", "os.posix_spawn", "os.spawn", "pty.spawn", "fuzz.payload")
PAYLOAD = "FUZZPAYLOAD"  # == cases.PAYLOAD


class CaseTimeout(BaseException):
    """Raised by SIGALRM inside the worker: a BaseException, so `except Exception` in the code under test
    cannot swallow it."""


# --- what may be opened ---------------------------------------------------------------------------

def env_dirs(work: Path) -> dict[str, str]:
    """Caches and temporary files of the libraries, inside the work directory (allowed to be opened)."""
    cache = work / "cache"
    return {"MPLCONFIGDIR": str(cache / "mpl"), "XDG_CACHE_HOME": str(cache / "xdg"), "TMPDIR": str(cache / "tmp"),
            "NUMBA_CACHE_DIR": str(cache / "numba"), "TORCHINDUCTOR_CACHE_DIR": str(cache / "inductor")}


def child_env(work: Path) -> dict[str, str]:
    env = {**os.environ, **env_dirs(work)}
    env.pop("CI", None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    for d in env_dirs(work).values():
        Path(d).mkdir(parents=True, exist_ok=True)
    return env


def allowed_roots(case_dir: Path, work: Path) -> list[str]:
    """Where a case may open files: its own directory, the interpreter, site-packages, the package and its
    profiles, the libraries' caches, and the system's directories."""
    roots = {str(case_dir), sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             str(ROOT / "neurodistill"), str(ROOT / "hw_profiles"), str(ROOT / "tests" / "fuzz_inputs"),
             str(work / "cache"), "/usr", "/lib", "/lib32", "/lib64", "/bin", "/sbin", "/etc", "/proc", "/sys",
             "/dev", "/run"}
    roots.update(str(p) for p in ROOT.glob("*.egg-info"))  # the editable install's metadata (entry points)
    with contextlib.suppress(AttributeError):
        roots.update(site.getsitepackages())
    return sorted({os.path.realpath(r) for r in roots})


def is_allowed(path: str, roots: list[str], ancestors: set[str] | None = None) -> bool:
    if ancestors and path in ancestors:  # a directory above the case directory (path lookups, listings)
        return True
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def ancestors_of(p: Path) -> set[str]:
    return {str(a) for a in Path(os.path.realpath(p)).parents}


# --- snapshots ------------------------------------------------------------------------------------

def snapshot(root: Path) -> dict[str, tuple]:
    """{relative path: ('dir',) | ('file', size, sha256) | ('link', target) | ('other', mode)}; symlinks not followed."""
    snap: dict[str, tuple] = {}
    if not root.exists():
        return snap
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = p.lstat()
            if p.is_symlink():
                snap[rel] = ("link", os.readlink(p))
            elif p.is_dir():
                snap[rel] = ("dir",)
            elif p.is_file():
                h = hashlib.sha256()
                with open(p, "rb") as f:
                    for chunk in iter(lambda f=f: f.read(1 << 20), b""):
                        h.update(chunk)
                snap[rel] = ("file", st.st_size, h.hexdigest())
            else:
                snap[rel] = ("other", st.st_mode)
    return snap


def diff(before: dict, after: dict) -> tuple[list[str], list[str], list[str]]:
    """(new, changed, deleted) relative paths."""
    new = sorted(set(after) - set(before))
    deleted = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    return new, changed, deleted


# --- the worker: CliRunner in a process of its own ---------------------------------------------------

class _State:
    active = False
    opens: list = []
    events: list = []


def _audit(event: str, args: tuple) -> None:
    if not _State.active:
        return
    if event == "open":
        path = args[0]
        if isinstance(path, int):
            return
        _State.opens.append((os.fsdecode(path), str(args[1]) if len(args) > 1 else ""))
    elif event.startswith(EXEC_EVENTS) and PAYLOAD in str(args):
        _State.events.append(f"{event}{str(args)[:200]}")


def _status_kb(pid: int | str, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _on_alarm(signum, frame):
    raise CaseTimeout()


def worker_main() -> None:
    """Read one JSON request per line on stdin, run it through CliRunner, answer one JSON line.

    Request: {"argv", "cwd", "seconds", "roots", "ancestors"}. Answer: exit code, stdout, stderr, the
    exception's traceback (not SystemExit), timed_out, peak RSS of this case, opens outside the
    allowed roots, exec events."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # stray C-level prints must not corrupt the answers
    sys.addaudithook(_audit)
    signal.signal(signal.SIGALRM, _on_alarm)
    from click.testing import CliRunner

    try:
        from neurodistill.cli import main as cli_main
    except BaseException:  # noqa: BLE001 - a package that does not import: every case says so
        cli_main = None
    home = os.getcwd()
    for line in sys.stdin:
        req = json.loads(line)
        if cli_main is None:
            try:
                from neurodistill.cli import main as cli_main
            except BaseException:  # noqa: BLE001
                proto.write(json.dumps({"exit_code": 1, "stdout": "", "stderr": "", "timed_out": False,
                                        "exception": traceback.format_exc(), "peak_rss": 0, "opens": [],
                                        "events": []}) + "\n")
                cli_main = None
                continue
        with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM: the peak below is this case's
        _State.opens, _State.events = [], []
        ans: dict[str, Any] = {"timed_out": False, "exception": None}
        runner = CliRunner()
        os.chdir(req["cwd"])
        t0 = time.perf_counter()
        try:
            _State.active = True
            signal.setitimer(signal.ITIMER_REAL, req["seconds"])
            res = runner.invoke(cli_main, req["argv"], catch_exceptions=True)
            signal.setitimer(signal.ITIMER_REAL, 0)
            _State.active = False
            ans.update(exit_code=res.exit_code, stdout=res.stdout, stderr=res.stderr)
            if res.exception is not None and not isinstance(res.exception, SystemExit):
                ans["exception"] = "".join(traceback.format_exception(*res.exc_info))
        except CaseTimeout:
            _State.active = False
            ans.update(exit_code=None, stdout="", stderr="", timed_out=True)
        except BaseException:  # noqa: BLE001 - e.g. MemoryError raised outside click's handler
            signal.setitimer(signal.ITIMER_REAL, 0)
            _State.active = False
            ans.update(exit_code=1, stdout="", stderr="", exception=traceback.format_exc())
        finally:
            _State.active = False
            signal.setitimer(signal.ITIMER_REAL, 0)
            os.chdir(home)
        ans["seconds"] = time.perf_counter() - t0
        ans["peak_rss"] = _status_kb("self", "VmHWM") * 1024
        roots, anc = req["roots"], set(req["ancestors"])
        outside = []
        for path, mode in _State.opens:
            full = os.path.realpath(os.path.join(req["cwd"], path))
            if not is_allowed(full, roots, anc):
                outside.append([full, mode])
        ans["opens"] = outside[:50]
        ans["events"] = _State.events[:10]
        proto.write(json.dumps(ans) + "\n")


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except (OSError, ValueError):
            pass
    return pids


def tree_rss(pid: int) -> int:
    return sum(_status_kb(p, "VmRSS") for p in _tree(pid)) * 1024


def _kill_tree(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()


class Worker:
    """The persistent in-process runner (a child process importing neurodistill once)."""

    def __init__(self, work: Path):
        self.work = work
        self.proc: subprocess.Popen | None = None
        self.cases = 0
        self.log = open(work / "worker.log", "ab")  # noqa: SIM115 - lives as long as the worker

    def start(self) -> None:
        code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
                "from tests.fuzz_inputs.harness import worker_main; worker_main()")
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, cwd=self.work, env=child_env(self.work), start_new_session=True)
        self.cases = 0

    def stop(self) -> None:
        if self.proc is not None:
            _kill_tree(self.proc)
            with contextlib.suppress(Exception):
                self.proc.wait(10)
            self.proc = None

    def close(self) -> None:
        self.stop()
        self.log.close()

    def run(self, argv: list[str], case_dir: Path, seconds: float) -> dict:
        if self.proc is None or self.proc.poll() is not None or self.cases >= WORKER_CASES:
            self.stop()
            self.start()
        self.cases += 1
        req = {"argv": argv, "cwd": str(case_dir), "seconds": seconds, "roots": allowed_roots(case_dir, self.work),
               "ancestors": sorted(ancestors_of(case_dir))}
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write((json.dumps(req) + "\n").encode())
        self.proc.stdin.flush()
        t0 = time.perf_counter()
        peak, buf = 0, b""
        fd = self.proc.stdout.fileno()
        while True:
            ready, _, _ = select.select([fd], [], [], 0.05)
            if ready:
                chunk = os.read(fd, 1 << 20)
                if not chunk:  # the worker died (a segfault, an abort in C code)
                    code = self.proc.wait()
                    self.proc = None
                    return {"exit_code": code, "stdout": "", "stderr": self._log_tail(), "timed_out": False,
                            "exception": None, "peak_rss": peak, "opens": [], "events": [],
                            "seconds": time.perf_counter() - t0, "died": True}
                buf += chunk
                if buf.endswith(b"\n"):
                    ans = json.loads(buf)
                    ans["peak_rss"] = max(ans["peak_rss"], peak)
                    if ans["timed_out"]:
                        self.stop()  # a case interrupted anywhere may leave the worker in a bad state
                    return ans
            rss = tree_rss(self.proc.pid)
            peak = max(peak, rss)
            elapsed = time.perf_counter() - t0
            if rss > MEMORY_BOUND or elapsed > seconds + HARD_GRACE_SECONDS:
                self.stop()
                return {"exit_code": None, "stdout": "", "stderr": "", "exception": None, "peak_rss": peak,
                        "opens": [], "events": [], "seconds": elapsed, "timed_out": rss <= MEMORY_BOUND,
                        "memory_killed": rss > MEMORY_BOUND}

    def _log_tail(self) -> str:
        self.log.flush()
        with open(self.work / "worker.log", "rb") as f:
            f.seek(max(0, f.seek(0, 2) - 2000))
            return f.read().decode(errors="replace")


# --- the subprocess runner: the real CLI under strace ------------------------------------------------

_OPEN_RE = re.compile(r"\b(?:open|openat|openat2|creat)\(.*\)\s+=\s+(\d+)<(.*)>\s*$")
_RESUMED_RE = re.compile(r"<\.\.\. (?:open|openat|openat2|creat) resumed>.*=\s+(\d+)<(.*)>\s*$")


def strace_opens(log: Path) -> list[str]:
    """The resolved paths of every successful open in an `strace -f -y` log."""
    paths = []
    with open(log, errors="replace") as f:
        for line in f:
            m = _OPEN_RE.search(line) or _RESUMED_RE.search(line)
            if m:
                paths.append(m.group(2))
    return paths


def run_subprocess(argv: list[str], case_dir: Path, seconds: float, work: Path, tag: str) -> dict:
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    if not Path(STRACE).exists():
        raise RuntimeError(f"strace is needed for the subprocess cases and is not at {STRACE}")
    trace = logs / f"{tag}.strace"
    cmd = [STRACE, "-f", "-qq", "-y", "--seccomp-bpf", "-e", "trace=open,openat,openat2,creat", "-e", "signal=none",
           "-o", str(trace), sys.executable, "-m", "neurodistill.cli", *argv]
    t0 = time.perf_counter()
    with open(logs / f"{tag}.out", "wb") as out, open(logs / f"{tag}.err", "wb") as err:
        proc = subprocess.Popen(cmd, cwd=case_dir, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                env=child_env(work), start_new_session=True)
        peak, status, usage, killed = 0, None, None, None
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                break
            rss = tree_rss(proc.pid)
            peak = max(peak, rss)
            if rss > MEMORY_BOUND:
                killed = "memory"
            elif time.perf_counter() - t0 > seconds:
                killed = "time"
            if killed:  # the whole process group (strace and the CLI); Popen.kill would reap it first
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                try:
                    _, status, usage = os.wait4(proc.pid, 0)
                    proc.returncode = os.waitstatus_to_exitcode(status)
                except ChildProcessError:
                    proc.returncode = -signal.SIGKILL
                break
            time.sleep(0.05)
    if usage is not None:
        peak = max(peak, usage.ru_maxrss * 1024)
    roots, anc = allowed_roots(case_dir, work), ancestors_of(case_dir)
    opened = strace_opens(trace)
    outside = [[p, "open(2)"] for p in opened if not is_allowed(os.path.realpath(p), roots, anc)]
    stdout = (logs / f"{tag}.out").read_text(errors="replace")
    stderr = (logs / f"{tag}.err").read_text(errors="replace")
    code = proc.returncode
    return {"exit_code": None if killed else code, "signal": -code if code is not None and code < 0 else None,
            "stdout": stdout, "stderr": stderr, "exception": None, "timed_out": killed == "time",
            "memory_killed": killed == "memory", "peak_rss": peak, "opens": outside[:50], "events": [],
            "seconds": time.perf_counter() - t0, "opened_count": len(opened)}


# --- what an exit-0 result must hold ------------------------------------------------------------------

def _json_file(p: Path) -> Any:
    return json.loads(p.read_text())


def _v_train(out: Path, res: dict) -> str | None:
    s = _json_file(out / "summary.json")
    if not isinstance(s, dict) or not isinstance(s.get("test_acc"), int | float):
        return "summary.json has no test_acc"
    for name in ("best.pt", "last.pt", "config.yaml"):
        if not (out / name).is_file():
            return f"no {name}"
    return None


def _v_export(*files: str) -> Callable[[Path, dict], str | None]:
    def check(out: Path, res: dict) -> str | None:
        m = _json_file(out / "manifest.json")
        if not isinstance(m, dict):
            return "manifest.json is not an object"
        for name in files:
            found = list(out.glob(name))
            if not found or not all(f.is_file() and f.stat().st_size > 0 for f in found):
                return f"no {name}"
        return None
    return check


def _v_simulate(out: Path, res: dict) -> str | None:
    s = _json_file(out / "simulation.json")
    if not isinstance(s, dict) or not isinstance(s.get("samples"), int) or s["samples"] < 1:
        return "simulation.json has no samples >= 1"
    acc = s.get("accuracy")
    if acc is not None and not (isinstance(acc, int | float) and 0 <= acc <= 1):
        return f"accuracy {acc!r}"
    totals = s.get("totals")
    if not isinstance(totals, dict) or not all(isinstance(v, int | float) and v >= 0 and v == v and v != float("inf")
                                               for v in totals.values() if v is not None and not isinstance(v, dict | list | str)):
        return "totals are not finite counts"
    if not isinstance(s.get("layers"), list) or not s["layers"]:
        return "no layers"
    return None


def _v_report(out: Path, res: dict) -> str | None:
    r = _json_file(out / "report.json")
    return None if isinstance(r, dict) else "report.json is not an object"


def _v_methods(out: Path, res: dict) -> str | None:
    return None if any(out.glob("methods.*")) else "no methods table"


def _v_stdout(out: Path | None, res: dict) -> str | None:
    return None if res.get("stdout", "").strip() else "nothing on stdout"


def _v_demo(out: Path, res: dict) -> str | None:
    return None if (out / "report" / "report.md").is_file() else "no report/report.md"


VALIDATORS: dict[str, Callable] = {
    "train": _v_train, "export-loihi2": _v_export("deploy.h5"), "export-nir": _v_export("network.nir"),
    "export-onnx": _v_export("*.onnx"), "simulate": _v_simulate, "report": _v_report, "methods": _v_methods,
    "stdout": _v_stdout, "demo": _v_demo,
}


# --- classification -----------------------------------------------------------------------------------

def last_line(text: str) -> str:
    lines = [x for x in text.splitlines() if x.strip()]
    return lines[-1].strip()[:300] if lines else ""


def crash_site(tb: str) -> str:
    """'file.py:123' of the innermost frame inside neurodistill (else the innermost frame) of a traceback."""
    frames = re.findall(r'File "([^"]+)", line (\d+)', tb)
    ours = [f for f in frames if "/neurodistill/" in f[0] and "/tests/" not in f[0]]
    f = (ours or frames or [("?", "?")])[-1]
    p = Path(f[0])
    return f"{p.parent.name}/{p.name}:{f[1]}"


def proper_refusal(run: dict) -> tuple[bool, str]:
    stderr, stdout = run.get("stderr") or "", run.get("stdout") or ""
    lines = [x for x in stderr.splitlines() if x.strip()]
    errors = [x for x in lines if x.startswith("error:")]
    if run.get("exit_code") != 2:
        return False, f"exit status {run.get('exit_code')}"
    if "Traceback" in stderr or "Traceback" in stdout or run.get("exception"):
        return False, "exit 2 with a traceback"
    if not lines or not lines[-1].startswith("error:"):
        return False, f"exit 2 but the last stderr line is not 'error: ...' ({last_line(stderr)!r})"
    if len(errors) != 1:
        return False, f"exit 2 with {len(errors)} 'error:' lines"
    return True, lines[-1]


@dataclass
class Verdict:
    outcome: str
    detail: str
    cause: str = ""  # what groups failures: the exception and where, or the rule broken


def _under(rel: str, roots: Iterable[str]) -> bool:
    return any(r in ("", ".") or rel == r or rel.startswith(r.rstrip("/") + "/") for r in roots)


def classify(cmd, security: bool, run: dict, case_dir: Path, before: dict, after: dict, decoy_before: dict,
             decoy_after: dict, out_roots: list[str]) -> Verdict:
    stdout, stderr = run.get("stdout") or "", run.get("stderr") or ""
    exc = run.get("exception") or ""
    refused_ok, why_not = proper_refusal(run)
    # 1. outside reads (and payloads that ran)
    refs = set(getattr(cmd, "references", ()) or ())
    opens = [(p, m) for p, m in run.get("opens") or [] if os.path.realpath(p) not in refs]
    if opens:
        paths = [p for p, _ in opens]
        secret = [p for p in paths if "decoy" in Path(p).parts]
        first = (secret or paths)[0]
        return Verdict("outside-read", f"opened {first}" + (f" (+{len(paths) - 1} more)" if len(paths) > 1 else ""),
                       f"opened {'the decoy ' + Path(first).name if secret else _coarse(first)}")
    if run.get("events"):
        return Verdict("outside-read", f"ran {run['events'][0]}", f"payload ran: {run['events'][0].split('(')[0]}")
    if SECRET in stdout or SECRET in stderr:
        return Verdict("outside-read", "the decoy secret appears in the output", "decoy secret in the output")
    # 2. memory
    peak = run.get("peak_rss") or 0
    if run.get("memory_killed") or peak > MEMORY_BOUND:
        return Verdict("memory", f"peak RSS {peak / 2**30:.2f} GiB > {MEMORY_BOUND / 2**30:.0f} GiB",
                       "over the memory bound")
    if not refused_ok and any(w in exc or w in stderr for w in MEMORY_WORDS):
        line = last_line(exc or stderr)
        return Verdict("memory", line, f"{line.split(':')[0]} at {crash_site(exc or stderr)}")
    # 3. hang
    if run.get("timed_out"):
        return Verdict("hang", f"no result within {run.get('seconds', 0):.0f} s", "time limit")
    # 4. crash
    code = run.get("exit_code")
    if exc:
        line = last_line(exc)
        return Verdict("crash", line, f"{line.split(':')[0]} at {crash_site(exc)}")
    if run.get("died") or run.get("signal"):
        return Verdict("crash", f"process died (status {code}, signal {run.get('signal')}): {last_line(stderr)}",
                       f"died with {code}")
    if "Traceback" in stderr or "Traceback" in stdout:
        text = stderr if "Traceback" in stderr else stdout
        line = last_line(text)
        errors = [x for x in stderr.splitlines() if x.startswith("error:")]
        if code == 2 and errors:  # a refusal whose message carries a traceback (a wrapped exception's text)
            return Verdict("crash", f"exit 2, a traceback inside the message: {errors[0][:240]}",
                           f"traceback inside an error message, at {crash_site(text)}")
        return Verdict("crash", line, f"{line.split(':')[0]} at {crash_site(text)}")
    if code not in (0, 2):
        return Verdict("crash", f"exit status {code}: {last_line(stderr)}", f"exit status {code}")
    if code == 2 and not refused_ok:
        return Verdict("crash", f"{why_not}: {last_line(stderr)!r}", why_not.split(" (")[0])
    if code == 0:
        check = VALIDATORS.get(cmd.check)
        out = case_dir / cmd.out if cmd.out else None
        if check is not None:
            try:
                bad = check(out, run)
            except (OSError, ValueError, TypeError, AttributeError) as e:
                bad = f"{type(e).__name__}: {e}"
            if bad:
                return Verdict("crash", f"exit 0 but not a valid {cmd.check} result: {bad}", f"exit 0, invalid {cmd.check}")
    # 5. files: half-written, changed inputs, user files, the decoy
    dnew, dchanged, ddeleted = diff(decoy_before, decoy_after)
    if dnew or dchanged or ddeleted:
        what = (dnew + dchanged + ddeleted)[0]
        return Verdict("half-written", f"changed decoy/{what} outside the case directory", "wrote outside the case")
    new, changed, deleted = diff(before, after)
    if code == 2:
        if new or changed or deleted:
            parts = [f"left {', '.join(new[:3])}" if new else "", f"changed {', '.join(changed[:3])}" if changed else "",
                     f"deleted {', '.join(deleted[:3])}" if deleted else ""]
            first = (new or changed or deleted)[0]
            return Verdict("half-written", "refused but " + "; ".join(p for p in parts if p),
                           f"refused, {'left' if new else 'changed' if changed else 'deleted'} "
                           f"{_coarse_rel(first, cmd.out)}")
    else:
        user = set(cmd.user_files)
        bad_change = [p for p in changed + deleted if p in user or not _under(p, out_roots)]
        bad_new = [p for p in new if not _under(p, out_roots)]
        if bad_change:
            return Verdict("half-written", f"ok but {'deleted' if bad_change[0] in deleted else 'changed'} "
                           f"{bad_change[0]}, not its own output", "ok, changed a file it does not own")
        if bad_new:
            return Verdict("half-written", f"ok but wrote {bad_new[0]} outside --out {cmd.out}", "ok, wrote outside --out")
    # 6. a security case passes only when refused
    if security and code == 0:
        return Verdict("outside-read", "security case accepted (exit 0): the file reaches outside its directory",
                       "security case accepted")
    if code == 0:
        return Verdict("ok", last_line(stdout))
    return Verdict("refused", last_line(stderr))


def _coarse(path: str) -> str:
    parts = Path(path).parts
    return "/" + "/".join(parts[1:3]) + "/..."


def _coarse_rel(rel: str, out: str | None) -> str:
    if out and (rel == out or rel.startswith(out + "/")):
        return "--out"
    name = Path(rel).parts[0]
    return re.sub(r"[0-9a-z_]{6,}$", "*", name) if name.startswith(".") else name


# --- running a list of cases ------------------------------------------------------------------------------

@dataclass
class Suite:
    work: Path
    base: Any
    keep: bool = False
    seed: int | None = None
    progress: Callable[[dict, int, int], None] | None = None
    worker: Worker | None = field(default=None, init=False)

    def run(self, cases: list) -> list[dict]:
        from .cases import SEED, CaseEnv, case_rng

        records = []
        self.worker = Worker(self.work)
        decoy = self.base.decoy
        try:
            for n, case in enumerate(cases):
                case_dir = self.work / "cases" / case.case_id
                if case_dir.exists():
                    shutil.rmtree(case_dir)
                case_dir.mkdir(parents=True)
                env = CaseEnv(case_dir, case_rng(case.index, SEED if self.seed is None else self.seed), self.base)
                cmd = case.make(env)
                out_roots = []
                if cmd.out:
                    out_roots = [cmd.out]
                    real = os.path.realpath(case_dir / cmd.out)
                    if real.startswith(str(case_dir) + "/"):
                        out_roots.append(os.path.relpath(real, case_dir))
                seconds = case.seconds or CASE_SECONDS
                before, decoy_before = snapshot(case_dir), snapshot(decoy)
                if case.runner == "subprocess":
                    run = run_subprocess(cmd.argv, case_dir, seconds, self.work, case.case_id)
                else:
                    run = self.worker.run(cmd.argv, case_dir, seconds)
                after, decoy_after = snapshot(case_dir), snapshot(decoy)
                v = classify(cmd, case.security, run, case_dir, before, after, decoy_before, decoy_after, out_roots)
                failure = v.outcome in FAILURES or (case.name.startswith("pristine") and v.outcome != "ok")
                rec = {"case": case.case_id, "kind": case.kind, "name": case.name, "runner": case.runner,
                       "security": case.security, "command": "neurodistill " + " ".join(cmd.argv), "what": cmd.what,
                       "outcome": v.outcome, "failure": failure, "detail": v.detail,
                       "cause": v.cause if v.outcome in FAILURES else ("pristine input not ok" if failure else ""),
                       "exit_code": run.get("exit_code"), "seconds": round(run.get("seconds", 0.0), 2),
                       "peak_rss_mib": round((run.get("peak_rss") or 0) / 2**20)}
                records.append(rec)
                if self.progress:
                    self.progress(rec, n + 1, len(cases))
                if not self.keep or not failure:
                    shutil.rmtree(case_dir, ignore_errors=True)
                _restore_decoy(decoy, decoy_before, decoy_after, self.base)
        finally:
            self.worker.close()
        return records


def _restore_decoy(decoy: Path, before: dict, after: dict, base) -> None:
    if before != after:  # a case wrote into the decoy: rebuild it so the next case starts from the same files
        from .cases import build_decoy

        shutil.rmtree(decoy, ignore_errors=True)
        build_decoy(base)


# --- summaries ------------------------------------------------------------------------------------------

def counts(records: list[dict]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for r in records:
        out.setdefault(r["kind"], {o: 0 for o in OUTCOMES})[r["outcome"]] += 1
    return out


def table(records: list[dict]) -> str:
    c = counts(records)
    kinds = list(c)
    w = max([len(k) for k in kinds] + [5])
    head = f"{'kind':<{w}}  " + "  ".join(f"{o:>12}" for o in OUTCOMES) + f"  {'total':>6}"
    lines = [head, "-" * len(head)]
    tot: Counter = Counter()
    for k in kinds:
        tot.update(c[k])
        lines.append(f"{k:<{w}}  " + "  ".join(f"{c[k][o]:>12}" for o in OUTCOMES) + f"  {sum(c[k].values()):>6}")
    lines.append("-" * len(head))
    lines.append(f"{'all':<{w}}  " + "  ".join(f"{tot[o]:>12}" for o in OUTCOMES) + f"  {sum(tot.values()):>6}")
    return "\n".join(lines)


def failure_groups(records: list[dict]) -> list[dict]:
    """Failures grouped by (outcome, cause): count, kinds, one example."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        if r["failure"]:
            groups[(r["outcome"], r["cause"])].append(r)
    out = []
    for (outcome, cause), rs in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        out.append({"outcome": outcome, "cause": cause, "count": len(rs), "kinds": sorted({r["kind"] for r in rs}),
                    "example": rs[0]["case"], "detail": rs[0]["detail"], "cases": [r["case"] for r in rs]})
    return out


def format_failures(records: list[dict], limit: int | None = None) -> str:
    lines = []
    for g in failure_groups(records)[:limit]:
        lines.append(f"[{g['outcome']}] x{g['count']} {g['cause']} (kinds: {', '.join(g['kinds'])}); "
                     f"e.g. {g['example']}: {g['detail'][:220]}")
    return "\n".join(lines)
