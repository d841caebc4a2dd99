"""Loaders fed tiny files written here in the real on-disk formats (nothing is downloaded)."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from neurodistill.data import DataOptions, load_dataset
from neurodistill.data.cifar import Cutout
from neurodistill.data.dvs import CIFAR10_DVS_CLASSES, stratified_split
from neurodistill.data.imagenet import load_imagenet  # noqa: F401  (registers "imagenet")
from neurodistill.errors import DatasetError

# --- CIFAR: official python-pickle batches -----------------------------------------------------


def _write_batch(path: Path, data: np.ndarray, labels: list[int], label_key: bytes = b"labels") -> None:
    batch = {b"batch_label": b"test batch", label_key: labels, b"data": data,
             b"filenames": [b"img%d.png" % i for i in range(len(labels))]}
    path.write_bytes(pickle.dumps(batch, protocol=2))


def _images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3072), dtype=np.uint8)


def _cifar10(root: Path) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i in range(1, 6):
        _write_batch(folder / f"data_batch_{i}", _images(4, i), [(i + j) % 10 for j in range(4)])
    test = _images(3, 0)
    test[0, 0] = 200  # red, row 0, column 0
    test[0, 1024 + 2 * 32 + 5] = 10  # green, row 2, column 5
    test[0, 2048 + 31 * 32 + 31] = 255  # blue, row 31, column 31
    _write_batch(folder / "test_batch", test, [7, 0, 9])
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"airplane"] * 10}, protocol=2))
    return folder


def test_cifar10_shapes_labels_and_normalisation(tmp_path):
    _cifar10(tmp_path)
    train, test, info = load_dataset("cifar10", tmp_path, DataOptions(augment=False))
    assert (info.name, info.num_classes, info.input_shape, info.frames) == ("cifar10", 10, (3, 32, 32), None)
    assert (len(train), len(test)) == (20, 3)
    x, y = train[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and y == 1
    assert [train[i][1] for i in range(20)] == [(i + j) % 10 for i in range(1, 6) for j in range(4)]
    x, y = test[0]
    assert y == 7 and [test[i][1] for i in range(3)] == [7, 0, 9]
    mean, std = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
    assert x[0, 0, 0].item() == pytest.approx((200 / 255 - mean[0]) / std[0], abs=1e-5)
    assert x[1, 2, 5].item() == pytest.approx((10 / 255 - mean[1]) / std[1], abs=1e-5)
    assert x[2, 31, 31].item() == pytest.approx((1.0 - mean[2]) / std[2], abs=1e-5)


def test_cifar10_accepts_the_batches_folder_itself_and_full_augmentation(tmp_path):
    folder = _cifar10(tmp_path)
    opts = DataOptions(augment=True, autoaugment=True, cutout=8)
    train, test, _ = load_dataset("cifar10", folder, opts)
    mean = torch.tensor((0.4914, 0.4822, 0.4465)).view(3, 1, 1)
    std = torch.tensor((0.2023, 0.1994, 0.2010)).view(3, 1, 1)

    def by_hand(rows: np.ndarray, i: int) -> torch.Tensor:  # the unaugmented tensor, from the bytes written
        return (torch.from_numpy(rows[i].reshape(3, 32, 32).astype(np.float32)) / 255 - mean) / std

    torch.manual_seed(0)
    x, _ = train[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    plain = [by_hand(_images(4, b), j) for b in range(1, 6) for j in range(4)]  # train order: batch 1..5
    moved = 0
    for i in range(len(train)):
        x, _ = train[i]
        # Cutout(8) zeroes one square, after normalisation; no CIFAR byte normalises to exactly 0, and
        # crop padding or AutoAugment fill (byte 0) does not either, so exact zeros are the square.
        zero = (x == 0).all(0)
        rows, cols = zero.any(1).nonzero().flatten(), zero.any(0).nonzero().flatten()
        assert 4 <= len(rows) <= 8 and 4 <= len(cols) <= 8, f"sample {i}: no Cutout square"
        assert zero.sum() == len(rows) * len(cols) and rows[-1] - rows[0] + 1 == len(rows)
        assert cols[-1] - cols[0] + 1 == len(cols)
        assert not torch.isclose(plain[i], torch.zeros(())).all(0).any()
        moved += not torch.allclose(x[:, ~zero], plain[i][:, ~zero], atol=1e-5)  # crop/flip/AutoAugment
    assert moved >= len(train) // 2, f"only {moved} of {len(train)} samples changed outside the Cutout square"
    # Two draws of the same index differ (fresh randomness each time).
    a, b = train[3][0], train[3][0]
    assert not torch.equal(a, b)
    # The test split never augments: it is the hand-normalised image, every time.
    test_rows = _images(3, 0)
    assert torch.allclose(test[1][0], by_hand(test_rows, 1), atol=1e-5)
    assert torch.equal(test[1][0], test[1][0])


def test_cifar100_fine_labels_and_its_own_normalisation(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    _write_batch(folder / "train", _images(6, 1), [0, 99, 5, 6, 7, 8], b"fine_labels")
    test = _images(2, 2)
    test[1, 0] = 0
    _write_batch(folder / "test", test, [42, 3], b"fine_labels")
    train, test_ds, info = load_dataset("cifar100", tmp_path, DataOptions(augment=False))
    assert (info.name, info.num_classes, info.input_shape) == ("cifar100", 100, (3, 32, 32))
    assert [train[i][1] for i in range(6)] == [0, 99, 5, 6, 7, 8]
    x, y = test_ds[1]
    assert y == 3 and x[0, 0, 0].item() == pytest.approx((0 - 0.5071) / 0.2675, abs=1e-5)


def test_cutout_zeroes_one_clipped_square():
    torch.manual_seed(0)
    full = 0
    for _ in range(200):
        out = Cutout(8)(torch.ones(3, 32, 32))
        zero = out == 0
        assert torch.equal(zero[0], zero[1]) and torch.equal(zero[0], zero[2])
        rows, cols = zero[0].any(1).nonzero().flatten(), zero[0].any(0).nonzero().flatten()
        h, w = len(rows), len(cols)
        assert 1 <= h <= 8 and 1 <= w <= 8
        assert rows[-1] - rows[0] + 1 == h and cols[-1] - cols[0] + 1 == w  # one rectangle
        assert zero[0].sum() == h * w
        # A side shorter than 8 only where the square runs off an edge.
        assert h == 8 or rows[0] == 0 or rows[-1] == 31
        assert w == 8 or cols[0] == 0 or cols[-1] == 31
        full += h * w == 64
    assert full > 100


def test_cifar_missing_dir(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(DatasetError, match="nope"):
        load_dataset("cifar10", missing)
    with pytest.raises(DatasetError, match="cifar-10-batches-py"):
        load_dataset("cifar10", tmp_path)  # exists, but holds nothing


def test_cifar_missing_batch_file(tmp_path):
    folder = _cifar10(tmp_path)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DatasetError, match=r"data_batch_3.*data_batch_1\.\.5,test_batch"):
        load_dataset("cifar10", tmp_path)


@pytest.mark.parametrize(
    "content, why",
    [
        (b"not a pickle at all", "cannot read"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)}), "needs keys"),
        (pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}), "uint8 array"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}), "2 images"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}), "0..9"),
        (pickle.dumps([1, 2, 3]), "found a list"),
        # A pickle that would run code when loaded is refused, not executed.
        (b"cos\nsystem\n(S'echo pwned'\ntR.", "refusing global os.system"),
    ],
)
def test_cifar_malformed_pickle(tmp_path, content, why):
    folder = _cifar10(tmp_path)
    (folder / "test_batch").write_bytes(content)
    with pytest.raises(DatasetError, match=why) as err:
        load_dataset("cifar10", tmp_path)
    assert str(folder / "test_batch") in str(err.value) and "\n" not in str(err.value)


# --- ImageNet: ImageFolder layout ----------------------------------------------------------------


def _imagenet(root: Path) -> None:
    for split in ("train", "val"):
        for k, cls in enumerate(("n01440764", "n01443537")):
            (root / split / cls).mkdir(parents=True)
            colour = (255, 0, 128) if k == 0 else (0, 255, 0)
            Image.new("RGB", (40, 30), colour).save(root / split / cls / "a.png")
            Image.new("RGB", (20, 50), colour).save(root / split / cls / "b.JPEG")


def test_imagenet_image_folders(tmp_path):
    _imagenet(tmp_path)
    train, val, info = load_dataset("imagenet", tmp_path, DataOptions(image_size=16))
    assert (info.name, info.num_classes, info.input_shape) == ("imagenet", 2, (3, 16, 16))
    assert (len(train), len(val)) == (4, 4)
    assert sorted(val[i][1] for i in range(4)) == [0, 0, 1, 1]
    for ds in (train, val):
        x, _ = ds[0]
        assert x.shape == (3, 16, 16) and x.dtype == torch.float32
    x, y = val[0]  # val/n01440764/a.png: uniform (255, 0, 128), exact through resize and crop
    expected = [(c / 255 - m) / s for c, m, s in zip((255, 0, 128), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), strict=True)]
    assert y == 0 and torch.allclose(x.mean((1, 2)), torch.tensor(expected), atol=1e-4)


@pytest.mark.parametrize("breakage, match", [
    (lambda root: __import__("shutil").rmtree(root / "val"), "val"),
    (lambda root: (root / "train" / "n09999999").mkdir(), "class folders differ"),
    (lambda root: [p.unlink() for p in (root / "val" / "n01443537").iterdir()], "no images"),
])
def test_imagenet_bad_layouts(tmp_path, breakage, match):
    _imagenet(tmp_path)
    breakage(tmp_path)
    with pytest.raises(DatasetError, match=match) as err:
        load_dataset("imagenet", tmp_path)
    assert str(tmp_path) in str(err.value) and "{train,val}/<class>/<image>.JPEG" in str(err.value)


def test_imagenet_empty_split_dirs(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "val").mkdir()
    with pytest.raises(DatasetError, match="no class folders"):
        load_dataset("imagenet", tmp_path)


# --- CIFAR10-DVS: AEDAT 2.0, big-endian (address, timestamp) pairs -------------------------------

DVS_X, DVS_Y = 5, 10  # sensor address of every event; SpikingJelly stores x=127-y, y=127-x, p=1-p


def _cifar10_dvs_file(path: Path, n_events: int) -> None:
    addr = (DVS_X << 1) | (DVS_Y << 8) | 0  # polarity bit 0
    events = np.empty(2 * n_events, dtype=">u4")
    events[0::2] = addr
    events[1::2] = np.arange(n_events) * 10 + 100
    path.write_bytes(b"#!AER-DAT2.0\r\n# This is a raw AE data file - do not edit\r\n" + events.tobytes())


def _cifar10_dvs(root: Path, per_class: int = 2, frames: int = 4) -> None:
    for c, name in enumerate(CIFAR10_DVS_CLASSES):
        (root / "extract" / name).mkdir(parents=True)
        for i in range(per_class):
            # frames * (c + 1) events: every frame gets c + 1, which identifies the class.
            _cifar10_dvs_file(root / "extract" / name / f"cifar10_{name}_{i}.aedat", frames * (c + 1))


def test_cifar10_dvs_frames(tmp_path):
    _cifar10_dvs(tmp_path)
    train, test, info = load_dataset("cifar10-dvs", tmp_path, DataOptions(frames=4))
    assert (info.name, info.num_classes, info.input_shape, info.frames) == ("cifar10-dvs", 10, (2, 128, 128), 4)
    assert (len(train), len(test)) == (10, 10)  # 2 per class: one each way
    assert not (tmp_path / "download").exists()  # SpikingJelly's empty download dir is removed
    for ds in (train, test):
        assert sorted(ds[i][1] for i in range(len(ds))) == list(range(10))
        for i in range(len(ds)):
            x, y = ds[i]
            assert x.shape == (4, 2, 128, 128) and x.dtype == torch.float32
            assert x.sum().item() == 4 * (y + 1)  # every event lands in a frame
            assert x[:, 1, 127 - DVS_X, 127 - DVS_Y].tolist() == [y + 1] * 4
    # DataLoader workers started by spawn get a pickled copy.
    x0, y0 = train[0]
    x1, y1 = pickle.loads(pickle.dumps(train))[0]
    assert torch.equal(x0, x1) and y0 == y1
    # Loading again reuses SpikingJelly's converted files and gives the same split.
    train2, test2, _ = load_dataset("cifar10-dvs", tmp_path, DataOptions(frames=4))
    assert train2.samples == train.samples and test2.samples == test.samples


def test_cifar10_dvs_frame_size_is_the_references_resize(tmp_path):
    from torchvision.transforms import functional as TF

    _cifar10_dvs(tmp_path)
    _, raw_test, _ = load_dataset("cifar10-dvs", tmp_path, DataOptions(frames=4))
    train, test, info = load_dataset("cifar10-dvs", tmp_path, DataOptions(frames=4, frame_size=48))
    assert info.input_shape == (2, 48, 48) and info.frames == 4
    for i in range(len(test)):
        raw, y = raw_test[i]
        x, y2 = test[i]
        assert x.shape == (4, 2, 48, 48) and y2 == y
        # torchvision's Resize of the frame tensor: what both reference codes apply (antialiased bilinear)
        torch.testing.assert_close(x, TF.resize(raw, [48, 48], antialias=True), rtol=1e-5, atol=1e-6)
        assert 0 < x.sum() < raw.sum()  # counts become mean counts per output pixel
    assert train[0][0].shape == (4, 2, 48, 48)
    # a uniform count stays that count: the mean per pixel is kept, the total shrinks with the area
    from neurodistill.data.frames import resize_frames

    flat = resize_frames(torch.full((3, 2, 128, 128), 2.0), 48)
    torch.testing.assert_close(flat, torch.full((3, 2, 48, 48), 2.0))


def _flip_roll_of(x: torch.Tensor, base: torch.Tensor, roll: int) -> set[tuple[bool, int, int]]:
    """Every (flip, dy, dx) with |dy|, |dx| <= roll that turns `base` into `x`."""
    return {(f, dy, dx) for f in (False, True) for dy in range(-roll, roll + 1) for dx in range(-roll, roll + 1)
            if torch.equal(x, torch.roll(base.flip(-1) if f else base, (dy, dx), dims=(-2, -1)))}


def test_cifar10_dvs_flip_and_roll_on_the_train_split_only(tmp_path):
    _cifar10_dvs(tmp_path)
    opts = DataOptions(frames=4, frame_size=48, frame_flip=True, frame_roll=5)
    plain, _, _ = load_dataset("cifar10-dvs", tmp_path, DataOptions(frames=4, frame_size=48))
    train, test, _ = load_dataset("cifar10-dvs", tmp_path, opts)
    base = plain[0][0]
    torch.manual_seed(0)
    seen = set()
    for _ in range(60):
        x, y = train[0]
        assert y == plain[0][1]
        found = _flip_roll_of(x, base, 5)
        assert found, "not a flip and a roll of at most 5 pixels of the resized frame"
        seen |= found
    assert {f for f, _, _ in seen} == {False, True}  # both ways flipped
    assert len({(dy, dx) for _, dy, dx in seen}) > 10 and {abs(dy) for _, dy, _ in seen} >= {0, 5}
    # the test split, and the train split with augment off (what a validation split is cut from), stay as they are
    test_plain = load_dataset("cifar10-dvs", tmp_path, DataOptions(frames=4, frame_size=48))[1]
    assert all(torch.equal(test[i][0], test_plain[i][0]) for i in range(len(test)))
    no_aug, _, _ = load_dataset("cifar10-dvs", tmp_path, DataOptions(**{**opts.__dict__, "augment": False}))
    assert all(torch.equal(no_aug[0][0], base) for _ in range(5))
    x0 = pickle.loads(pickle.dumps(train))[0][0]  # spawned workers get a pickled copy, augmentation included
    assert _flip_roll_of(x0, base, 5)


def test_event_frame_options_are_checked(tmp_path):
    from neurodistill.config import resolve
    from neurodistill.errors import ConfigError

    for key, bad in (("frame_size", -1), ("frame_size", 5000), ("frame_roll", -2)):
        with pytest.raises(ConfigError, match=rf"^recipe: data.{key} = {bad!r} is not allowed"):
            resolve({"data": {key: bad}}, {}, "recipe")
    for bad in ("48", True):
        with pytest.raises(ConfigError, match=rf"data.frame_size = {bad!r} has the wrong type"):
            resolve({"data": {"frame_size": bad}}, {}, "recipe")
    with pytest.raises(ConfigError, match="data.frame_roll = 1.5 is not allowed"):  # loaders called directly
        DataOptions(frame_roll=1.5)
    # each has its flag
    from neurodistill.cli.train_options import TRAIN_OPTIONS, config_overrides

    dests = {dest for _, dest, _, _ in TRAIN_OPTIONS}
    assert {"data.frame_size", "data.frame_flip", "data.frame_roll"} <= dests
    assert config_overrides({"opt_data__frame_size": 48, "opt_data__frame_flip": True, "opt_data__frame_roll": 5}) == \
        {"data": {"frame_size": 48, "frame_flip": True, "frame_roll": 5}}
    # mirrored gestures change class: refused before the data directory is even looked at
    with pytest.raises(ConfigError, match="frame_flip is not allowed with dvs-gesture"):
        load_dataset("dvs-gesture", tmp_path / "absent", DataOptions(frames=4, frame_flip=True))


def _broken_torchaudio(root: Path) -> Path:
    """A torchaudio whose library fails to load as 2.11.1's does beside torch 2.11.0 (the failure
    that made the locks): torch's load_library raises OSError from the linker's error."""
    pkg = root / "torchaudio"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(
        "raise OSError('Could not load this library: ' + __file__) from "
        "OSError('libtorchaudio.so: undefined symbol: torch_exception_get_what_without_backtrace')\n"
    )
    meta = root / "torchaudio-2.11.1.dist-info"
    meta.mkdir()
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: torchaudio\nVersion: 2.11.1\n")
    return root


def test_mismatched_torchaudio_is_one_error_line_naming_the_versions(tmp_path):
    from .conftest import run_cli

    data = tmp_path / "data"
    _cifar10_dvs(data)
    site = _broken_torchaudio(tmp_path / "site")
    res = run_cli("train", "--model", "snn_vgg11", "--dataset", "cifar10-dvs", "--data-dir", str(data),
                  "--epochs", "1", "--out", str(tmp_path / "run"), env_extra={"PYTHONPATH": str(site)}, timeout=300)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr
    assert lines[0].startswith("error: spikingjelly.datasets (needed for the DVS data sets) does not import")
    assert "undefined symbol: torch_exception_get_what_without_backtrace" in lines[0]
    assert f"torch {torch.__version__.split('+')[0]}, torchaudio 2.11.1" in lines[0]


def test_only_the_dvs_loaders_import_spikingjelly_datasets(tmp_path):
    """Every other module imports (and trains digits) in an environment where torchaudio is broken."""
    import subprocess
    import sys

    code = (
        "import pkgutil, importlib, sys, neurodistill\n"
        "names = [m.name for m in pkgutil.walk_packages(neurodistill.__path__, 'neurodistill.')\n"
        "         if '.lava_scripts' not in m.name]\n"
        "for n in names: importlib.import_module(n)\n"
        "from neurodistill.data import load_dataset\n"
        "load_dataset('digits')\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('torchaudio', 'spikingjelly.datasets')))\n"
        "print(len(names), bad)\n"
    )
    env = {**__import__("os").environ, "PYTHONPATH": str(_broken_torchaudio(tmp_path))}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    count, bad = res.stdout.split(" ", 1)
    assert int(count) > 40 and bad.strip() == "[]"


def test_cifar10_dvs_split_is_fixed_and_stratified():
    samples = [(f"/d/{c}/cifar10_{c}_{i}.npz", k) for k, c in enumerate(CIFAR10_DVS_CLASSES) for i in range(1000)]
    train, test = stratified_split(samples)
    assert (len(train), len(test)) == (9000, 1000)
    assert all(sum(1 for _, y in test if y == k) == 100 for k in range(10))
    assert not {p for p, _ in train} & {p for p, _ in test}
    # Independent of the order the files come in, and of the other classes.
    again_train, again_test = stratified_split(list(reversed(samples)))
    assert sorted(again_test) == sorted(test)
    only_first = stratified_split([s for s in samples if s[1] == 0])[1]
    assert only_first == [s for s in test if s[1] == 0]


def test_cifar10_dvs_missing_files(tmp_path):
    with pytest.raises(DatasetError, match="no CIFAR10-DVS files") as err:
        load_dataset("cifar10-dvs", tmp_path)
    assert str(tmp_path) in str(err.value) and "airplane" in str(err.value)
    assert list(tmp_path.iterdir()) == []  # nothing created, nothing fetched
    _cifar10_dvs(tmp_path)
    __import__("shutil").rmtree(tmp_path / "extract" / "frog")
    with pytest.raises(DatasetError, match=r"missing or empty: \['frog'\]"):
        load_dataset("cifar10-dvs", tmp_path)


def test_cifar10_dvs_bad_archive_is_reported_not_downloaded(tmp_path):
    (tmp_path / "download").mkdir()
    for name in CIFAR10_DVS_CLASSES:
        (tmp_path / "download" / f"{name}.zip").write_bytes(b"PK not really")
    with pytest.raises(DatasetError, match="airplane.zip.*md5"):
        load_dataset("cifar10-dvs", tmp_path)
    assert (tmp_path / "download" / "airplane.zip").read_bytes() == b"PK not really"  # not deleted


def test_cifar10_dvs_truncated_file_fails_cleanly_and_can_be_retried(tmp_path):
    _cifar10_dvs(tmp_path)
    bad = tmp_path / "extract" / "cat" / "cifar10_cat_1.aedat"
    bad.write_bytes(bad.read_bytes()[:-4])  # half an event
    with pytest.raises(DatasetError, match="SpikingJelly could not prepare cifar10-dvs"):
        load_dataset("cifar10-dvs", tmp_path, DataOptions(frames=4))
    # What the failed attempt created is gone, so fixing the file is enough.
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["extract"]
    _cifar10_dvs_file(bad, 16)
    train, test, _ = load_dataset("cifar10-dvs", tmp_path, DataOptions(frames=4))
    assert len(train) + len(test) == 20


def test_cifar10_dvs_interrupted_preparation_is_reported(tmp_path):
    _cifar10_dvs(tmp_path)
    (tmp_path / "events_np").mkdir()
    (tmp_path / "events_np.building").touch()  # what a killed first run leaves behind
    with pytest.raises(DatasetError, match="events_np.building' is left from an interrupted"):
        load_dataset("cifar10-dvs", tmp_path, DataOptions(frames=4))
    assert (tmp_path / "events_np").is_dir()  # not ours to delete


# --- DVS128 Gesture: AEDAT 3.1 packets + labels csv ----------------------------------------------

GESTURE_X, GESTURE_Y = 3, 7


def _packet(event_type: int, events: list[tuple[int, int]]) -> bytes:
    # 28-byte header: type, source, event size, ts offset, ts overflow, capacity, number, valid.
    header = struct.pack("<hhiiiiii", event_type, 1, 8, 4, 0, len(events), len(events), len(events))
    return header + b"".join(struct.pack("<Ii", data, ts) for data, ts in events)


def _gesture_trial(folder: Path, trial: str) -> None:
    """One recording with gesture g (1..11) performed in [g*1000, g*1000+1000) us, 4g events."""
    polarity, special = [], []
    for g in range(1, 12):
        for k in range(4 * g):
            data = (GESTURE_X << 17) | (GESTURE_Y << 2) | (1 << 1) | 1  # x, y, polarity 1, valid
            polarity.append((data, g * 1000 + k))
        special.append((1, g * 1000 + 1))  # a special event in the window: not a polarity event
    polarity.append((1, 50))  # before any gesture: in no sample
    polarity.sort(key=lambda e: e[1])
    header = b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n#!END-HEADER\r\n"
    body = _packet(0, special) + _packet(1, polarity[:40]) + _packet(1, polarity[40:])
    (folder / f"{trial}.aedat").write_bytes(header + body)
    rows = "".join(f"{g},{g * 1000},{g * 1000 + 1000}\n" for g in range(1, 12))
    (folder / f"{trial}_labels.csv").write_text("class,startTime_usec,endTime_usec\n" + rows)


def _gesture(root: Path) -> Path:
    folder = root / "extract" / "DvsGesture"
    folder.mkdir(parents=True)
    _gesture_trial(folder, "user01_fluorescent")
    _gesture_trial(folder, "user24_led")
    (folder / "trials_to_train.txt").write_text("user01_fluorescent.aedat\n")
    (folder / "trials_to_test.txt").write_text("user24_led.aedat\n\n")
    (folder / "gesture_mapping.csv").write_text("name,id\nhand_clapping,1\n")
    return folder


def test_dvs_gesture_frames(tmp_path):
    _gesture(tmp_path)
    train, test, info = load_dataset("dvs-gesture", tmp_path, DataOptions(frames=4))
    assert (info.name, info.num_classes, info.input_shape, info.frames) == ("dvs-gesture", 11, (2, 128, 128), 4)
    assert (len(train), len(test)) == (11, 11)
    for ds in (train, test):
        # Labels are the official class number minus one, "10" included.
        assert sorted(ds[i][1] for i in range(11)) == list(range(11))
        for i in range(11):
            x, y = ds[i]
            assert x.shape == (4, 2, 128, 128) and x.dtype == torch.float32
            g = y + 1
            assert x.sum().item() == 4 * g  # all events of the gesture's window, nothing else
            assert x[:, 1, GESTURE_Y, GESTURE_X].tolist() == [g] * 4


def test_dvs_gesture_missing_files(tmp_path):
    with pytest.raises(DatasetError, match="no DVS128 Gesture files") as err:
        load_dataset("dvs-gesture", tmp_path)
    assert "trials_to_train.txt" in str(err.value) and str(tmp_path) in str(err.value)
    assert list(tmp_path.iterdir()) == []
    folder = _gesture(tmp_path)
    (folder / "user24_led_labels.csv").unlink()
    with pytest.raises(DatasetError, match="missing in .*DvsGesture.*user24_led_labels.csv"):
        load_dataset("dvs-gesture", tmp_path)
    (folder / "trials_to_test.txt").unlink()
    with pytest.raises(DatasetError, match="trials_to_test.txt"):
        load_dataset("dvs-gesture", tmp_path)


def test_dvs_gesture_bad_labels_csv_fails_cleanly(tmp_path):
    folder = _gesture(tmp_path)
    (folder / "user24_led_labels.csv").write_text("class,startTime_usec,endTime_usec\n12,1000,2000\n")
    with pytest.raises(DatasetError, match="SpikingJelly could not prepare dvs-gesture") as err:
        load_dataset("dvs-gesture", tmp_path, DataOptions(frames=4))
    assert str(tmp_path) in str(err.value) and "\n" not in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["extract"]


def test_dvs_gesture_bad_archive(tmp_path):
    (tmp_path / "download").mkdir()
    (tmp_path / "download" / "DvsGesture.tar.gz").write_bytes(b"\x1f\x8b nope")
    with pytest.raises(DatasetError, match="DvsGesture.tar.gz.*md5"):
        load_dataset("dvs-gesture", tmp_path)


def test_dvs_frames_option_is_checked(tmp_path):
    from neurodistill.errors import ConfigError

    with pytest.raises(ConfigError, match="frames"):
        load_dataset("dvs-gesture", tmp_path, DataOptions(frames=0))
