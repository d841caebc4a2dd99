"""HDF5 files opened so that they cannot make libhdf5 open anything else.

An HDF5 file can pull other files in: an external link resolves to an object of another file,
a dataset with external storage reads its bytes from named raw files, a virtual dataset maps
regions of datasets in other files, and a dataset whose filter libhdf5 does not know makes it
search its plugin directories for a shared library to load. All of it happens inside libhdf5,
lazily, when the object is touched, where no Python audit hook sees it. So before a reader
touches anything, `open_hdf5` walks every object of the file by its links alone and refuses
the file if any of these is present, naming the object; it also bounds each dataset's size
from its header, so that a header claiming terabytes is refused before anything is allocated.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from pathlib import Path

import h5py

from ..errors import CheckpointError, InputFileError, UnsafeFileError
from .files import input_file
from .limits import MAX_HDF5_DATASET_BYTES, MAX_HDF5_FILE_BYTES

# Filters built into libhdf5 or registered by h5py itself: none of them loads a plugin.
SAFE_FILTERS = {
    h5py.h5z.FILTER_DEFLATE: "gzip", h5py.h5z.FILTER_SHUFFLE: "shuffle", h5py.h5z.FILTER_FLETCHER32: "fletcher32",
    h5py.h5z.FILTER_SZIP: "szip", h5py.h5z.FILTER_NBIT: "nbit", h5py.h5z.FILTER_SCALEOFFSET: "scaleoffset",
    h5py.h5z.FILTER_LZF: "lzf",
}
MAX_OBJECTS = 1_000_000  # groups and datasets; lava-dl's largest networks hold a few hundred
MAX_DEPTH = 64


def check_objects(f: h5py.File, where: str, max_dataset_bytes: int = MAX_HDF5_DATASET_BYTES) -> int:
    """Refuse (`UnsafeFileError`) links out of the file, external storage, virtual datasets and
    unknown filters anywhere in `f`; refuse (`InputFileError`) datasets over `max_dataset_bytes`.
    Returns the number of objects checked. Touches links and headers only, never data."""
    seen: set[tuple] = set()
    count, total = 0, 0

    def walk(group: h5py.Group, path: str, depth: int) -> None:
        nonlocal count, total
        if depth > MAX_DEPTH:
            raise InputFileError(f"{where!r}: {path} is nested more than {MAX_DEPTH} groups deep")
        for name in group:
            child = f"{path.rstrip('/')}/{name}"
            link = group.get(name, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                raise UnsafeFileError(f"{where!r}: {child} is an HDF5 external link (to {link.filename!r}); "
                                      "refused: neurodistill reads no file beyond the ones it is given")
            if isinstance(link, h5py.SoftLink):
                raise UnsafeFileError(f"{where!r}: {child} is an HDF5 soft link (to {link.path!r}); refused: the "
                                      "files neurodistill reads hold plain groups and datasets only")
            obj = group.get(name)
            if obj is None:  # a hard link to an object whose header is damaged
                raise InputFileError(f"{where!r}: object {child} cannot be read (damaged object header)")
            count += 1
            if count > MAX_OBJECTS:
                raise InputFileError(f"{where!r} holds more than {MAX_OBJECTS:,} objects")
            key = (obj.id.fileno, h5py.h5o.get_info(obj.id).addr)
            if key in seen:  # the same object under a second hard link: checked already (and no cycles)
                continue
            seen.add(key)
            if isinstance(obj, h5py.Group):
                walk(obj, child, depth + 1)
            elif isinstance(obj, h5py.Dataset):
                total += check_dataset(obj, child, where, max_dataset_bytes)
                if total > MAX_HDF5_FILE_BYTES:
                    raise InputFileError(f"{where!r}: its datasets hold more than {MAX_HDF5_FILE_BYTES:,} bytes in all "
                                         "(at most that is read from one file)")

    walk(f, "/", 0)
    return count


def check_dataset(ds: h5py.Dataset, path: str, where: str, max_bytes: int = MAX_HDF5_DATASET_BYTES) -> int:
    """Refuse a dataset that reads other files or loads a plugin, or is over `max_bytes`; its bytes."""
    dcpl = ds.id.get_create_plist()
    if dcpl.get_layout() == h5py.h5d.VIRTUAL:
        raise UnsafeFileError(f"{where!r}: dataset {path} is an HDF5 virtual dataset (its data lives in other "
                              "files); refused: neurodistill reads no file beyond the ones it is given")
    if dcpl.get_external_count() > 0:
        name = dcpl.get_external(0)[0]
        raise UnsafeFileError(f"{where!r}: dataset {path} keeps its data in an external file "
                              f"({name.decode('utf-8', 'replace')!r}); refused: neurodistill reads no file beyond "
                              "the ones it is given")
    for i in range(dcpl.get_nfilters()):
        fid = dcpl.get_filter(i)[0]
        if fid not in SAFE_FILTERS:
            raise UnsafeFileError(f"{where!r}: dataset {path} uses HDF5 filter {fid}, which would be loaded as a "
                                  f"plugin; allowed filters: {', '.join(sorted(SAFE_FILTERS.values()))}")
    shape = ds.shape or ()
    size = math.prod(shape) * ds.dtype.itemsize if shape is not None else 0
    if size > max_bytes:
        raise InputFileError(f"{where!r}: dataset {path} has shape {tuple(shape)} ({size:,} bytes); at most "
                             f"{max_bytes:,} bytes are read per dataset")
    return size


@contextlib.contextmanager
def open_hdf5(path: str | Path, what: str, error: type[InputFileError] = CheckpointError,
              max_dataset_bytes: int = MAX_HDF5_DATASET_BYTES) -> Iterator[h5py.File]:
    """The file open for reading after `check_objects`; a file h5py cannot open is `error`.

    Errors that h5py raises while the caller reads (damaged data) are the caller's to translate."""
    p = input_file(path, what, error)
    where = str(p)
    try:
        f = h5py.File(p, "r")
    except (OSError, RuntimeError, ValueError) as e:  # not HDF5, truncated, damaged superblock
        raise error(f"{what} {where!r} cannot be read as HDF5 ({' '.join(str(e).split())[:160]})") from None
    with f:
        try:
            check_objects(f, where, max_dataset_bytes)
        except (OSError, RuntimeError, KeyError, ValueError) as e:  # damaged object headers
            raise error(f"{what} {where!r} cannot be read as HDF5 ({' '.join(str(e).split())[:160]})") from None
        yield f
