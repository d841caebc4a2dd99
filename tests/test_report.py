"""`neurodistill report`: pricing of simulations, every file a paper needs, provenance, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from neurodistill.cli import main

from .test_cli_errors import assert_user_error


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def sims(sim_bundle, tmp_path_factory):
    bundle = sim_bundle
    d = tmp_path_factory.mktemp("sims")
    for backend in ("fxp", "float"):
        res = invoke("simulate", bundle, "--backend", backend, "--samples", 24, "--out", d / backend)
        assert res.exit_code == 0, res.output
    return d


def test_report_files_and_prices(sims, tmp_path):
    res = invoke("report", sims / "fxp", sims / "float", "--profile", "cmos45-fp32", "--profile", "truenorth",
                 "--profile", "loihi2", "--out", tmp_path)
    assert res.exit_code == 0, res.output
    for f in ("report.json", "report.csv", "report.md", "report.tex"):
        assert (tmp_path / f).stat().st_size > 0
    for stem in ("firing_rate_by_layer", "firing_rate_by_step", "energy_by_layer", "energy_by_profile"):
        for ext in ("png", "pdf", "csv"):
            assert (tmp_path / f"{stem}.{ext}").stat().st_size > 0
    rep = json.loads((tmp_path / "report.json").read_text())
    fxp = rep["models"][0]
    sim = json.loads((sims / "fxp" / "simulation.json").read_text())
    t = sim["totals"]
    # compute-only fp32: exactly 4.6 pJ x MACs + 0.9 pJ x ACs
    assert fxp["energy"]["cmos45-fp32"]["total_j"] == 4.6e-12 * t["macs"] + 0.9e-12 * t["acs"]
    assert fxp["energy"]["truenorth"]["total_j"] == 26e-12 * t["synaptic_events"]  # all-in: nothing added
    assert fxp["energy"]["loihi2"]["estimate"] is True
    ann = 4.6e-12 * sum(layer["dense_ops"] for layer in sim["layers"])
    assert fxp["ann_over_snn"]["cmos45-fp32"] == pytest.approx(ann / (fxp["energy"]["cmos45-fp32"]["total_j"] / 24))
    assert sum(layer["energy_share"]["cmos45-fp32"] for layer in fxp["layers"]) == pytest.approx(1.0)
    assert len(rep["models"]) == 2 and rep["models"][1]["backend"] == "float"
    prov = rep["provenance"]["constants"]["cmos45-fp32"]["constants"]["e_mac"]
    assert prov["value"] == 4.6 and "Horowitz" in prov["source"]
    tex = (tmp_path / "report.tex").read_text()
    assert r"\toprule" in tex and r"\bottomrule" in tex and tex.count(r"\begin{table}") == 5  # summary, energy, 2 models, NeuroBench
    assert "caption" in tex and "compute-only" in tex
    _check_files_against_simulations(tmp_path, {b: json.loads((sims / b / "simulation.json").read_text())
                                                for b in ("fxp", "float")}, sim_bundle=Path(sim["bundle"]))


def _fp32(x: dict) -> float:
    """docs/hardware-profiles.md#published-figures, compute-only fp32 (Horowitz): 4.6 pJ per MAC + 0.9 pJ per AC."""
    return 4.6e-12 * x["macs"] + 0.9e-12 * x["acs"]


# each profile's energy from the counts by hand (docs/hardware-profiles.md#published-figures); truenorth is all-in, loihi2
# an estimate with Loihi 1's 23.6 pJ per synaptic op
BY_HAND = {"cmos45-fp32": _fp32, "truenorth": lambda x: 26e-12 * x["synaptic_events"],
           "loihi2": lambda x: 23.6e-12 * x["synaptic_events"]}


