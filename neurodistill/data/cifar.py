"""CIFAR-10 and CIFAR-100 from the official "python version" pickles; nothing is downloaded.

`--data-dir` is the folder that holds `cifar-10-batches-py/` (or `cifar-100-python/`), or that
folder itself. The pickles are parsed here rather than with `torchvision.datasets.CIFAR10`,
which insists on the md5 of the complete official files.
"""

from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms as T

from ..errors import ConfigError, DatasetError
from . import DataOptions, DatasetInfo, register_dataset, require_dir

log = logging.getLogger(__name__)

IMAGE_BYTES = 3 * 32 * 32


@dataclass(frozen=True)
class CifarSpec:
    name: str
    folder: str  # the folder inside the official archive
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_key: bytes
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    layout_files: str  # for error messages

    def layout(self, root: Path | str) -> str:
        return f"{root}/{self.folder}/{self.layout_files} (the official python version)"


CIFAR10 = CifarSpec(
    "cifar10", "cifar-10-batches-py",
    tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",), b"labels", 10,
    (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010),
    "{data_batch_1..5,test_batch}",
)
CIFAR100 = CifarSpec(
    "cifar100", "cifar-100-python", ("train",), ("test",), b"fine_labels", 100,
    (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761),
    "{train,test}",
)


class Cutout:
    """Zero one `size` x `size` square at a random centre, clipped at the borders.

    DeVries & Taylor 2017, "Improved Regularization of CNNs with Cutout". Applied after
    normalisation, so the square is the dataset mean, as in the paper's code.
    """

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        h, w = img.shape[-2:]
        # torch's RNG, not numpy's: DataLoader reseeds it in each worker, so workers differ.
        cy, cx = int(torch.randint(h, ())), int(torch.randint(w, ()))
        y0, x0 = cy - self.size // 2, cx - self.size // 2
        out = img.clone()
        out[..., max(0, y0): y0 + self.size, max(0, x0): x0 + self.size] = 0  # slicing clips the far edge
        return out

    def __repr__(self) -> str:
        return f"Cutout(size={self.size})"


class CifarImages(Dataset):
    """uint8 images [N, 32, 32, 3] and their labels, passed through a torchvision transform."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: T.Compose) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


class _ArraysOnly(pickle.Unpickler):
    # The batches are dicts of numpy arrays, lists and bytes. Refusing every other global
    # means a tampered data file cannot run code when it is read.
    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing global {module}.{name}")
        return super().find_class(module, name)


def _read_batch(path: Path, spec: CifarSpec, layout: str) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise DatasetError(f"missing CIFAR file {str(path)!r}; expected {layout}")
    try:
        with path.open("rb") as f:
            batch = _ArraysOnly(f, encoding="bytes").load()
    except Exception as err:  # a corrupt pickle can raise almost anything
        raise DatasetError(
            f"cannot read CIFAR file {str(path)!r} ({type(err).__name__}: {err}); expected {layout}"
        ) from err

    def bad(why: str) -> DatasetError:
        return DatasetError(f"malformed CIFAR file {str(path)!r}: {why}; expected {layout}")

    if not isinstance(batch, dict) or b"data" not in batch or spec.label_key not in batch:
        found = "keys " + ", ".join(sorted(map(repr, batch))) if isinstance(batch, dict) else f"a {type(batch).__name__}"
        raise bad(f"needs keys b'data' and {spec.label_key!r}, found {found}")
    data = batch[b"data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != IMAGE_BYTES:
        shape = getattr(data, "shape", None)
        raise bad(f"b'data' must be a uint8 array [N, {IMAGE_BYTES}], found {type(data).__name__} {shape}")
    try:
        labels = np.asarray(batch[spec.label_key], dtype=np.int64)
    except (TypeError, ValueError) as err:
        raise bad(f"{spec.label_key!r} is not a list of integers") from err
    if labels.shape != (len(data),):
        raise bad(f"{len(data)} images but {spec.label_key!r} has shape {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= spec.num_classes):
        raise bad(f"labels must lie in 0..{spec.num_classes - 1}, found {labels.min()}..{labels.max()}")
    # Rows are 1024 red, 1024 green, 1024 blue bytes, each a row-major 32x32 plane.
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def _read_split(folder: Path, files: tuple[str, ...], spec: CifarSpec, layout: str):
    parts = [_read_batch(folder / name, spec, layout) for name in files]
    return np.ascontiguousarray(np.concatenate([p[0] for p in parts])), np.concatenate([p[1] for p in parts])


def _find_folder(root: Path, spec: CifarSpec) -> Path:
    if (root / spec.folder).is_dir():
        return root / spec.folder
    if root.name == spec.folder or any((root / f).exists() for f in spec.train_files + spec.test_files):
        return root  # --data-dir points at the batches folder itself
    raise DatasetError(f"no {spec.folder!r} folder in {str(root)!r}; expected {spec.layout(root)}")


def cifar_transforms(spec: CifarSpec, options: DataOptions) -> tuple[T.Compose, T.Compose]:
    """(train, test) transforms: optional crop/flip, AutoAugment and Cutout on the train side."""
    if options.cutout < 0:
        raise ConfigError(f"data.cutout must be >= 0 (0 = off), got {options.cutout}")
    tail = [T.ToTensor(), T.Normalize(spec.mean, spec.std)]
    train: list = []
    if options.augment:
        train += [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()]
    if options.autoaugment:
        train.append(T.AutoAugment(T.AutoAugmentPolicy.CIFAR10))
    train += tail
    if options.cutout > 0:
        train.append(Cutout(options.cutout))
    return T.Compose(train), T.Compose(tail)


def load_cifar(spec: CifarSpec, data_dir: Path | None, options: DataOptions):
    root = require_dir(data_dir, spec.name, spec.layout("DIR"))
    folder = _find_folder(root, spec)
    layout = f"{folder}/{spec.layout_files} (the official python version)"
    train_tf, test_tf = cifar_transforms(spec, options)
    x_train, y_train = _read_split(folder, spec.train_files, spec, layout)
    x_test, y_test = _read_split(folder, spec.test_files, spec, layout)
    log.info("%s: %d train and %d test images from %s", spec.name, len(y_train), len(y_test), folder)
    info = DatasetInfo(spec.name, spec.num_classes, (3, 32, 32))
    return CifarImages(x_train, y_train, train_tf), CifarImages(x_test, y_test, test_tf), info


@register_dataset("cifar10")
def load_cifar10(data_dir: Path | None, options: DataOptions) -> tuple[Dataset, Dataset, DatasetInfo]:
    return load_cifar(CIFAR10, data_dir, options)


@register_dataset("cifar100")
def load_cifar100(data_dir: Path | None, options: DataOptions) -> tuple[Dataset, Dataset, DatasetInfo]:
    return load_cifar(CIFAR100, data_dir, options)
