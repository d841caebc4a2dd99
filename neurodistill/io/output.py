"""One rule for every output a command writes (`--out` of train, export, simulate, report, demo).

- A new directory is written as a hidden staging directory beside it and renamed into place at
  the end, so a failure or an interrupt leaves nothing at `--out`.
- An existing empty directory is used; an existing non-empty one is refused unless `--overwrite`
  is given (the demo replaces its own earlier directory without it).
- `--overwrite` removes only files this tool wrote there: the ones listed in the directory's
  marker file (`.neurodistill`, written with every output) and the command's own file names.
  A user's other files stay, whatever they are.
- `--out` as a symlink to a directory writes into that directory; a dangling symlink, a file or
  anything else that is not a directory is refused with one line.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import ConfigError
from .files import kind_of

MARKER = ".neurodistill"
_STAGE_SUFFIX = ".tmp"


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _as_created(path: str | Path, directory: bool = False) -> None:
    """Give a staged file or directory the mode a plain create would (mkstemp and mkdtemp use 0600/0700)."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def atomic_write(path: str | Path, write: Callable[[str], Any]) -> None:
    """Call `write(tmp_path)`, then rename over `path`: a reader sees the old file or the new one,
    never a partial one, even if the process is killed in between."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=_STAGE_SUFFIX, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        _as_created(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _listing(d: Path) -> list[str]:
    """Every regular file under `d` (relative POSIX paths), staging leftovers excluded."""
    out = []
    for root, dirs, files in os.walk(d):
        dirs[:] = [x for x in dirs if not (x.startswith(".") and x.endswith(_STAGE_SUFFIX))]
        for f in files:
            if f.startswith(".") and f.endswith(_STAGE_SUFFIX):
                continue
            out.append(Path(root, f).relative_to(d).as_posix())
    return sorted(out)


def read_marker(d: Path) -> tuple[str | None, list[str]]:
    """(command, files) of the marker in `d`; (None, []) if there is none or it is not ours.

    The marker is a file in a directory a user controls, so each listed path is checked to be a
    plain relative path inside `d` before anything acts on it."""
    m = d / MARKER
    if not m.is_file() or m.is_symlink() or m.stat().st_size > 16 * 2**20:
        return None, []
    try:
        data = json.loads(m.read_bytes())
    except (ValueError, OSError):
        return None, []
    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        return None, []
    files = []
    for f in data["files"]:
        if not isinstance(f, str):
            continue
        parts = PurePosixPath(f).parts
        if not parts or f.startswith("/") or any(p in ("..", ".", "") for p in parts) or "\\" in f:
            continue
        files.append(f)
    command = data.get("command")
    return command if isinstance(command, str) else None, files


def write_marker(d: Path, command: str, files: list[str]) -> None:
    body = json.dumps({"written_by": "neurodistill", "command": command,
                       "files": sorted(set(files) - {MARKER})}, indent=1) + "\n"
    atomic_write(d / MARKER, lambda tmp: Path(tmp).write_text(body))


def check_out(out: Path, overwrite: bool, what: str, flag: str = "--out", replace_own: str | None = None,
              can_overwrite: bool = True) -> Path:
    """The directory to write (a symlink resolved to its directory), after the rule above.

    `replace_own`: a command name whose own earlier output may be replaced without --overwrite."""
    kind = kind_of(out)
    if kind == "missing":
        return out
    if kind.startswith("a dangling symlink"):
        raise ConfigError(f"{flag} {str(out)!r} is {kind}; remove the link or choose another {flag}")
    if kind != "a directory":
        raise ConfigError(f"{flag} {str(out)!r} exists and is {kind}, not a directory; choose another {flag}")
    target = out.resolve() if out.is_symlink() else out
    entries = sorted(e for e in os.listdir(target) if not (e.startswith(".") and e.endswith(_STAGE_SUFFIX)))
    if not entries or overwrite:
        return target
    command, listed = read_marker(target)
    if replace_own is not None and command == replace_own:
        return target
    if command is not None:
        ours = [f for f in listed if (target / f).is_file()][:1] or entries[:1]
        fix = (f"pass --overwrite to replace it with {what}, or choose another {flag}" if can_overwrite
               else f"choose another {flag}")
        raise ConfigError(f"{flag} {str(out)!r} already holds the output of 'neurodistill {command}' ({ours[0]}); {fix}")
    visible = [e for e in entries if not e.startswith(".")] or entries
    shown = ", ".join(repr(e) for e in visible[:3]) + (", ..." if len(visible) > 3 else "")
    fix = (f"pass --overwrite to replace {what} there (files neurodistill did not write are kept), or choose another "
           f"{flag}" if can_overwrite else f"{what} is written only into a new or empty directory, or over an earlier "
           f"one; choose another {flag}")
    raise ConfigError(f"{flag} {str(out)!r} is not empty (it holds {shown}); {fix}")


def remove_own(target: Path, owned: tuple[str, ...] = (), keep: set[str] | frozenset = frozenset()) -> None:
    """Remove from `target` the files its marker lists and the `owned` names (files only, never a
    symlink's target), except those in `keep`; then the directories this emptied."""
    _, listed = read_marker(target)
    names = (set(listed) | {n for n in owned if (target / n).is_file()}) - set(keep)
    parents: set[Path] = set()
    for name in names:
        p = target / name
        if p.is_symlink() or not p.is_file():
            continue  # a user replaced it by something else: not ours any more
        p.unlink()
        parents.update(q for q in p.relative_to(target).parents if q != Path("."))
    for q in sorted(parents, key=lambda q: -len(q.parts)):
        with contextlib.suppress(OSError):
            (target / q).rmdir()  # only if empty
    (target / MARKER).unlink(missing_ok=True)


def _make_parents(d: Path) -> list[Path]:
    """Create `d`'s missing ancestors; return them (outermost first) to remove on failure."""
    made = []
    for p in reversed([d, *d.parents]):
        if not p.exists():
            try:
                p.mkdir()
            except FileExistsError:
                continue
            made.append(p)
    return made


def _remove_made(made: list[Path]) -> None:
    for p in reversed(made):
        with contextlib.suppress(OSError):
            p.rmdir()


def publish(stage: Path, target: Path, command: str, owned: tuple[str, ...] = ()) -> list[str]:
    """Move a finished staging directory to `target`: renamed if `target` is new, else its files
    replace this tool's old files there (see `remove_own`). Returns the files written."""
    files = _listing(stage)
    if not target.exists():
        write_marker(stage, command, files)
        _as_created(stage, directory=True)
        os.replace(stage, target)
        return files
    remove_own(target, owned, keep=set(files))
    for f in files:
        (target / f).parent.mkdir(parents=True, exist_ok=True)
        dest = target / f
        if dest.is_symlink() or dest.is_dir():
            raise ConfigError(f"--out {str(target)!r}: {f!r} there is "
                              f"{'a symlink' if dest.is_symlink() else 'a directory'}; neurodistill writes a file "
                              "of that name and does not replace what it did not write")
        os.replace(stage / f, dest)
    write_marker(target, command, files)
    shutil.rmtree(stage, ignore_errors=True)
    return files


def write_dir(out: Path, overwrite: bool, fill: Callable[[Path], Any], command: str, what: str,
              owned: tuple[str, ...] = (), replace_own: str | None = None) -> Any:
    """Check `out`, run `fill(stage)` in a staging directory beside it, then `publish` it.
    On any failure (or interrupt) the staging directory and any parents this call made are removed."""
    with staged(out, overwrite, command, what, owned, replace_own) as stage:
        return fill(stage)


@contextlib.contextmanager
def staged(out: Path, overwrite: bool, command: str, what: str, owned: tuple[str, ...] = (),
           replace_own: str | None = None) -> Iterator[Path]:
    """The context form of `write_dir`: yields the staging directory; publishes on a clean exit."""
    target = check_out(Path(out), overwrite, what, replace_own=replace_own)
    made = _make_parents(target.parent)
    stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=_STAGE_SUFFIX, dir=target.parent))
    try:
        yield stage
        publish(stage, target, command, owned)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        _remove_made(made)
        raise


@contextlib.contextmanager
def owned_dir(out: Path, command: str, what: str, replace_own: str | None = None) -> Iterator[Path]:
    """For a command that writes several stages in place (the demo): `out` checked by the rule,
    the tool's earlier files there removed, and on failure everything this call created removed
    again (files that were there before are never touched)."""
    target = check_out(Path(out), False, what, replace_own=replace_own, can_overwrite=False)
    made = _make_parents(target)
    if not made:
        remove_own(target)
    before = set(_listing(target))
    dirs_before = {Path(root) for root, _, _ in os.walk(target)}
    try:
        yield target
    except BaseException:
        if made:
            shutil.rmtree(made[0], ignore_errors=True)
        else:
            for f in set(_listing(target)) - before:
                (target / f).unlink(missing_ok=True)
            for root, _dirs, _files in sorted(os.walk(target), key=lambda w: -len(w[0])):
                if Path(root) not in dirs_before:
                    shutil.rmtree(root, ignore_errors=True)
        raise
    write_marker(target, command, _listing(target))
