"""Hardware profiles (hw_profiles/*.toml): schema, shipped values, and pricing by hand."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from neurodistill.errors import ConfigError
from neurodistill.report.pricing import ann_energy, ann_snn_ratio, price
from neurodistill.report.profiles import (
    COUNTS,
    list_profiles,
    list_table,
    load_profile,
    profiles_dir,
    show_table,
)

SHIPPED = {"cmos45-fp32", "cmos45-fp16", "cmos45-int32", "cmos45-int8", "loihi", "loihi2", "truenorth",
           "spinnaker2", "tianjic", "darwin3"}
ALL_COUNTS = {"macs": 1.0e6, "acs": 3.0e7, "synaptic_events": 2.5e7, "neuron_updates": 4.0e5, "spikes": 1.2e5,
              "dense_ops": 5.554e8}

USER = """
name = "mychip"
description = "a user's chip"
model = "compute-only"
convention = "compute-only, my numbers"

[constants.e_mac]
value = 4.6
unit = "pJ"
kind = "per-op"
applies_to = "macs"
source = "my measurement"

[constants.e_ac]
value = 0.9
unit = "pJ"
kind = "per-op"
applies_to = "acs"
source = "my measurement"
"""


def write(tmp_path: Path, text: str, name: str = "mychip") -> Path:
    p = tmp_path / f"{name}.toml"
    p.write_text(text)
    return p


# --- shipped profiles -------------------------------------------------------------------------


def test_every_shipped_profile_loads_with_sources():
    assert set(list_profiles()) == SHIPPED
    assert (Path(str(profiles_dir())) / "cmos45-fp32.toml").is_file()
    for name in SHIPPED:
        p = load_profile(name)
        assert p.name == name and p.description and p.convention and p.constants
        for c in (*p.constants, *p.reference):
            assert c.source.strip(), (name, c.key)
            assert c.kind in ("per-op", "all-in", "estimate", "measured-total")
        # every shipped profile prices something the counters produce
        assert price(ALL_COUNTS, p)["total_j"] > 0


def test_horowitz_table_values():
    table = {"cmos45-fp32": (4.6, 0.9), "cmos45-fp16": (1.5, 0.4), "cmos45-int32": (3.2, 0.1), "cmos45-int8": (0.23, 0.03)}
    for name, (mac, ac) in table.items():
        p = load_profile(name)
        assert p.model == "compute-only" and "ignores memory" in p.convention
        assert (p.constant_for("macs").value, p.constant_for("acs").value) == (mac, ac)
        assert {c.unit for c in p.constants} == {"pJ"} and {c.kind for c in p.constants} == {"per-op"}
        assert all("Horowitz" in c.source for c in p.constants)
    chips = {"loihi": 23.6, "truenorth": 26, "spinnaker2": 10, "tianjic": 1.54, "darwin3": 5.47, "loihi2": 23.6}
    for name, value in chips.items():
        assert load_profile(name).constant_for("synaptic_events").value == value


def test_fp32_prices_exactly():
    # Exact, not approximate: (1) the file's 4.6 pJ is converted by decimal scaling and rounded
    # once, so it is the very double the literal 4.6e-12 denotes (float(Fraction) rounds
    # correctly, checked below); (2) price() evaluates e_mac*macs + e_ac*acs in that order
    # (0.0 + x == x), so IEEE-754 gives the same bits as the expression written here.
    p = load_profile("cmos45-fp32")
    assert p.constant_for("macs").joules == 4.6e-12 == float(Fraction(46, 10**13))
    assert p.constant_for("acs").joules == 0.9e-12 == float(Fraction(9, 10**13))
    for macs, acs in [(1.0e6, 3.0e7), (123456789.0, 987654321.0), (0.1 * 3, 1 / 3), (2**53 - 1, 7), (0, 0)]:
        assert price({"macs": macs, "acs": acs}, p)["total_j"] == 4.6e-12 * macs + 0.9e-12 * acs
    r = price({"macs": 1.0e6, "acs": 3.0e7}, p)
    assert r["energy_j"] == {"e_mac": 4.6e-12 * 1.0e6, "e_ac": 0.9e-12 * 3.0e7}
    assert r["label"] == "per-op" and not r["estimate"] and "compute-only" in r["convention"]
    assert r["formula"] == "E = 4.6 pJ*macs + 0.9 pJ*acs"


def test_unit_conversion_is_decimal_not_float_product():
    # 0.23 * 1e-12 is 2.3000000000000003e-13 in floats; the profile must give 0.23e-12
    e = load_profile("cmos45-int8").constant_for("macs").joules
    assert 0.23 * 1e-12 != 0.23e-12 and e == 0.23e-12


@pytest.mark.parametrize("name,total", [
    # by hand: E_MAC * 1e6 MACs + E_AC * 3e7 ACs
    ("cmos45-fp16", 1.5e-6 + 12.0e-6),     # 1.5 uJ + 0.4 pJ * 3e7 = 12 uJ
    ("cmos45-int32", 3.2e-6 + 3.0e-6),     # 3.2 uJ + 0.1 pJ * 3e7 = 3 uJ
    ("cmos45-int8", 0.23e-6 + 0.9e-6),     # 0.23 uJ + 0.03 pJ * 3e7 = 0.9 uJ
    ("cmos45-fp32", 4.6e-6 + 27.0e-6),
    # 2.5e7 synaptic events
    ("truenorth", 650e-6), ("spinnaker2", 250e-6), ("tianjic", 38.5e-6), ("darwin3", 136.75e-6), ("loihi2", 590e-6),
    # 23.6 pJ * 2.5e7 + 81 pJ * 4e5 + 1.7 pJ * 1.2e5 = 590 uJ + 32.4 uJ + 0.204 uJ
    ("loihi", 590e-6 + 32.4e-6 + 0.204e-6),
])
def test_prices_by_hand(name, total):
    assert price(ALL_COUNTS, load_profile(name))["total_j"] == pytest.approx(total, rel=1e-12)


def test_loihi2_is_labelled_estimate():
    p = load_profile("loihi2")
    assert p.estimate and "not published" in p.notes
    r = price(ALL_COUNTS, p)
    assert r["estimate"] is True and r["label"] == "estimate" and r["kinds"] == ["estimate"]
    assert "ESTIMATE" in r["convention"] and any("not published" in n for n in r["estimate_notes"])
    assert r["terms"]["e_synop"]["kind"] == "estimate"
    # the measured PilotNet totals are recorded, never priced per op
    ref = {c.key: c for c in p.reference}
    assert (ref["pilotnet_total"].value, ref["pilotnet_total"].unit) == (1.66, "mJ")
    assert (ref["pilotnet_dynamic"].value, ref["pilotnet_power"].value, ref["pilotnet_power"].unit) == (1.09, 0.68, "W")
    assert {c.kind for c in p.reference} == {"measured-total"} and set(r["terms"]) == {"e_synop"}
    assert "ESTIMATE" in show_table(p) and "not published" in show_table(p)


def test_truenorth_all_in_figure_alone():
    p = load_profile("truenorth")
    r = price(ALL_COUNTS, p)
    assert r["priced_counts"] == ["synaptic_events"] and r["label"] == "all-in"
    assert r["total_j"] == 26e-12 * ALL_COUNTS["synaptic_events"]  # no neuron or routing add-on


def test_all_in_cannot_be_combined(tmp_path):
    text = load_profile("truenorth").path
    bad = Path(text).read_text().replace('name = "truenorth"', 'name = "mychip"') + """
