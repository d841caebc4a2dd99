"""NumPy arrays from a user's .npz (or .npy) file, checked from their headers before any is read.

np.load alone trusts the file: a header may claim a shape of 10^12 elements (allocated before a
byte is read), a member may be a deflate bomb, a random file may be taken for a pickle. Here each
member's header is read first; object dtypes are refused (they would need a pickle), and the
claimed size is bounded by `MAX_ARRAY_BYTES` and by the memory this machine has available.
Reading then takes exactly the header's byte count from the (possibly compressed) member, or
only the rows a command uses.
"""

from __future__ import annotations

import math
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..errors import DatasetError, InputFileError
from .files import input_file
from .limits import MAX_ARRAY_BYTES, check_memory

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"
_DAMAGED = (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError, NotImplementedError)


def _header(fh, where: str, name: str, error: type[InputFileError]) -> tuple[tuple[int, ...], np.dtype, bool]:
    try:
        version = np.lib.format.read_magic(fh)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(fh)
    except _DAMAGED as e:
        raise error(f"{where}: array {name!r} has no valid .npy header ({' '.join(str(e).split())[:100]})") from None
    if dtype.hasobject:
        raise error(f"{where}: array {name!r} holds Python objects (dtype {dtype}), which would need a pickle; "
                    "refused: save numbers (np.savez with numeric arrays)")
    return tuple(shape), dtype, fortran


def _checked_size(shape: tuple[int, ...], dtype: np.dtype, where: str, name: str, max_bytes: int,
                  error: type[InputFileError]) -> int:
    """The bytes the array's header claims; refused over `max_bytes` or 80% of the available memory."""
    nbytes = math.prod(int(d) for d in shape) * dtype.itemsize
    if nbytes > max_bytes:
        raise error(f"{where}: array {name!r} has shape {list(shape)} of {dtype} ({nbytes:,} bytes); at most "
                    f"{max_bytes:,} bytes are read per array")
    check_memory(nbytes, f"{where}: array {name!r} ({list(shape)} of {dtype})", error)
    return nbytes


def _read_body(fh, shape: tuple[int, ...], dtype: np.dtype, fortran: bool, rows: int | None, where: str, name: str,
               max_bytes: int, error: type[InputFileError], stored: int | None = None) -> np.ndarray:
    """The array whose header `fh` has just passed: exactly the bytes the header claims (only the
    first `rows` rows of a C-order array when `rows` is given), read into one buffer. `stored`: the
    bytes the file (or zip member) holds after the header, which must be what the header claims."""
    claimed = math.prod(int(d) for d in shape) * dtype.itemsize
    if stored is not None and stored != claimed:
        raise error(f"{where}: array {name!r} is damaged: its header claims shape {list(shape)} of {dtype} "
                    f"({claimed:,} bytes) but {stored:,} bytes follow it")
    if rows is not None and shape and not fortran and rows < shape[0]:
        shape = (rows, *shape[1:])
    nbytes = _checked_size(shape, dtype, where, name, max_bytes, error)
    buf = bytearray(nbytes)
    view, got = memoryview(buf), 0
    while got < nbytes:
        n = fh.readinto(view[got:])
        if not n:
            raise error(f"{where}: array {name!r} ends after {got:,} of its {nbytes:,} bytes (truncated)")
        got += n
    a = np.frombuffer(buf, dtype=dtype).reshape(shape, order="F" if fortran else "C")
    return a[:rows] if rows is not None and a.ndim and len(a) > rows else a


def read_arrays(path: str | Path, what: str, error: type[InputFileError] = DatasetError,
                max_bytes: int = MAX_ARRAY_BYTES, names: tuple[str, ...] | None = None,
                npy_name: str | None = None, rows: int | None = None) -> dict[str, np.ndarray]:
    """The arrays of an .npz archive (only `names` if given: others are not read), or of a plain .npy
    file as `{npy_name: array}` when `npy_name` is given. `rows`: only the first `rows` rows of each
    array (the samples a command runs) are read, so memory follows what is used, not the file's size.
    Damaged, foreign or oversized files are `error`."""
    p = input_file(path, what, error)
    where = str(p)
    with open(p, "rb") as f:
        magic = f.read(6)
        if magic == NPY_MAGIC and npy_name is not None:
            f.seek(0)
            try:
                shape, dtype, fortran = _header(f, where, npy_name, error)
                stored = p.stat().st_size - f.tell()
                return {npy_name: _read_body(f, shape, dtype, fortran, rows, where, npy_name, max_bytes, error, stored)}
            except _DAMAGED as e:
                raise error(f"{what} {where!r} is damaged ({' '.join(str(e).split())[:120]})") from None
    if magic[:4] != ZIP_MAGIC and not zipfile.is_zipfile(p):
        kind = "a plain .npy array" if magic == NPY_MAGIC else "not an .npz archive (not a zip file)"
        raise error(f"{what} {where!r} is {kind}; save arrays with np.savez(path, name=array, ...)")
    try:
        zf = zipfile.ZipFile(p)
    except _DAMAGED as e:
        raise error(f"{what} {where!r} is not a readable .npz archive ({' '.join(str(e).split())[:120]})") from None
    out: dict[str, np.ndarray] = {}
    with zf:
        members = {i.filename[:-4]: i for i in zf.infolist() if i.filename.endswith(".npy")}
        for name in names if names is not None else tuple(members):
            if name not in members:
                continue
            try:
                with zf.open(members[name]) as fh:
                    shape, dtype, fortran = _header(fh, where, name, error)
                    stored = members[name].file_size - fh.tell()  # the member's size in the zip directory
                    out[name] = _read_body(fh, shape, dtype, fortran, rows, where, name, max_bytes, error, stored)
            except _DAMAGED as e:
                raise error(f"{what} {where!r}: array {name!r} is damaged ({' '.join(str(e).split())[:120]})") from None
    return out


def member_names(path: str | Path, what: str, error: type[InputFileError] = DatasetError) -> list[str]:
    """The array names an .npz archive holds (from its directory, nothing read)."""
    p = input_file(path, what, error)
    try:
        with zipfile.ZipFile(p) as zf:
            return [i.filename[:-4] for i in zf.infolist() if i.filename.endswith(".npy")]
    except _DAMAGED as e:
        with open(p, "rb") as f:
            kind = "a plain .npy array" if f.read(6) == NPY_MAGIC else "not an .npz archive"
        raise error(f"{what} {str(p)!r} is {kind} ({' '.join(str(e).split())[:80]}); save arrays with "
                    "np.savez(path, name=array, ...)") from None
