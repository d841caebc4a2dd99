"""What a new user hits on the CLI (issue: silent acceptance): each through the real command."""

from __future__ import annotations

import json

from .test_cli_errors import assert_user_error, invoke


def test_export_timesteps_zero_is_refused(sim_bundle, tmp_path):
    ckpt = json.loads((sim_bundle / "manifest.json").read_text())["source"]
    assert_user_error(invoke("export", ckpt, "--timesteps", "0", "--out", str(tmp_path / "b")),
                      "--timesteps 0 is not allowed", ">= 1")
    assert not (tmp_path / "b").exists()


def test_samples_above_the_split_say_how_many_ran(sim_bundle, tmp_path):
    res = invoke("simulate", str(sim_bundle), "--samples", "100000", "--out", str(tmp_path / "s"))
    assert res.exit_code == 0, res.output
    assert "--samples 100000 asked for; the test split has 360, so 360 ran" in res.output
    assert json.loads((tmp_path / "s" / "simulation.json").read_text())["samples"] == 360


def test_simulate_and_report_keep_an_existing_output_unless_overwrite(sim_bundle, tmp_path):
    sim = tmp_path / "s"
    assert invoke("simulate", str(sim_bundle), "--samples", "8", "--out", str(sim)).exit_code == 0
    before = (sim / "simulation.json").read_bytes()
    assert_user_error(invoke("simulate", str(sim_bundle), "--samples", "16", "--out", str(sim)),
                      "already holds the output of 'neurodistill simulate' (simulation.json)", "--overwrite")
    assert (sim / "simulation.json").read_bytes() == before
    res = invoke("simulate", str(sim_bundle), "--samples", "16", "--out", str(sim), "--overwrite")
    assert res.exit_code == 0 and json.loads((sim / "simulation.json").read_text())["samples"] == 16
    rep = tmp_path / "r"
    assert invoke("report", str(sim), "--profile", "loihi2", "--out", str(rep)).exit_code == 0
    assert_user_error(invoke("report", str(sim), "--profile", "loihi2", "--out", str(rep)),
                      "already holds the output of 'neurodistill report'")
    assert invoke("report", str(sim), "--profile", "loihi2", "--out", str(rep), "--overwrite").exit_code == 0
    # an existing directory without a simulation is used as it is (as train treats its --out)
    (tmp_path / "empty").mkdir()
    assert invoke("simulate", str(sim_bundle), "--samples", "8", "--out", str(tmp_path / "empty")).exit_code == 0


def _rows(run):
    import csv

    return list(csv.DictReader((run / "metrics.csv").open()))


def test_best_pt_is_chosen_on_a_validation_split_by_default(tmp_path):
    from neurodistill.data.digits import digits_arrays
    from neurodistill.data.split import holdout_indices
    from neurodistill.train import load_checkpoint

    run = tmp_path / "run"
    res = invoke("train", "--model", "snn_digits", "--epochs", "4", "--out", str(run))
    assert res.exit_code == 0, res.output
    s = json.loads((run / "summary.json").read_text())
    y_train = digits_arrays()[1]
    tr, va = holdout_indices(y_train, 0.1, 0)
    assert s["selection"]["split"] == "validation" and s["selection"]["samples"] == len(va) == 142  # 10% of each class
    # the held-out images are not trained on: fewer batches per epoch
    assert s["train_batches"] == 4 * -(-len(tr) // 64) == 4 * 21
    rows = _rows(run)
    vals = [float(r["val_acc"]) for r in rows]
    best = vals.index(max(vals)) + 1
    assert s["best_epoch"] == best and s["best_test_acc"] == float(rows[best - 1]["test_acc"])
    assert load_checkpoint(run / "best.pt")["epoch"] == best
    assert f"epoch {best} chosen on validation" in res.output
    # export names the split its accuracy is measured on
    out = invoke("export", str(run / "best.pt"), "--calib", "32", "--out", str(tmp_path / "b")).output
    assert "calibration samples of the train split" in out


def test_the_papers_protocol_is_an_explicit_flag(tmp_path):
    run = tmp_path / "run"
    assert invoke("train", "--model", "snn_digits", "--epochs", "3", "--val-split", "0", "--out", str(run)).exit_code == 0
    s = json.loads((run / "summary.json").read_text())
    tests = [float(r["test_acc"]) for r in _rows(run)]
    assert s["selection"]["split"] == "test" and s["best_epoch"] == tests.index(max(tests)) + 1
    assert "val_acc" not in _rows(run)[0]
    assert_user_error(invoke("train", "--model", "snn_digits", "--val-split", "1.5", "--out", str(tmp_path / "x")),
                      "val_split = 1.5 is not allowed")