[constants.e_neuron]
value = 81
unit = "pJ"
kind = "per-op"
applies_to = "neuron_updates"
source = "Davies 2018"
"""
    with pytest.raises(ConfigError, match=r"mychip\.toml: \[constants\.e_neuron\]: cannot be added to the all-in"):
        load_profile(write(tmp_path, bad))


def test_ann_energy_and_ratio():
    fp32, int8 = load_profile("cmos45-fp32"), load_profile("cmos45-int8")
    assert ann_energy(5.554e8, fp32) == 4.6e-12 * 5.554e8
    assert ann_energy(1e6, int8) == pytest.approx(0.23e-6, rel=1e-12)
    assert ann_energy(1e6, load_profile("loihi")) is None and ann_energy(1e6, load_profile("truenorth")) is None
    assert ann_snn_ratio(4.0e-6, 1.0e-6) == 4.0
    assert ann_snn_ratio(None, 1.0) is None and ann_snn_ratio(1.0, 0.0) is None and ann_snn_ratio(1.0, None) is None


def test_missing_count_is_a_config_error():
    with pytest.raises(ConfigError, match="prices 'acs'"):
        price({"macs": 1.0}, load_profile("cmos45-fp32"))


def test_tables():
    listing = list_table()
    assert all(n in listing for n in SHIPPED) and "\n" in listing
    shown = show_table(load_profile("loihi"))
    assert "Davies" in shown and "e_tile_hop_ew" in shown and "reference" in shown


# --- user profiles and the schema check ---------------------------------------------------------


def test_user_profile_from_path(tmp_path):
    path = write(tmp_path, USER.replace('value = 0.9\nunit = "pJ"', 'value = 1.5\nunit = "nJ"'))
    for arg in (path, str(path)):
        p = load_profile(arg)
        assert p.name == "mychip" and p.path == str(path)
        assert p.constant_for("acs").joules == 1.5e-9
    assert price({"macs": 2.0, "acs": 4.0}, p)["total_j"] == 4.6e-12 * 2.0 + 1.5e-9 * 4.0


@pytest.mark.parametrize("old,new,key,shows", [
    ('unit = "pJ"\nkind = "per-op"\napplies_to = "macs"', 'kind = "per-op"\napplies_to = "macs"', "[constants.e_mac]", "unit"),
    ("value = 4.6", "value = -4.6", "[constants.e_mac] value", "-4.6"),
    ("value = 4.6", 'value = "4.6"', "[constants.e_mac] value", "'4.6'"),
    ("value = 4.6", "value = true", "[constants.e_mac] value", "True"),
    ("value = 4.6", "value = nan", "[constants.e_mac] value", "nan"),
    ('value = 0.9\nunit = "pJ"', 'value = 0.9\nunit = "kJ"', "[constants.e_ac] unit", "'kJ'"),
    ('value = 0.9\nunit = "pJ"', 'value = 0.9\nunit = "W"', "[constants.e_ac] unit", "'W'"),
    ('kind = "per-op"\napplies_to = "acs"', 'kind = "typical"\napplies_to = "acs"', "[constants.e_ac] kind", "'typical'"),
    ('kind = "per-op"\napplies_to = "acs"', 'kind = "measured-total"\napplies_to = "acs"', "[constants.e_ac] kind",
     "'measured-total'"),
    ('kind = "per-op"\napplies_to = "acs"', 'kind = "estimate"\napplies_to = "acs"', "[constants.e_ac] note", "estimate"),
    ('applies_to = "acs"', 'applies_to = "flops"', "[constants.e_ac] applies_to", "'flops'"),
    ('applies_to = "acs"', 'applies_to = "synaptic_events"', "[constants.e_ac] applies_to", "'synaptic_events'"),
    ('applies_to = "acs"', 'applies_to = "macs"', "[constants.e_ac] applies_to", "already priced"),
    ('source = "my measurement"\n', 'source = "my measurement"\ncolor = "red"\n', "[constants.e_mac] color", "'color'"),
    ('source = "my measurement"\n', 'source = ""\n', "[constants.e_mac] source", "''"),
    ('convention = "compute-only, my numbers"\n', "", "convention", "convention"),
    ('model = "compute-only"', 'model = "analog"', "model", "'analog'"),
    ('name = "mychip"', 'name = "other"', "name", "'other'"),
    ("[constants.e_mac]", "[constants.e_mac", "not valid TOML", "TOML"),
])
def test_schema_errors_are_one_line(tmp_path, old, new, key, shows):
    assert old in USER
    path = write(tmp_path, USER.replace(old, new, 1))
    with pytest.raises(ConfigError) as e:
        load_profile(path)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"hardware profile {path}: "), msg
    assert key in msg and shows in msg, msg
    assert "allowed" in msg or "required" in msg or "TOML" in msg, msg


def test_constant_that_is_not_a_table(tmp_path):
    with pytest.raises(ConfigError, match=r"\[constants\.e_mac\]: is 4\.6, not a table"):
        load_profile(write(tmp_path, USER.replace("[constants.e_mac]\nvalue = 4.6", "[constants]\ne_mac = 4.6\n[constants.e_x]\nvalue = 4.6")))


def test_unknown_name_and_missing_path(tmp_path):
    with pytest.raises(ConfigError, match="unknown hardware profile 'gpu'; shipped: cmos45-fp16"):
        load_profile("gpu")
    with pytest.raises(ConfigError, match="does not exist"):
        load_profile(str(tmp_path / "nope.toml"))


def test_counts_vocabulary_matches_counters():
    """Every count a profile may price is a key the counters produce: of `count(...)["totals"]` and of
    each layer (the report prices both), on a tiny graph counted for real; every shipped profile prices them."""
    import numpy as np
    import torch

    from neurodistill.core.counters import count
    from neurodistill.core.graph import INPUT, DeployGraph, Neuron, Population, Synapse

    pops = [Population("a", (4,), Neuron("lif"), depth=0), Population("r", (3,), Neuron("readout"), depth=1)]
    syns = [Synapse("enc", "dense", INPUT, "a", np.ones((4, 2)), (2,), (4,), dense_ops=8),
            Synapse("fc", "dense", "a", "r", np.ones((3, 4)), (4,), (3,), dense_ops=12)]
    graph = DeployGraph((2,), pops, syns)
    spikes = {"a": torch.tensor([[[1, 0, 1, 0]], [[0, 0, 0, 1]]], dtype=torch.bool),  # (T=2, B=1, 4)
              "r": torch.zeros(2, 1, 3, dtype=torch.bool)}
    c = count(graph, spikes, 2, pipelined=False)
    assert c["totals"]["synaptic_events"] == 3 * 3 and c["totals"]["macs"] == 8 * 2  # it really counted
    assert set(COUNTS) <= set(c["totals"])
    assert all(set(COUNTS) <= set(layer) for layer in c["layers"])
    for name in SHIPPED:
        prof = load_profile(name)
        assert {k.applies_to for k in prof.constants} <= set(COUNTS), name
        assert price(c["totals"], prof)["total_j"] >= 0
