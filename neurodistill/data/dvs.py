"""CIFAR10-DVS and DVS128 Gesture as frames x: float32 [T, 2, 128, 128] (or S x S), y: int.

The events are read and integrated by SpikingJelly's own dataset classes
(`spikingjelly.datasets.cifar10_dvs.CIFAR10DVS`, `spikingjelly.datasets.dvs128_gesture.
DVS128Gesture`, frames_number=T, split_by="number": T slices of equal event count, each
summed into per-polarity event counts). Nothing is ever downloaded: `--data-dir` must hold
one of

  cifar10-dvs   DIR/extract/<class>/*.aedat       the 10 class folders airplane .. truck, or
                DIR/download/<class>.zip          the 10 official archives (md5-checked)
  dvs-gesture   DIR/extract/DvsGesture/{trials_to_train.txt,trials_to_test.txt,
                    userNN_<light>.aedat,userNN_<light>_labels.csv}, or
                DIR/download/DvsGesture.tar.gz    the official archive (md5-checked)

On first use SpikingJelly writes the converted events to DIR/events_np/ and the frames to
DIR/frames_number_<T>_split_by_number/; later runs (and other T) start from those, and
once DIR/events_np/ exists the raw files are no longer read. A failed first use removes
what it created, so a fixed data dir can simply be loaded again. A lock file in DIR keeps
torchrun ranks from preparing the same dir at once.

Splits. DVS128 Gesture: the official trial lists (users 1-23 train, 24-29 test).
CIFAR10-DVS has no official split; here each class's files, in name order, are permuted
with a generator seeded by (SPLIT_SEED, class index) and the first 10 % (rounded; at least
one when a class has two or more files) are the test set: 900/100 per class on the full
data set, the same on every run, machine and training seed. This is a random split, not the
"first 100 files of each class" split of TEBN (`CIFAR10DVSTEBNSplit`), on which accuracies
come out higher; compare numbers only within one split.

Frame size and augmentation (frames.py). `data.frame_size` S resizes every frame to S x S
(`resize_frames`: event counts become mean counts per pixel); with `data.augment`,
`data.frame_flip` and `data.frame_roll` augment the train split (`flip_and_roll`). The
references train CIFAR10-DVS at 48 x 48 with a flip and a roll of up to 5 pixels. DVS128
Gesture refuses the flip: a mirrored left-hand gesture is a right-hand one.

Labels. CIFAR10-DVS: CIFAR-10 order (airplane=0 .. truck=9). DVS128 Gesture: the official
class number minus one (gesture_mapping.csv), not SpikingJelly's own index of its folder
names, which sorts "10" before "2".
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import shutil
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import ConfigError, DatasetError, InstallError
from . import DataOptions, DatasetInfo, register_dataset, require_dir
from .frames import flip_and_roll, resize_frames

log = logging.getLogger(__name__)

SPLIT_SEED = 0
TEST_FRACTION = 0.1
FRAME_SHAPE = (2, 128, 128)
LOCK_NAME = ".neurodistill-prepare.lock"
CIFAR10_DVS_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                       "dog", "frog", "horse", "ship", "truck")
GESTURE_CLASSES = 11

CIFAR10_DVS_LAYOUT = ("DIR/extract/<class>/*.aedat for the 10 classes airplane..truck, "
                      "or the official archives DIR/download/{airplane,...,truck}.zip")
GESTURE_LAYOUT = ("DIR/extract/DvsGesture/{trials_to_train.txt,trials_to_test.txt,"
                  "<trial>.aedat,<trial>_labels.csv}, or the official archive DIR/download/DvsGesture.tar.gz")

Samples = list[tuple[str, int]]


def load_frames(path: str) -> np.ndarray:
    """One sample as SpikingJelly 2.0's frame builders save it: an .npz whose "frames" is [T, 2, H, W]."""
    with np.load(path) as archive:
        return archive["frames"]


class EventFrames(Dataset):
    """Frame files written by SpikingJelly, with our labels: x float32 [T, 2, H, W], y int;
    resized to `size` (0: as stored), then flipped and rolled as asked (the train split only).

    Reads the files itself rather than through SpikingJelly, so that DataLoader workers
    started by spawn or forkserver need not import `spikingjelly.datasets` (and torchaudio).
    """

    def __init__(self, samples: Samples, size: int = 0, flip: bool = False, roll: int = 0) -> None:
        self.samples, self.size, self.flip, self.roll = samples, size, flip, roll

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[i]
        x = resize_frames(torch.as_tensor(load_frames(path), dtype=torch.float32), self.size)
        return flip_and_roll(x, self.flip, self.roll), label