def _read_csv(path: Path) -> list[dict]:
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _check_files_against_simulations(out: Path, sims: dict[str, dict], sim_bundle: Path) -> None:
    """report.csv, report.json's ANN energies and the figure CSVs against the simulations' own numbers."""
    labels = {b: f"{s['model']} ({b})" for b, s in sims.items()}
    rep = json.loads((out / "report.json").read_text())
    assert [m["label"] for m in rep["models"]] == [labels["fxp"], labels["float"]]
    # report.csv: one row per layer per model, counts as simulated, energies priced by hand
    rows = _read_csv(out / "report.csv")
    assert len(rows) == sum(len(s["layers"]) for s in sims.values())
    it = iter(rows)
    for b, sim in sims.items():
        for layer in sim["layers"]:
            row = next(it)
            assert (row["model"], row["layer"]) == (labels[b], layer["name"])
            assert int(row["neurons"]) == layer["neurons"]
            for key in ("spikes", "synaptic_events", "dense_ops", "acs", "macs", "neuron_updates"):
                assert float(row[key]) == layer[key], (b, layer["name"], key)
            fr = layer["spikes"] / (layer["neurons"] * sim["timesteps"] * sim["samples"])
            assert (row["firing_rate"] == "") if layer["firing_rate"] is None else float(row["firing_rate"]) == fr
            assert (int(row["samples"]), int(row["timesteps"])) == (sim["samples"], sim["timesteps"])
            for p, f in BY_HAND.items():
                assert float(row[f"energy_j_{p}"]) == f(layer), (b, layer["name"], p)
    # the ANN of the same graph: E_MAC x its dense operations per inference; no ANN price on a chip
    for m, sim in zip(rep["models"], sims.values(), strict=True):
        assert m["ann_energy_j"]["cmos45-fp32"] == 4.6e-12 * sum(x["dense_ops"] for x in sim["layers"])
        assert m["ann_energy_j"]["truenorth"] is None and m["ann_energy_j"]["loihi2"] is None
        for p, f in BY_HAND.items():
            assert m["energy"][p]["total_j"] == pytest.approx(sum(f(x) for x in sim["layers"]), rel=1e-12)
    # figure data
    fr_rows = _read_csv(out / "firing_rate_by_layer.csv")
    expect = [(labels[b], x["name"], x["spikes"] / (x["neurons"] * s["timesteps"] * s["samples"]))
              for b, s in sims.items() for x in s["layers"] if x["firing_rate"] is not None]
    assert len(fr_rows) == len(expect) == 4
    for row, (label, name, fr) in zip(fr_rows, expect, strict=True):
        assert (row["model"], row["layer"]) == (label, name) and float(row["firing_rate"]) == pytest.approx(fr, rel=1e-12)
    step_rows = _read_csv(out / "firing_rate_by_step.csv")
    expect = []
    for b, s in sims.items():
        firing = [x for x in s["layers"] if x["firing_rate"] is not None]
        n = sum(x["neurons"] for x in firing) * s["samples"]
        expect += [(labels[b], t + 1, sum(x["spikes_per_step"][t] for x in firing) / n) for t in range(s["timesteps"])]
    assert len(step_rows) == len(expect) == 8
    for row, (label, t, fr) in zip(step_rows, expect, strict=True):
        assert (row["model"], int(row["t"])) == (label, t) and float(row["firing_rate"]) == pytest.approx(fr, rel=1e-12)
    layer_rows = _read_csv(out / "energy_by_layer.csv")  # every model in order, µJ per inference
    expect = [(labels[b], p, x["name"], f(x) * 1e6 / s["samples"])
              for b, s in sims.items() for p, f in BY_HAND.items() for x in s["layers"]]
    assert len(layer_rows) == len(expect)
    for row, (label, p, name, uj) in zip(layer_rows, expect, strict=True):
        assert (row["model"], row["profile"], row["layer"]) == (label, p, name)
        assert float(row["energy_uj_per_inference"]) == pytest.approx(uj, rel=1e-12)
    prof_rows = _read_csv(out / "energy_by_profile.csv")
    expect = [(labels[b], p, sum(f(x) for x in s["layers"]) * 1e6 / s["samples"])
              for b, s in sims.items() for p, f in BY_HAND.items()]
    assert len(prof_rows) == len(expect) == 6
    for row, (label, p, uj) in zip(prof_rows, expect, strict=True):
        assert (row["model"], row["profile"]) == (label, p)
        assert float(row["energy_uj_per_inference"]) == pytest.approx(uj, rel=1e-12)
    # NeuroBench's metrics: one row per model, each as simulated, under NeuroBench's names
    nb_rows = _read_csv(out / "neurobench.csv")
    assert len(nb_rows) == len(sims)
    for row, (b, s) in zip(nb_rows, sims.items(), strict=True):
        nb = s["neurobench"]
        assert (row["model"], row["neurobench_version"]) == (labels[b], nb["version"])
        for key in ("Footprint", "ConnectionSparsity", "ActivationSparsity"):
            assert float(row[key]) == nb[key], (b, key)
        for key, v in nb["SynapticOperations"].items():
            assert float(row[key]) == v, (b, key)
        assert (row["MembraneUpdates"] == "") if nb["MembraneUpdates"] is None else float(row["MembraneUpdates"]) == nb["MembraneUpdates"]
    md = (out / "report.md").read_text()
    assert "## NeuroBench metrics" in md and "Effective_ACs" in md and "MembraneUpdates" in md
    # accuracy per time step: the student's training summary, once per model
    # accuracy per step: each simulation's own (its readout at each step), labelled with backend and samples
    acc_rows = _read_csv(out / "accuracy_by_step.csv")
    expect = [(labels[b], f"{b}, {sims[b]['samples']} test samples", p["t"], p["alone"], p["running_mean"])
              for b in sims for p in sims[b]["accuracy_per_timestep"]]
    assert len(acc_rows) == len(expect) == 8
    for row, e in zip(acc_rows, expect, strict=True):
        assert (row["model"], row["source"], int(row["t"]), float(row["alone"]), float(row["running_mean"])) == e
    for b in sims:  # the mean of all T steps is the simulation's prediction
        assert sims[b]["accuracy_per_timestep"][-1]["running_mean"] == sims[b]["accuracy"]


