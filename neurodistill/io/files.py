"""Input paths and text: a file is an existing regular file of bounded size, text is UTF-8."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, InputFileError, NeurodistillError
from .limits import MAX_TEXT_BYTES

_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def kind_of(path: Path) -> str:
    """What is at `path`, in words: 'missing', 'a dangling symlink to X', 'a directory', 'a FIFO', 'a file'."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            return f"a dangling symlink (to {os.readlink(path)!r})"
        return "missing"
    except OSError as e:
        return f"unreadable ({e.strerror or e})"
    if stat.S_ISDIR(st.st_mode):
        return "a directory"
    for test, name in _KINDS:
        if test(st.st_mode):
            return name
    return "a file"


def input_file(path: str | Path, what: str, error: type[NeurodistillError] = InputFileError,
               max_bytes: int | None = None) -> Path:
    """`path` if it is an existing regular file (symlinks followed) no larger than `max_bytes`;
    else `error` naming `what`, the path and what is there instead."""
    p = Path(path)
    kind = kind_of(p)
    if kind == "missing":
        raise error(f"{what} {str(p)!r} does not exist")
    if kind != "a file":
        raise error(f"{what} {str(p)!r} is {kind}, not a regular file")
    size = p.stat().st_size
    if max_bytes is not None and size > max_bytes:
        raise error(f"{what} {str(p)!r} is {size:,} bytes; at most {max_bytes:,} are read for this kind of file")
    return p


def read_bytes(path: str | Path, what: str, error: type[NeurodistillError] = InputFileError,
               max_bytes: int = MAX_TEXT_BYTES) -> bytes:
    p = input_file(path, what, error, max_bytes)
    try:
        with open(p, "rb") as f:
            data = f.read(max_bytes + 1)  # the size may have changed since the check
    except OSError as e:
        raise error(f"{what} {str(p)!r} cannot be read ({e.strerror or e})") from None
    if len(data) > max_bytes:
        raise error(f"{what} {str(p)!r} is over {max_bytes:,} bytes; at most that is read for this kind of file")
    return data


def read_text(path: str | Path, what: str, error: type[NeurodistillError] = InputFileError,
              max_bytes: int = MAX_TEXT_BYTES) -> str:
    """The file's text, decoded as UTF-8 (a BOM is allowed), or `error` naming the first bad byte."""
    data = read_bytes(path, what, error, max_bytes)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise error(f"{what} {str(path)!r} is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); "
                    "save it as UTF-8") from None


def read_json(path: str | Path, what: str = "file", error: type[NeurodistillError] = CheckpointError) -> Any:
    """The JSON value in a file (Python's reading: NaN and Infinity are accepted, as json.dumps writes them).
    The default error is the one of the chain's own files (manifest, simulation, summary)."""
    text = read_text(path, what, error)
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:
        reason = " ".join(str(e).split())[:120] if not isinstance(e, RecursionError) else "nested too deeply"
        raise error(f"{what} {str(path)!r} is not valid JSON ({reason})") from None


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file, read in chunks (a checkpoint or a .net file may be large)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def inside(directory: str | Path, name: str, what: str) -> Path:
    """`directory/name`, refused (`UnsafeFileError`) when a symlink makes it lead out of `directory`:
    a bundle, run or simulation directory is read as one unit, and an archive that unpacks a
    symlink such as `manifest.json -> ~/.ssh/id_rsa` must not make the tool read that file."""
    from ..errors import UnsafeFileError

    d = Path(directory)
    p = d / name
    if not p.is_symlink():
        return p
    real, root = os.path.realpath(p), os.path.realpath(d)
    if os.path.commonpath([real, root]) != root:
        raise UnsafeFileError(f"{what} {str(p)!r} is a symlink leading out of {str(d)!r} (to {real!r}); refused: "
                              "copy the file into the directory instead")
    return p
