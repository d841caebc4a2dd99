"""`simulate` records the accuracy of each time step from the simulated readout itself."""

from __future__ import annotations

import json

import pytest
import torch

from neurodistill.sim.step_accuracy import from_logits, from_readout
from neurodistill.train import load_checkpoint

from .test_simulate import _sim


def test_readout_per_step_by_hand():
    # two samples, K = 2; readout voltage after each of 3 steps (it integrates: v[t] = sum of steps 1..t)
    v = torch.tensor([[[5, 0], [0, 2]], [[5, 9], [1, 2]], [[6, 9], [9, 2]]])
    y = torch.tensor([0, 1])
    alone, running = from_readout(v, y)
    # steps alone: [5,0],[0,2] -> 0,1 (2 right); [0,9],[1,0] -> 1,0 (0 right); [1,0],[8,0] -> 0,0 (1 right)
    assert alone == [2, 0, 1]
    # running: [5,0],[0,2] -> 2 right; [5,9],[1,2] -> 1,1 (1 right); [6,9],[9,2] -> 1,0 (0 right)
    assert running == [2, 1, 0]
    logits = torch.tensor([[[1.0, 0.0]], [[0.0, 3.0]]])  # one sample, two steps
    assert from_logits(logits, torch.tensor([0])) == ([1, 0], [1, 0])  # mean after 2 steps: [0.5, 1.5]


def test_float_per_step_equals_the_trained_models(sim_bundle, tmp_path):
    """The float backend on the whole test split against the checkpoint's own test evaluation
    (training's evaluate, the unfolded spikingjelly model): every step, alone and running."""
    sim = _sim(sim_bundle, tmp_path, "float", 360)
    ckpt = load_checkpoint(json.loads((sim_bundle / "manifest.json").read_text())["source"])
    want = [{"t": p["t"], "alone": p["alone"], "running_mean": p["running_mean"]} for p in ckpt["test"]["per_timestep"]]
    assert sim["samples"] == 360 and sim["accuracy_per_timestep"] == want
    assert want[-1]["running_mean"] == sim["accuracy"]


def test_fxp_per_step_ends_at_its_accuracy(sim_bundle, tmp_path):
    for extra in ((), ("--all-steps",)):  # the readout's window, or every chip step (pipeline fill first)
        sim = _sim(sim_bundle, tmp_path / str(len(extra)), "fxp", 40, *extra)
        per = sim["accuracy_per_timestep"]
        assert [p["t"] for p in per] == [1, 2, 3, 4] and per[-1]["running_mean"] == sim["accuracy"]
    assert json.loads((tmp_path / "0" / "simulation.json").read_text())["accuracy_per_timestep"] == per


@pytest.mark.lava
def test_lava_per_step_equals_fxp(sim_bundle, tmp_path, lava_py):
    lava = _sim(sim_bundle, tmp_path / "l", "lava", 12, "--lava-python", lava_py)
    assert lava["accuracy_per_timestep"] == _sim(sim_bundle, tmp_path / "q", "fxp", 12)["accuracy_per_timestep"]
