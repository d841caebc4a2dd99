"""The papers' recipes (examples/*.yaml): each one loads through the real config reader, says
which paper, table and setting it reproduces, and trains one step on generated data of its shapes.

The step keeps everything the recipe sets (model, method, backprop, neuron, T, augmentation, loss
settings); only the epochs, the batches, the device, the workers, the output directory and where
the data comes from are overridden. CIFAR and CIFAR10-DVS recipes read files written here in the
official formats, so their real loaders and augmentation run; ImageNet recipes read the synthetic
dataset at the recipe's image size and 1000 classes (an ImageNet folder of 1000 classes is too slow
to evaluate here; its crop and flip are tested in tests/test_data_loaders.py).
"""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from neurodistill.config import TrainConfig, read_config_file, resolve
from neurodistill.data.dvs import CIFAR10_DVS_CLASSES
from neurodistill.models import list_models

from .conftest import ROOT

RECIPES = sorted((ROOT / "examples").glob("*.yaml"))
HEADER = ("Paper:", "Table:", "Setting:", "Run:")
# What a recipe must set itself rather than inherit from a default (a default can change).
FIXED = ("model", "dataset", "method", "epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay",
         "schedule", "val_split", "out")
FIXED_SPIKING = ("backprop", "timesteps", "neuron.kind", "neuron.tau", "neuron.decay_input", "neuron.v_threshold",
                 "neuron.reset", "neuron.detach_reset", "neuron.surrogate")
FIXED_DATA = {"cifar10": ("augment", "autoaugment", "cutout"), "cifar100": ("augment", "autoaugment", "cutout"),
              "imagenet": ("augment", "image_size"), "cifar10-dvs": ("augment", "frames", "frame_size", "frame_flip",
                                                                     "frame_roll")}
STEP = {"epochs": 1, "batch_size": 2, "limit_train_batches": 1, "device": "cpu", "workers": 0}


def _spiking() -> dict[str, bool]:
    return {s.name: s.spiking for s in list_models()}


def _has(values: dict, dotted: str) -> bool:
    for part in dotted.split("."):
        if not isinstance(values, dict) or part not in values:
            return False
        values = values[part]
    return True


