"""Upper bounds on the work one command may be asked to do, so that a typo cannot hang the tool
or exhaust memory. Documented in docs/design.md ("Limits"); every bound is checked before the
work starts and refused with one line naming the value and the bound."""

from __future__ import annotations

from ..errors import ConfigError

# Time steps of one sample. Papers use 1..100 (static images) and up to a few hundred frames
# (event data), audio at 1 ms bins about a thousand.
MAX_TIMESTEPS = 10_000
# Samples one command runs or calibrates on (ImageNet's validation split is 50,000).
MAX_SAMPLES = 10_000_000
# Bytes of one array read from a user's .npz/.npy file, as stored (before any conversion): 2 GiB is
# 10,000 ImageNet images as uint8 or 680 as float32; simulate reads only the samples it runs.
MAX_ARRAY_BYTES = 2 * 2**30
# Bytes of one dataset and of all datasets of an HDF5 file the tool reads (deploy.h5, .net, .nir):
# the largest weight of VGG-16 on ImageNet (25088 x 4096 float32) is 411 MB, the whole network 0.6 GB.
MAX_HDF5_DATASET_BYTES = 2**30
MAX_HDF5_FILE_BYTES = 2 * 2**30
# A text file (config, JSON, profile, manifest): far above any real one.
MAX_TEXT_BYTES = 64 * 2**20
# Classes of a classification task (ImageNet-21k has 21,841).
MAX_CLASSES = 100_000
# Layers (populations) of one network in a simulation a report reads (ResNet-152 has about 155;
# the report draws a bar per layer).
MAX_LAYERS = 1000
# DataLoader worker processes per rank.
MAX_WORKERS = 256


def check_range(where: str, name: str, value: int, lo: int, hi: int, unit: str = "") -> int:
    """`value` if lo <= value <= hi, else a ConfigError naming it and the bound."""
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        what = f" {unit}" if unit else ""
        raise ConfigError(f"{where}: {name} = {value!r} is not allowed; allowed: an integer from {lo:,} to {hi:,}{what}")
    return value


def available_memory() -> int | None:
    """Bytes of memory this machine can still give (Linux: MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_memory(nbytes: int, what: str, error: type = ConfigError, factor: float = 1.0) -> None:
    """Refuse work whose estimate (`nbytes` x `factor`) exceeds 80% of the available memory."""
    need = int(nbytes * factor)
    free = available_memory()
    if free is not None and need > 0.8 * free:
        raise error(f"{what} needs about {need / 2**30:.1f} GiB of memory; {free / 2**30:.1f} GiB are available")
