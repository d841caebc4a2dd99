"""`simulate BUNDLE --inputs X.npz` for every bundle, and the Python API `simulate_bundle`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from neurodistill.export.bundle import dataset_samples, export_module_loihi2
from neurodistill.sim.run import simulate_bundle

from .test_cli_errors import assert_user_error, invoke
from .test_lava_residual import SHAPE, residual_net

T = 3


@pytest.fixture(scope="module")
def python_bundle(tmp_path_factory):
    """A residual net exported from Python (no checkpoint, no dataset in its manifest) and its
    calibration samples."""
    d = tmp_path_factory.mktemp("pybundle")
    data = {"synthetic_shape": list(SHAPE), "synthetic_classes": 3, "synthetic_size": 80}
    x, y = dataset_samples("synthetic", None, data, 48, "train")
    export_module_loihi2(residual_net(), SHAPE, x, y, d / "b", timesteps=T)
    np.savez(d / "xy.npz", x=x.numpy(), y=y.numpy())
    np.savez(d / "x.npz", x=x.numpy())
    return d


def test_a_python_bundle_needs_inputs_and_runs_on_them(python_bundle, tmp_path):
    b = python_bundle / "b"
    assert_user_error(invoke("simulate", str(b), "--out", str(tmp_path / "s0")), "names no dataset", "--inputs FILE.npz")
    res = invoke("simulate", str(b), "--inputs", str(python_bundle / "xy.npz"), "--out", str(tmp_path / "s"))
    assert res.exit_code == 0, res.output
    sim = json.loads((tmp_path / "s" / "simulation.json").read_text())
    manifest = json.loads((b / "manifest.json").read_text())
    # the calibration samples again: the accuracy export measured on them with its own fixed-point run
    assert sim["samples"] == 48 and sim["accuracy"] == manifest["accuracy_quantized"]
    assert sim["split"] == "given" and sim["inputs"] == str(python_bundle / "xy.npz")
    assert sim["accuracy_per_timestep"][-1]["running_mean"] == sim["accuracy"]


def test_without_labels_there_is_no_accuracy_but_a_report(python_bundle, tmp_path):
    res = invoke("simulate", str(python_bundle / "b"), "--inputs", str(python_bundle / "x.npz"), "--samples", "20",
                 "--out", str(tmp_path / "s"))
    assert res.exit_code == 0 and "no labels on 20 samples" in res.output, res.output
    sim = json.loads((tmp_path / "s" / "simulation.json").read_text())
    assert sim["accuracy"] is None and sim["accuracy_per_timestep"] is None and sim["totals"]["synaptic_events"] > 0
    assert invoke("report", str(tmp_path / "s"), "--profile", "loihi", "--out", str(tmp_path / "r")).exit_code == 0


def test_python_api_equals_the_cli(python_bundle, tmp_path):
    with np.load(python_bundle / "xy.npz") as z:
        x, y = z["x"], z["y"]
    api = simulate_bundle(python_bundle / "b", x, y, out=tmp_path / "api")
    assert invoke("simulate", str(python_bundle / "b"), "--inputs", str(python_bundle / "xy.npz"),
                  "--out", str(tmp_path / "cli")).exit_code == 0
    cli = json.loads((tmp_path / "cli" / "simulation.json").read_text())
    for key in ("accuracy", "accuracy_per_timestep", "layers", "totals", "neurobench"):
        assert api[key] == cli[key], key
    assert json.loads((tmp_path / "api" / "simulation.json").read_text())["layers"] == api["layers"]


def test_inputs_of_the_wrong_shape(python_bundle, tmp_path, sim_bundle):
    assert_user_error(invoke("simulate", str(sim_bundle), "--inputs", str(python_bundle / "xy.npz"),
                             "--out", str(tmp_path / "s")), "'x' has shape [48, 2, 6, 10]", "(N, 1, 8, 8)")
    with pytest.raises(Exception, match=r"x has shape \[4, 1, 8, 8\]"):
        simulate_bundle(python_bundle / "b", np.zeros((4, 1, 8, 8)))