def event_splits(train: Samples, test: Samples, options: DataOptions) -> tuple[EventFrames, EventFrames, tuple[int, ...]]:
    """(train, test, frame shape) with `options`' frame size, and its augmentation on the train split."""
    augment = options.augment
    shape = (FRAME_SHAPE[0], options.frame_size, options.frame_size) if options.frame_size else FRAME_SHAPE
    return (EventFrames(train, options.frame_size, augment and options.frame_flip, options.frame_roll if augment else 0),
            EventFrames(test, options.frame_size), shape)


def stratified_split(samples: Samples, test_fraction: float = TEST_FRACTION,
                     seed: int = SPLIT_SEED) -> tuple[Samples, Samples]:
    """Fixed per-class split: depends only on the file names in each class, not on run order."""
    by_class: dict[int, list[str]] = {}
    for path, label in samples:
        by_class.setdefault(label, []).append(path)
    train: Samples = []
    test: Samples = []
    for label in sorted(by_class):
        paths = sorted(by_class[label], key=lambda p: Path(p).name)
        n = len(paths)
        n_test = 0 if n < 2 else min(n - 1, max(1, round(n * test_fraction)))
        # Seeding per class keeps one class's split unchanged when another class changes.
        order = np.random.default_rng([seed, label]).permutation(n)
        test += [(paths[i], label) for i in sorted(order[:n_test])]
        train += [(paths[i], label) for i in sorted(order[n_test:])]
    return train, test


def _spikingjelly(module: str) -> types.ModuleType:
    """`spikingjelly.datasets.<module>`, the only place neurodistill imports spikingjelly.datasets.

    Its package __init__ imports torchaudio (for SpeechCommands), whose compiled library links
    against the torch release it was built with; its metadata does not say which, so a resolver
    can pair torch 2.11.0 with torchaudio 2.11.1, and loading libtorchaudio.so then fails
    (undefined symbol). Only the DVS loaders need it: everything else runs in such an
    environment, and these get one line naming both versions.
    """
    try:
        return importlib.import_module(f"spikingjelly.datasets.{module}")
    except (ImportError, OSError, RuntimeError) as e:
        # torch's load_library says only which file; the linker's reason is in the cause
        first = "; ".join((str(x).splitlines() or [type(x).__name__])[0] for x in (e, e.__cause__) if x is not None)
        raise InstallError(
            f"spikingjelly.datasets (needed for the DVS data sets) does not import: {first} "
            f"[{_versions('torch', 'torchaudio', 'torchvision', 'spikingjelly')}]; install torch, "
            "torchvision and torchaudio of one release (requirements/main.lock pins a tested set: 'make demo')"
        ) from None


def _versions(*names: str) -> str:
    found = []
    for name in names:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{name} not installed")
    return ", ".join(found)


# --- what must be on disk before SpikingJelly is called --------------------------------------


def _layout(layout: str, root: Path) -> str:
    return layout.replace("DIR", str(root))


def _verify_archives(download: Path, archives: list[tuple[str, str]], layout: str) -> None:
    from torchvision.datasets.utils import check_integrity

    for name, md5 in archives:
        path = download / name
        if not path.is_file():
            raise DatasetError(f"missing archive {str(path)!r}; expected {layout}")
        log.info("checking the md5 of %s", path)
        if not check_integrity(str(path), md5):
            # SpikingJelly would delete the file and try to download it again; we only report.
            raise DatasetError(f"archive {str(path)!r} does not have the official md5 {md5} "
                               f"(incomplete or altered?); expected {layout}")


def _check_cifar10_dvs(root: Path) -> None:
    layout = _layout(CIFAR10_DVS_LAYOUT, root)
    if (root / "events_np").is_dir():
        return
    extract = root / "extract"
    if extract.is_dir():
        # SpikingJelly converts every entry of extract/ and of each class folder: anything
        # else there would fail halfway through the conversion.
        missing = [c for c in CIFAR10_DVS_CLASSES if not any((extract / c).glob("*.aedat"))]
        extra = [p.name for p in extract.iterdir() if p.name not in CIFAR10_DVS_CLASSES]
        extra += [f"{c}/{p.name}" for c in CIFAR10_DVS_CLASSES if (extract / c).is_dir()
                  for p in (extract / c).iterdir() if p.suffix != ".aedat"]
        if missing or extra:
            raise DatasetError(f"{str(extract)!r} must hold only the 10 class folders of .aedat files; "
                               f"missing or empty: {missing}, unexpected: {sorted(extra)[:5]}; expected {layout}")
        return
    if (root / "download").is_dir():
        resources = _spikingjelly("cifar10_dvs").CIFAR10DVS.resource_url_md5()
        _verify_archives(root / "download", [(n, md5) for n, _, md5 in resources], layout)
        return
    raise DatasetError(f"no CIFAR10-DVS files in {str(root)!r}; expected {layout}")


