"""ImageNet (or any dataset in the same layout) from class folders; nothing is downloaded.

Layout: `DIR/train/<class>/<image>` and `DIR/val/<class>/<image>`, the same class folders in
both (the usual "val re-sorted into class folders" layout). Labels are the class folders in
sorted order, as `torchvision.datasets.ImageFolder` numbers them.
"""

from __future__ import annotations

import logging
from pathlib import Path

from torch.utils.data import Dataset
from torchvision import transforms as T
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import find_classes

from ..errors import ConfigError, DatasetError
from . import DataOptions, DatasetInfo, register_dataset, require_dir

log = logging.getLogger(__name__)

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
LAYOUT = "DIR/{train,val}/<class>/<image>.JPEG"


def _layout(root: Path) -> str:
    return LAYOUT.replace("DIR", str(root))


def imagenet_transforms(size: int, augment: bool) -> tuple[T.Compose, T.Compose]:
    """(train, val) transforms; val resizes to size*256/224 and centre-crops, the usual ratio."""
    tail = [T.ToTensor(), T.Normalize(MEAN, STD)]
    val = T.Compose([T.Resize(int(size * 256 / 224)), T.CenterCrop(size), *tail])
    if not augment:
        return val, val
    return T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), *tail]), val


def _classes(split_dir: Path, root: Path) -> list[str]:
    if not split_dir.is_dir():
        raise DatasetError(f"missing folder {str(split_dir)!r}; expected {_layout(root)}")
    try:
        return find_classes(str(split_dir))[0]
    except FileNotFoundError as err:
        raise DatasetError(f"no class folders in {str(split_dir)!r}; expected {_layout(root)}") from err


def _image_folder(split_dir: Path, root: Path, transform: T.Compose) -> ImageFolder:
    try:
        return ImageFolder(str(split_dir), transform=transform)
    except FileNotFoundError as err:  # ImageFolder's "Found no valid file for the classes ..."
        raise DatasetError(f"no images in {str(split_dir)!r} ({err}); expected {_layout(root)}") from err


@register_dataset("imagenet")
def load_imagenet(data_dir: Path | None, options: DataOptions) -> tuple[Dataset, Dataset, DatasetInfo]:
    if options.image_size < 1:
        raise ConfigError(f"data.image_size must be a positive number of pixels, got {options.image_size}")
    root = require_dir(data_dir, "imagenet", LAYOUT)
    train_dir, val_dir = root / "train", root / "val"
    train_classes, val_classes = _classes(train_dir, root), _classes(val_dir, root)
    if train_classes != val_classes:
        # Same count but other names would silently shift every label after the first mismatch.
        only_train = sorted(set(train_classes) - set(val_classes))[:3]
        only_val = sorted(set(val_classes) - set(train_classes))[:3]
        raise DatasetError(
            f"class folders differ between {str(train_dir)!r} ({len(train_classes)}) and "
            f"{str(val_dir)!r} ({len(val_classes)}): only in train {only_train}, only in val {only_val}; "
            f"expected {_layout(root)} with the same classes in both"
        )
    train_tf, val_tf = imagenet_transforms(options.image_size, options.augment)
    train, val = _image_folder(train_dir, root, train_tf), _image_folder(val_dir, root, val_tf)
    log.info("imagenet: %d classes, %d train and %d val images from %s",
             len(train_classes), len(train), len(val), root)
    info = DatasetInfo("imagenet", len(train_classes), (3, options.image_size, options.image_size))
    return train, val, info