def test_the_papers_recipes_ship():
    names = {p.name for p in RECIPES}
    assert {"cifar100-tser.yaml", "cifar100-ann-resnet34.yaml", "cifar10-resnet19-tser.yaml", "cifar100-esd.yaml",
            "cifar10-rate-bp.yaml", "cifar100-tssd.yaml", "cifar10-dvs-esd.yaml"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_names_its_paper_and_sets_what_the_paper_fixes(path):
    text = path.read_text()
    head = [line[1:].strip() for line in text.splitlines() if line.startswith("#")]
    for field in HEADER:
        assert any(line.startswith(field) for line in head), f"{path.name}: no '# {field}' line in the header"
    values = read_config_file(path)
    cfg = resolve(values, {}, str(path))
    fixed = FIXED + (FIXED_SPIKING if _spiking()[cfg.model] else ())
    fixed += tuple(f"data.{k}" for k in FIXED_DATA[cfg.dataset])
    fixed += ("teacher",) if cfg.method in ("kd", "tser") else ()
    missing = [k for k in fixed if not _has(values, k)]
    assert not missing, f"{path.name} leaves {missing} to the defaults"
    # a reproduction trains on the whole training split and says what choosing best.pt on test means
    assert cfg.val_split == 0
    above = []
    for line in reversed(text[:text.index("\nval_split:")].splitlines()):
        if not line.startswith("#"):
            break
        above.insert(0, line)
    caveat = " ".join(above)
    assert "optimistic" in caveat and re.search(r"test split|validation set", caveat), \
        f"{path.name}: say above val_split what choosing best.pt on the test data means"
    assert cfg.out.startswith("runs/")


def test_every_teacher_is_trained_by_a_recipe():
    configs = {p.name: resolve(read_config_file(p), {}, str(p)) for p in RECIPES}
    best = {f"{c.out}/best.pt": (name, c) for name, c in configs.items()}
    students = [(name, c) for name, c in configs.items() if c.teacher]
    assert students
    for name, c in students:
        assert c.teacher in best, f"{name}: no recipe writes its teacher {c.teacher}"
        teacher_name, t = best[c.teacher]
        assert not _spiking()[t.model] and t.dataset == c.dataset, (name, teacher_name)
        assert teacher_name in (Path(ROOT / "examples" / name).read_text()), f"{name} should name {teacher_name}"


# --- generated data in each dataset's own format ------------------------------------------------


def _cifar(root: Path, dataset: str) -> Path:
    rng = np.random.default_rng(0)

    def write(path: Path, n: int, classes: int, key: bytes) -> None:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        path.write_bytes(pickle.dumps({key: [int(v) for v in rng.integers(0, classes, n)], b"data": data}, protocol=2))

    if dataset == "cifar10":
        folder = root / "cifar-10-batches-py"
        folder.mkdir(parents=True)
        for i in range(1, 6):
            write(folder / f"data_batch_{i}", 2, 10, b"labels")
        write(folder / "test_batch", 3, 10, b"labels")
    else:
        folder = root / "cifar-100-python"
        folder.mkdir(parents=True)
        write(folder / "train", 6, 100, b"fine_labels")
        write(folder / "test", 3, 100, b"fine_labels")
    return root


def _cifar10_dvs(root: Path, events: int) -> Path:
    """AEDAT 2.0 recordings of `events` events at random sensor addresses, one per class and a second
    for the first class: the fixed split then tests on that one (evaluating 10 frames is the slow part)."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(CIFAR10_DVS_CLASSES):
        (root / "extract" / name).mkdir(parents=True)
        for i in range(2 if c == 0 else 1):
            x, y, p = rng.integers(0, 128, events), rng.integers(0, 128, events), rng.integers(0, 2, events)
            stream = np.empty(2 * events, dtype=">u4")
            stream[0::2] = (x << 1) | (y << 8) | p
            stream[1::2] = np.arange(events) * 10 + 100
            (root / "extract" / name / f"cifar10_{name}_{i}.aedat").write_bytes(
                b"#!AER-DAT2.0\r\n# generated\r\n" + stream.tobytes())
    return root


def _data(cfg: TrainConfig, root: Path) -> dict:
    """Overrides that point the recipe at generated data of its shapes."""
    if cfg.dataset in ("cifar10", "cifar100"):
        return {"data_dir": str(_cifar(root, cfg.dataset))}
    if cfg.dataset == "cifar10-dvs":
        return {"data_dir": str(_cifar10_dvs(root, 8 * cfg.data.frames))}
    assert cfg.dataset == "imagenet", f"no generated data for {cfg.dataset}: add it here"
    size = cfg.data.image_size
    return {"dataset": "synthetic", "data_dir": None,
            "data": {"synthetic_shape": [3, size, size], "synthetic_classes": 1000, "synthetic_size": 2}}


def _one_step(path: Path, tmp: Path, teacher: str | None = None) -> tuple[TrainConfig, dict, dict]:
    """(the recipe as written, the config the run resolved, its summary) of one training step."""
    from neurodistill.train import train

    values = read_config_file(path)
    written = resolve(values, {}, str(path))
    overrides = {**STEP, **_data(written, tmp / "data"), "out": str(tmp / "run")}
    if teacher:
        overrides["teacher"] = teacher
    summary = train(resolve(values, overrides, str(path)))
    ran = yaml.safe_load((tmp / "run" / "config.yaml").read_text())
    return written, ran, summary


@pytest.mark.slow
@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_trains_one_step(path, tmp_path):
    written = resolve(read_config_file(path), {}, str(path))
    teacher = None
    if written.teacher:
        teacher_recipe = next(p for p in RECIPES if f"{resolve(read_config_file(p), {}, str(p)).out}/best.pt"
                              == written.teacher)
        _one_step(teacher_recipe, tmp_path / "teacher")
        teacher = str(tmp_path / "teacher" / "run" / "best.pt")
    written, ran, summary = _one_step(path, tmp_path, teacher)
    assert summary["train_batches"] == 1 and np.isfinite(summary["test_acc"])
    kept = written.to_dict()
    for key in ("model", "method", "backprop", "timesteps", "optimizer", "lr", "weight_decay", "schedule", "seed",
                "val_split", "neuron", "loss", "tssd", "esd"):
        assert ran[key] == kept[key], key
    if written.dataset != "imagenet":  # the synthetic stand-in has no augmentation to keep
        assert ran["dataset"] == written.dataset
        assert {k: ran["data"][k] for k in FIXED_DATA[written.dataset]} == \
               {k: kept["data"][k] for k in FIXED_DATA[written.dataset]}
    metrics = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert len(metrics) == 2, metrics  # a header and the one epoch
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["method"] == written.method


@pytest.mark.parametrize("bad, match", [
    ({"neuron": {"tua": 1.25}}, "unknown key 'neuron.tua'"),
    ({"data": {"frame_size": -48}}, "data.frame_size = -48 is not allowed"),
    ({"esd": {"beta": "0.1"}}, "esd.beta = '0.1' has the wrong type"),
    ({"weight_decay": "5e-4"}, "weight_decay = '5e-4' has the wrong type"),  # YAML reads 5e-4 as a string
])
def test_a_recipe_with_an_unknown_key_or_a_refused_value_fails(tmp_path, bad, match):
    from neurodistill.config import merge
    from neurodistill.errors import ConfigError

    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(merge(read_config_file(ROOT / "examples" / "cifar10-dvs-esd.yaml"), bad)))
    with pytest.raises(ConfigError, match=re.escape(match)):
        resolve(read_config_file(path), {}, str(path))
