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
                      "already holds a simulation (simulation.json)", "--overwrite")
    assert (sim / "simulation.json").read_bytes() == before
    res = invoke("simulate", str(sim_bundle), "--samples", "16", "--out", str(sim), "--overwrite")
    assert res.exit_code == 0 and json.loads((sim / "simulation.json").read_text())["samples"] == 16
    rep = tmp_path / "r"
    assert invoke("report", str(sim), "--profile", "loihi2", "--out", str(rep)).exit_code == 0
    assert_user_error(invoke("report", str(sim), "--profile", "loihi2", "--out", str(rep)),
                      "already holds a report (report.json)")
    assert invoke("report", str(sim), "--profile", "loihi2", "--out", str(rep), "--overwrite").exit_code == 0
    # an existing directory without a simulation is used as it is (as train treats its --out)
    (tmp_path / "empty").mkdir()
    assert invoke("simulate", str(sim_bundle), "--samples", "8", "--out", str(tmp_path / "empty")).exit_code == 0