def _check_gesture(root: Path) -> None:
    layout = _layout(GESTURE_LAYOUT, root)
    if (root / "events_np").is_dir():
        return
    aedat_dir = root / "extract" / "DvsGesture"
    if (root / "extract").is_dir():
        missing: list[str] = []
        for listing in ("trials_to_train.txt", "trials_to_test.txt"):
            path = aedat_dir / listing
            if not path.is_file():
                missing.append(listing)
                continue
            trials = [t.strip() for t in path.read_text().splitlines() if t.strip()]
            if not trials:
                raise DatasetError(f"{str(path)!r} lists no trials; expected {layout}")
            for trial in trials:
                # The labels file name is the one SpikingJelly derives from the trial name.
                for need in (trial, f"{Path(trial).stem}_labels.csv"):
                    if not (aedat_dir / need).is_file():
                        missing.append(need)
        if missing:
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise DatasetError(f"missing in {str(aedat_dir)!r}: {', '.join(missing[:5])}{more}; expected {layout}")
        return
    if (root / "download").is_dir():
        resources = _spikingjelly("dvs128_gesture").DVS128Gesture.resource_url_md5()
        md5 = {n: m for n, _, m in resources}
        _verify_archives(root / "download", [("DvsGesture.tar.gz", md5["DvsGesture.tar.gz"])], layout)
        return
    raise DatasetError(f"no DVS128 Gesture files in {str(root)!r}; expected {layout}")


# --- calling SpikingJelly --------------------------------------------------------------------


def _offline(cls: type) -> type:
    """`cls` with SpikingJelly's download step disarmed (the `_check_...`/`_download_...`
    hooks of spikingjelly 2.0.0's NeuromorphicDatasetFolder.prepare_raw_dataset)."""

    class Offline(cls):  # type: ignore[misc, valid-type]
        @classmethod
        def _check_downloaded_files(klass, download_root: Path) -> None:
            # Our pre-check verified the archives; SpikingJelly's would delete a mismatching
            # file and fetch it again.
            return

        @classmethod
        def _download_all_files(klass, download_root: Path) -> None:
            # SpikingJelly calls this just after creating an empty download/ because there was
            # none; with extract/ present nothing is needed from it.
            if (download_root.parent / "extract").is_dir():
                download_root.rmdir()
                return
            raise DatasetError(f"no raw files in {str(download_root.parent)!r} and downloading is off")

    Offline.__name__ = Offline.__qualname__ = f"Offline{cls.__name__}"
    return Offline


@contextmanager
def _preparation_lock(root: Path) -> Iterator[None]:
    # torchrun starts every rank on the same data dir; one prepares, the others then reuse.
    try:
        import fcntl

        handle = open(root / LOCK_NAME, "a")
    except (ImportError, OSError):  # no fcntl (Windows) or a read-only dir (already prepared)
        handle = None
    if handle is None:
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _generated(root: Path, frames: int) -> tuple[list[Path], list[Path]]:
    """(folders, ".building" markers) that SpikingJelly 2.0 may create in `root`."""
    folders = [root / "download", root / "extract", root / "events_np",
               root / f"frames_number_{frames}_split_by_number"]
    return folders, [p.with_name(p.name + ".building") for p in folders[2:]]


def _remove(paths: list[Path]) -> None:
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists() or path.is_symlink():
            path.unlink(missing_ok=True)