def test_unknown_profile(sims, tmp_path):
    assert_user_error(invoke("report", sims / "fxp", "--profile", "cmos7", "--out", tmp_path / "r"), "cmos7")


def test_simulation_from_a_changed_bundle(sims, sim_bundle, tmp_path):
    b2 = tmp_path / "bundle"
    shutil.copytree(sim_bundle, b2)
    s2 = tmp_path / "sim"
    assert invoke("simulate", b2, "--samples", 8, "--out", s2).exit_code == 0
    m = json.loads((b2 / "manifest.json").read_text())
    m["timesteps"] = 99
    (b2 / "manifest.json").write_text(json.dumps(m))
    assert_user_error(invoke("report", s2, "--out", tmp_path / "r"), "another version of bundle")


def test_not_a_simulation(tmp_path):
    (tmp_path / "simulation.json").write_text(json.dumps({"backend": "fxp"}))
    assert_user_error(invoke("report", tmp_path, "--out", tmp_path / "r"), "not a neurodistill simulation")


def test_profiles_commands():
    res = invoke("profiles", "list")
    assert res.exit_code == 0 and "cmos45-fp32" in res.output and "truenorth" in res.output
    res = invoke("profiles", "show", "loihi2")
    assert res.exit_code == 0 and "estimate" in res.output.lower()
    assert_user_error(invoke("profiles", "show", "nope"), "nope")


