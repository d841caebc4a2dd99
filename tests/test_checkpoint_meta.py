"""One reading of a checkpoint's time steps, input shape and frames: the three export targets agree.

`export --target loihi2|nir|onnx` each read T through `models.checkpoint.checkpoint_meta`; these
tests read what each target wrote (manifest, the NIR file's metadata, the ONNX graph's input)
so a target with a rule of its own would show up here."""

from __future__ import annotations

import json
from pathlib import Path

import nir
import onnx
import pytest
import torch

from neurodistill.config import resolve
from neurodistill.models.checkpoint import checkpoint_meta, load_checkpoint
from neurodistill.train import train

from .test_cli_errors import assert_user_error, invoke

TRAIN_T = 5


@pytest.fixture(scope="module")
def static_ckpt(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("meta")
    train(resolve({"model": "snn_digits", "epochs": 1, "limit_train_batches": 3, "timesteps": TRAIN_T,
                   "out": str(out)}, {}))
    return out / "last.pt"


@pytest.fixture(scope="module")
def event_ckpt(static_ckpt, tmp_path_factory) -> Path:
    """The same network recorded as trained on 3-frame event data (training T = 5 in its config)."""
    ckpt = torch.load(static_ckpt, weights_only=True)
    ckpt["dataset"]["frames"] = 3
    path = tmp_path_factory.mktemp("event") / "event.pt"
    torch.save(ckpt, path)
    return path


def _written_T(target: str, out: Path) -> int:
    """T as the files of one target hold it, besides the manifest."""
    if target == "nir":
        return int(nir.read(out / "network.nir").metadata["timesteps"])
    if target == "onnx":
        dims = onnx.load(out / "snn.onnx").graph.input[0].type.tensor_type.shape.dim
        return dims[0].dim_value  # snn.onnx takes x (T, B, C, H, W)
    import h5py

    with h5py.File(out / "deploy.h5", "r") as f:
        return int(json.loads(f.attrs["timesteps"]))


def _export(ckpt: Path, target: str, out: Path, *extra: str) -> int:
    res = invoke("export", str(ckpt), "--target", target, "--out", str(out), "--calib", "20", *extra)
    assert res.exit_code == 0, res.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["timesteps"] == _written_T(target, out), target
    return manifest["timesteps"]


@pytest.mark.parametrize("given", [None, 3])
def test_targets_agree_on_T_of_a_static_checkpoint(static_ckpt, tmp_path, given):
    extra = () if given is None else ("--timesteps", str(given))
    got = {t: _export(static_ckpt, t, tmp_path / t, *extra) for t in ("loihi2", "nir", "onnx")}
    assert got == dict.fromkeys(got, TRAIN_T if given is None else given)


def test_targets_agree_on_T_of_an_event_checkpoint(event_ckpt, tmp_path):
    """Event data runs its frame count, not the training config's T, whichever target reads it."""
    meta = checkpoint_meta(load_checkpoint(event_ckpt), str(event_ckpt))
    assert (meta.frames, meta.timesteps, meta.input_shape) == (3, 3, (1, 8, 8))
    assert {t: _export(event_ckpt, t, tmp_path / t) for t in ("nir", "onnx")} == {"nir": 3, "onnx": 3}
    # loihi2 reads the same meta and then refuses event input (its encoding is for static images)
    assert_user_error(invoke("export", str(event_ckpt), "--target", "loihi2", "--out", str(tmp_path / "l")),
                      "event (DVS) inputs are not supported by the loihi2 target")
    assert not (tmp_path / "l").exists()
