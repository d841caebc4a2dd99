"""`report --table methods`: one row per run, every number from the run's summary.json and its
simulation.json (equal, or recomputed here by hand), figures, and LaTeX that compiles."""

from __future__ import annotations

import csv
import json

import pytest
from click.testing import CliRunner

from neurodistill.cli import main

from .latex import compile_input

PROFILES = ("cmos45-fp32", "loihi")


def invoke(*args):
    res = CliRunner().invoke(main, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two students that differ in method and T, exported and simulated; a third run only trained."""
    d = tmp_path_factory.mktemp("methods")
    out = {}
    for name, method, T in (("none_t2", "none", 2), ("tet_t4", "tet", 4), ("kd_only", "none", 3)):
        invoke("train", "--model", "snn_digits", "--method", method, "--timesteps", T, "--epochs", 2, "--limit-train-batches", 6,
               "--out", d / name)
        out[name] = {"run": d / name}
        if name != "kd_only":
            invoke("export", d / name / "best.pt", "--out", d / f"{name}.bundle", "--calib", 64)
            invoke("simulate", d / f"{name}.bundle", "--samples", 50, "--out", d / f"{name}.sim")
            out[name]["sim"] = d / f"{name}.sim"
    return out


@pytest.fixture(scope="module")
def table(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("table")
    invoke("report", runs["none_t2"]["sim"], runs["tet_t4"]["sim"], runs["kd_only"]["run"],
           *[x for p in PROFILES for x in ("--profile", p)], "--table", "methods", "--out", out)
    return out


def test_rows_equal_the_runs_and_simulations(runs, table):
    rows = json.loads((table / "methods.json").read_text())["rows"]
    assert [r["method"] for r in rows] == ["none", "tet", "none"] and [r["timesteps"] for r in rows] == [2, 4, 3]
    for r, name in zip(rows, ("none_t2", "tet_t4", "kd_only"), strict=True):
        s = json.loads((runs[name]["run"] / "summary.json").read_text())
        assert r["run"] == str(runs[name]["run"])
        assert r["accuracy_float"] == s["test_acc"]
        assert r["train_seconds_per_batch"] == s["train_seconds_per_batch"] > 0
        if "sim" not in runs[name]:  # only trained: the float network's per-step accuracy, said so
            assert r["accuracy_per_timestep"] == [p["alone"] for p in s["test_acc_per_timestep"]]
            assert r["accuracy_per_timestep_source"] == "float, training's test evaluation"
            assert r["accuracy_deployed"] is None and r["ops"] is None and r["energy_j"] == {p: None for p in PROFILES}
            continue
        sim = json.loads((runs[name]["sim"] / "simulation.json").read_text())
        # simulated: the deployed network's own per-step accuracy
        assert r["accuracy_per_timestep"] == [p["alone"] for p in sim["accuracy_per_timestep"]]
        assert r["accuracy_per_timestep_source"] == "deployed (fxp, 50 samples)"
        b, t = sim["samples"], sim["totals"]
        assert r["accuracy_deployed"] == sim["accuracy"] and r["samples"] == b == 50
        assert r["acs"] == t["acs"] / b and r["macs"] == t["macs"] / b and r["ops"] == (t["acs"] + t["macs"]) / b
        assert r["firing_rate"] == sim["firing_rate_neuron_weighted"]
        # compute-only fp32 by hand: 4.6 pJ per MAC, 0.9 pJ per AC; loihi: 23.6 pJ per synaptic event,
        # 81 pJ per neuron update, 1.7 pJ per spike
        assert r["energy_j"]["cmos45-fp32"] == pytest.approx((4.6 * t["macs"] + 0.9 * t["acs"]) * 1e-12 / b, rel=1e-12)
        assert r["energy_j"]["loihi"] == pytest.approx(
            (23.6 * t["synaptic_events"] + 81 * t["neuron_updates"] + 1.7 * t["spikes"]) * 1e-12 / b, rel=1e-12)


def test_markdown_csv_and_figures(table):
    md = (table / "methods.md").read_text()
    head = next(ln for ln in md.splitlines() if ln.startswith("| method"))
    for col in ("acc. float", "acc. deployed", "acc. per step", "OPs", "ACs", "MACs", "E cmos45-fp32", "E loihi",
                "train ms/batch", "FR"):
        assert col in head
    assert md.count("\n| none ") == 2 and md.count("\n| tet ") == 1
    rows = list(csv.DictReader((table / "methods.csv").open()))
    assert len(rows) == 3 and rows[2]["accuracy_deployed"] == "" and rows[1]["accuracy_t4"] != ""
    for stem in ("accuracy_per_step_by_run", "accuracy_vs_timesteps"):  # T differs: both figures
        assert (table / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (table / f"{stem}.pdf").read_bytes()[:5] == b"%PDF-"
    data = list(csv.DictReader((table / "accuracy_per_step_by_run.csv").open()))
    assert len(data) == 2 + 4 + 3


def test_same_T_has_no_accuracy_vs_T_figure(runs, tmp_path):
    invoke("report", runs["none_t2"]["sim"], "--table", "methods", "--profile", "cmos45-fp32", "--out", tmp_path)
    assert (tmp_path / "accuracy_per_step_by_run.png").is_file() and not (tmp_path / "accuracy_vs_timesteps.png").exists()


def test_a_directory_of_neither_kind_is_one_error_line(tmp_path):
    (tmp_path / "empty").mkdir()
    res = CliRunner().invoke(main, ["report", str(tmp_path / "empty"), "--table", "methods", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "holds neither summary.json" in res.stderr and "Traceback" not in res.output
    assert not (tmp_path / "o").exists()


def test_methods_latex_compiles(table, tmp_path):
    tex = (table / "methods.tex").read_text()
    assert tex.count(r"\begin{tabular}") == 1 and tex.count(r"\begin{figure}") == 2
    compile_input(table, "methods.tex", tmp_path)


def test_float_accuracy_is_the_deployed_checkpoints(tmp_path):
    """A run whose best.pt is not last.pt (lr 20 overshoots after epoch 2): each deployed accuracy
    sits beside the float test accuracy of the checkpoint its bundle was exported from, in the
    methods table and in the plain report."""
    run = tmp_path / "run"
    invoke("train", "--model", "snn_digits", "--method", "none", "--timesteps", 2, "--epochs", 3,
           "--limit-train-batches", 6, "--lr", 20, "--out", run)
    s = json.loads((run / "summary.json").read_text())
    assert s["best_epoch"] != 3 and s["best_test_acc"] != s["test_acc"], s  # the case this test is about
    for ckpt in ("best", "last"):
        invoke("export", run / f"{ckpt}.pt", "--out", tmp_path / f"{ckpt}.bundle", "--calib", 64)
        invoke("simulate", tmp_path / f"{ckpt}.bundle", "--samples", 50, "--out", tmp_path / f"{ckpt}.sim")
    invoke("report", tmp_path / "best.sim", tmp_path / "last.sim", run, "--profile", "loihi", "--table", "methods",
           "--out", tmp_path / "table")
    rows = json.loads((tmp_path / "table" / "methods.json").read_text())["rows"]
    assert [r["checkpoint"] for r in rows] == ["best.pt", "last.pt", "last.pt"]
    assert [r["accuracy_float"] for r in rows] == [s["best_test_acc"], s["test_acc"], s["test_acc"]]
    md = (tmp_path / "table" / "methods.md").read_text()
    best_row = next(ln for ln in md.splitlines() if ln.startswith("| none ") and f"| {100 * s['best_test_acc']:.2f} |" in ln)
    assert f"| {100 * s['test_acc']:.2f} |" not in best_row
    assert [r["checkpoint"] for r in csv.DictReader((tmp_path / "table" / "methods.csv").open())] == [
        "best.pt", "last.pt", "last.pt"]
    invoke("report", tmp_path / "best.sim", "--profile", "loihi", "--out", tmp_path / "plain")
    model = json.loads((tmp_path / "plain" / "report.json").read_text())["models"][0]
    assert model["training_test_acc"] == s["best_test_acc"]
