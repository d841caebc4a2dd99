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
    assert r"\toprule" in tex and r"\bottomrule" in tex and tex.count(r"\begin{table}") == 4  # summary, energy, 2 models
    assert "caption" in tex and "compute-only" in tex


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