def _build(name: str, root: Path, frames: int, build: Callable[[], list]) -> list:
    """Run `build` (SpikingJelly constructors); on failure remove whatever it created."""
    with _preparation_lock(root):
        folders, markers = _generated(root, frames)
        for marker in markers:
            if marker.exists():  # we hold the lock, so no one is still building
                partial = marker.with_name(marker.name.removesuffix(".building"))
                raise DatasetError(f"{str(marker)!r} is left from an interrupted preparation of {name}; "
                                   f"delete it and {str(partial)!r}, then load again")
        before = {p for p in folders if p.exists()}
        if folders[-1] not in before:
            log.info("%s: SpikingJelly is integrating %d frames per sample into %s "
                     "(first use; this reads every recording once)", name, frames, folders[-1])
        try:
            return build()
        except BaseException as err:
            _remove([p for p in folders + markers if p not in before])
            if isinstance(err, DatasetError) or not isinstance(err, Exception):
                raise
            # Whatever SpikingJelly raises while reading the raw files (ValueError, struct.error,
            # MemoryError from a garbage packet size, ...) is a problem with those files.
            log.debug("SpikingJelly failed on %s", root, exc_info=True)
            hint = ("SpikingJelly writes its converted files there: is it writable?"
                    if isinstance(err, PermissionError)
                    else "is a file under extract/ or download/ truncated or corrupt?")
            raise DatasetError(f"SpikingJelly could not prepare {name} in {str(root)!r} "
                               f"({type(err).__name__}: {err}); {hint}") from err


def _relabel(folder, label_of: dict[str, int], name: str) -> Samples:
    """DatasetFolder samples with labels from the folder names, not DatasetFolder's index."""
    if set(folder.classes) != set(label_of):
        raise DatasetError(f"{name}: SpikingJelly's frames in {str(folder.root)!r} have class folders "
                           f"{folder.classes}, expected {sorted(label_of)}; delete that folder and retry")
    return [(path, label_of[folder.classes[idx]]) for path, idx in folder.samples]


def _frames(options: DataOptions) -> int:
    if not isinstance(options.frames, int) or options.frames < 1:
        raise ConfigError(f"data.frames must be a positive integer, got {options.frames!r}")
    return options.frames


@register_dataset("cifar10-dvs")
def load_cifar10_dvs(data_dir: Path | None, options: DataOptions) -> tuple[Dataset, Dataset, DatasetInfo]:
    frames = _frames(options)
    root = require_dir(data_dir, "cifar10-dvs", CIFAR10_DVS_LAYOUT)
    _check_cifar10_dvs(root)
    CIFAR10DVS = _spikingjelly("cifar10_dvs").CIFAR10DVS

    def build() -> list:
        return [_offline(CIFAR10DVS)(str(root), data_type="frame", frames_number=frames, split_by="number")]

    (folder,) = _build("cifar10-dvs", root, frames, build)
    samples = _relabel(folder, {c: i for i, c in enumerate(CIFAR10_DVS_CLASSES)}, "cifar10-dvs")
    train, test = stratified_split(samples)
    log.info("cifar10-dvs: %d train and %d test samples (fixed 90/10 split) from %s", len(train), len(test), root)
    train_ds, test_ds, shape = event_splits(train, test, options)
    return train_ds, test_ds, DatasetInfo("cifar10-dvs", len(CIFAR10_DVS_CLASSES), shape, frames=frames)


@register_dataset("dvs-gesture")
def load_dvs_gesture(data_dir: Path | None, options: DataOptions) -> tuple[Dataset, Dataset, DatasetInfo]:
    frames = _frames(options)
    if options.frame_flip:
        raise ConfigError("data.frame_flip is not allowed with dvs-gesture: mirrored, a left-hand or clockwise "
                          "gesture becomes a right-hand or anticlockwise one, another class; leave it off")
    root = require_dir(data_dir, "dvs-gesture", GESTURE_LAYOUT)
    _check_gesture(root)
    DVS128Gesture = _spikingjelly("dvs128_gesture").DVS128Gesture

    def build() -> list:
        cls = _offline(DVS128Gesture)
        return [cls(str(root), train=train, data_type="frame", frames_number=frames, split_by="number")
                for train in (True, False)]

    train_folder, test_folder = _build("dvs-gesture", root, frames, build)
    label_of = {str(k): k for k in range(GESTURE_CLASSES)}
    train = _relabel(train_folder, label_of, "dvs-gesture")
    test = _relabel(test_folder, label_of, "dvs-gesture")
    log.info("dvs-gesture: %d train and %d test samples from %s", len(train), len(test), root)
    train_ds, test_ds, shape = event_splits(train, test, options)
    return train_ds, test_ds, DatasetInfo("dvs-gesture", GESTURE_CLASSES, shape, frames=frames)
