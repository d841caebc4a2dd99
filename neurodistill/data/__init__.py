"""Datasets. Nothing here ever downloads: every loader reads what is already on disk.

Each loader returns `(train, test, info)`: two `torch.utils.data.Dataset`s whose items are
`(x, label)` and a `DatasetInfo`. Static images are `x: [C, H, W]` floats (direct encoding
repeats them T times later, in the trainer); event datasets give frames `x: [T, C, H, W]`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch.utils.data import Dataset

from ..errors import ConfigError, DatasetError


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    input_shape: tuple[int, ...]  # (C, H, W) of one frame
    frames: int | None = None  # time steps stored in each sample (event data); None: static


# Side of a resized event frame: far beyond any sensor (DVS128: 128, DAVIS346: 346 x 260).
MAX_FRAME_SIZE = 4096


@dataclass(frozen=True)
class DataOptions:
    """Loader options that come from the train config; each loader reads the ones it needs."""

    augment: bool = True  # train split: random crop + flip (images), frame_flip and frame_roll (event data)
    autoaugment: bool = False  # CIFAR AutoAugment policy (train split only)
    cutout: int = 0  # Cutout square side in pixels, 0 = off
    frames: int = 16  # event datasets: frames per sample
    frame_size: int = 0  # event datasets: frames resized to this square side (bilinear, antialiased); 0: the sensor's 128
    frame_flip: bool = False  # event datasets, train split, with augment: random horizontal flip
    frame_roll: int = 0  # event datasets, train split, with augment: random roll by up to this many pixels in y and x
    image_size: int = 224  # ImageNet crop size
    synthetic_shape: tuple[int, ...] = (3, 32, 32)
    synthetic_classes: int = 10
    synthetic_size: int = 256  # samples in the synthetic train split (test: a quarter)
    seed: int = 0

    def __post_init__(self) -> None:
        # Checked here rather than among config.py's ranges so that a loader called directly checks them too.
        for key, high in (("frame_size", MAX_FRAME_SIZE), ("frame_roll", MAX_FRAME_SIZE)):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
                raise ConfigError(f"data.{key} = {value!r} is not allowed; it must be an integer from 0 to {high}")


Loader = Callable[[Path | None, DataOptions], tuple[Dataset, Dataset, DatasetInfo]]
_LOADERS: dict[str, Loader] = {}


def register_dataset(name: str) -> Callable[[Loader], Loader]:
    def deco(fn: Loader) -> Loader:
        _LOADERS[name] = fn
        return fn

    return deco


def load_dataset(
    name: str, data_dir: str | Path | None = None, options: DataOptions | None = None
) -> tuple[Dataset, Dataset, DatasetInfo]:
    """Build the train and test splits of dataset `name` from `data_dir`."""
    _import_loaders()
    if name not in _LOADERS:
        raise DatasetError(
            f"unknown dataset {name!r}; available: {', '.join(sorted(_LOADERS))}"
        )
    path = Path(data_dir).expanduser() if data_dir is not None else None
    return _LOADERS[name](path, options or DataOptions())


def require_dir(path: Path | None, dataset: str, layout: str) -> Path:
    """The data directory, or a DatasetError that names it and the layout expected."""
    if path is None:
        raise DatasetError(f"--data-dir is required for dataset {dataset!r}; expected {layout}")
    if not path.is_dir():
        raise DatasetError(f"data directory {str(path)!r} for {dataset!r} does not exist; expected {layout}")
    return path


def _import_loaders() -> None:
    # Registration happens on import; the imports are here so that `import neurodistill.data`
    # stays cheap and optional readers load only when asked for.
    import importlib

    for module in _MODULES:
        importlib.import_module(f"{__name__}.{module}")


_MODULES = ("digits", "synthetic", "cifar", "imagenet", "dvs")