def test_figures_are_real_images(sims, tmp_path):
    invoke("report", sims / "fxp", "--profile", "cmos45-fp32", "--out", tmp_path)
    png = (tmp_path / "firing_rate_by_layer.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert (tmp_path / "firing_rate_by_layer.pdf").read_bytes()[:5] == b"%PDF-"
    rows = (tmp_path / "firing_rate_by_layer.csv").read_text().splitlines()
    assert rows[0] == "model,layer,firing_rate" and len(rows) == 3  # two firing layers
    assert Path(tmp_path / "report.md").read_text().count("![") == 5


@pytest.fixture(scope="module")
def tiny_sim(tmp_path_factory):
    """A simulation of another network (lava-dl's tiny.net, 3 layers), for side-by-side reports."""
    import numpy as np

    from .conftest import ROOT

    d = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    np.savez(d / "tiny.npz", bias=np.round((rng.random((4, 3, 16, 16)) - 0.5) * 72 + 34).astype(np.int64), steps=8)
    res = invoke("simulate", ROOT / "tests" / "fixtures" / "lava-dl" / "tiny.net", "--inputs", d / "tiny.npz",
                 "--out", d / "sim")
    assert res.exit_code == 0, res.output
    return d / "sim"


def test_report_compares_different_networks(sims, tiny_sim, tmp_path):
    res = invoke("report", sims / "fxp", tiny_sim, "--profile", "cmos45-fp32", "--out", tmp_path)
    assert res.exit_code == 0, res.output
    rows = _read_csv(tmp_path / "firing_rate_by_layer.csv")
    for sim_dir in (sims / "fxp", tiny_sim):
        sim = json.loads((sim_dir / "simulation.json").read_text())
        label = next(m["label"] for m in json.loads((tmp_path / "report.json").read_text())["models"]
                     if m["samples"] == sim["samples"] and m["timesteps"] == sim["timesteps"])
        want = [(x["name"], x["firing_rate"]) for x in sim["layers"] if x["firing_rate"] is not None]
        assert [(r["layer"], float(r["firing_rate"])) for r in rows if r["model"] == label] == want
    assert (tmp_path / "firing_rate_by_layer.png").stat().st_size > 0
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no staging directory left


def test_failed_report_leaves_the_directory_as_it_was(sims, tmp_path, monkeypatch):
    from neurodistill.report import figures

    out = tmp_path / "rep"
    res = invoke("report", sims / "fxp", "--profile", "cmos45-fp32", "--out", out)
    assert res.exit_code == 0, res.output
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken(*a, **k):
        raise RuntimeError("figure failed")

    monkeypatch.setattr(figures, "energy_by_profile", broken)
    res = invoke("report", sims / "fxp", sims / "float", "--profile", "loihi2", "--out", out)
    assert res.exit_code != 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    res = invoke("report", sims / "fxp", "--profile", "loihi2", "--out", tmp_path / "fresh")
    assert res.exit_code != 0 and not (tmp_path / "fresh").exists()


def test_profile_from_a_file_is_named_by_the_profile(sims, tmp_path):
    from neurodistill.report.profiles import profiles_dir

    mine = tmp_path / "mychip.toml"
    mine.write_text((profiles_dir() / "cmos45-int8.toml").read_text().replace('name = "cmos45-int8"', 'name = "mychip"'))
    res = invoke("report", sims / "fxp", "--profile", mine, "--profile", "cmos45-int8", "--out", tmp_path / "r")
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "r" / "report.json").read_text())
    assert rep["profiles"] == ["mychip", "cmos45-int8"]
    m = rep["models"][0]
    assert m["energy"]["mychip"]["total_j"] == m["energy"]["cmos45-int8"]["total_j"]  # same constants
    assert_user_error(invoke("report", sims / "fxp", "--profile", "loihi2", "--profile", "loihi2", "--out", tmp_path / "d"),
                      "already given")


def test_bad_neurobench_block_is_refused_and_a_missing_one_is_left_out(sims, tmp_path):
    sim = json.loads((sims / "float" / "simulation.json").read_text())
    sim["neurobench"]["SynapticOperations"]["Dense"] = -1
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "simulation.json").write_text(json.dumps(sim))
    assert_user_error(invoke("report", tmp_path / "bad", "--profile", "loihi2", "--out", tmp_path / "r"),
                      "neurobench.SynapticOperations.Dense")
    del sim["neurobench"]  # e.g. a simulation of a lava-dl .net file
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "simulation.json").write_text(json.dumps(sim))
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "neurobench.csv").write_text("from an earlier report\n")
    (tmp_path / "r" / "notes.txt").write_text("a user's file\n")
    assert_user_error(invoke("report", tmp_path / "old", "--profile", "loihi2", "--out", tmp_path / "r"),
                      "is not empty", "--overwrite")
    res = invoke("report", tmp_path / "old", "--profile", "loihi2", "--out", tmp_path / "r", "--overwrite")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "r" / "notes.txt").read_text() == "a user's file\n"  # --overwrite removes only a report's files
    assert not (tmp_path / "r" / "neurobench.csv").exists() and "NeuroBench" not in (tmp_path / "r" / "report.md").read_text()
