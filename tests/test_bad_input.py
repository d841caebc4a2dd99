"""Bad input to inspect, simulate and report: exit status 2, one `error:` line, no traceback, and
nothing half-written (issue 4). The first checks run the real command line in a subprocess;
the rest use click's CliRunner (the same `CLI.main`, in-process and faster)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from neurodistill.cli import main
from neurodistill.errors import CheckpointError

from .conftest import run_cli
from .test_cli_errors import assert_user_error
from .test_fuzz_bundle import make_tiny_bundle


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_cli_error(res, *fragments: str) -> str:
    """A subprocess run of the CLI: status 2, stderr one `error:` line (what, where, allowed), no traceback."""
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr and "Traceback" not in res.stdout, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], res.stderr
    for f in fragments:
        assert f in errors[0], (f, errors[0])
    return errors[0]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return make_tiny_bundle(tmp_path_factory.mktemp("bad") / "bundle")


@pytest.fixture(scope="module")
def simdir(bundle, tmp_path_factory) -> Path:
    from neurodistill.sim.run import simulate

    out = tmp_path_factory.mktemp("badsim") / "sim"
    simulate(bundle, out, samples=6, batch_size=6)
    return out


def copy(bundle: Path, tmp_path: Path) -> Path:
    b = tmp_path / "bundle"
    shutil.copytree(bundle, b)
    return b


def edit_manifest(b: Path, **changes) -> None:
    m = json.loads((b / "manifest.json").read_text())
    m.update(changes)
    (b / "manifest.json").write_text(json.dumps(m))


# --- the command line in a subprocess -------------------------------------------------------------

def test_cli_truncated_manifest(bundle, tmp_path):
    b = copy(bundle, tmp_path)
    data = (b / "manifest.json").read_bytes()
    (b / "manifest.json").write_bytes(data[: len(data) // 3])
    assert_cli_error(run_cli("inspect", str(b), timeout=300), "manifest.json", "not valid JSON")


def test_cli_corrupt_deploy_graph_writes_nothing(bundle, tmp_path):
    b = copy(bundle, tmp_path)
    with h5py.File(b / "deploy.h5", "r+") as f:
        f["populations/1"].attrs["v_decay"] = json.dumps(5000)
    out = tmp_path / "sim"
    assert_cli_error(run_cli("simulate", str(b), "--samples", "4", "--out", str(out), timeout=300),
                     "deploy.h5", "v_decay", "5000", "0..4096")
    assert not (out / "simulation.json").exists()


def test_cli_shapes_that_disagree(bundle, tmp_path):
    b = copy(bundle, tmp_path)
    edit_manifest(b, input_shape=[1, 8, 9])
    out = tmp_path / "sim"
    assert_cli_error(run_cli("simulate", str(b), "--samples", "4", "--out", str(out), timeout=300),
                     "input_shape", "[1, 8, 9]", "disagrees", "deploy.h5")
    assert not out.exists()


def test_cli_truncated_net_file(bundle, tmp_path):
    net = tmp_path / "network.net"
    data = (bundle / "network.net").read_bytes()
    net.write_bytes(data[: len(data) // 2])
    np.savez(tmp_path / "in.npz", bias=np.zeros((2, 4, 8, 8), np.int64), steps=3)
    out = tmp_path / "sim"
    assert_cli_error(run_cli("simulate", str(net), "--inputs", str(tmp_path / "in.npz"), "--out", str(out), timeout=300),
                     str(net))
    assert not (out / "simulation.json").exists()


def test_cli_unknown_profile(simdir, tmp_path):
    line = assert_cli_error(run_cli("report", str(simdir), "--profile", "cmos7", "--out", str(tmp_path / "r"), timeout=300),
                            "unknown hardware profile 'cmos7'", "shipped:", "cmos45-fp32", "loihi2")
    assert "truenorth" in line
    assert not (tmp_path / "r").exists()


def test_cli_simulation_from_another_bundle(bundle, tmp_path):
    from neurodistill.sim.run import simulate

    b = copy(bundle, tmp_path)
    simulate(b, tmp_path / "sim", samples=4)
    edit_manifest(b, accuracy_float=0.5)  # re-exported since: the manifest (and its hash) changed
    assert_cli_error(run_cli("report", str(tmp_path / "sim"), "--profile", "loihi2", "--out", str(tmp_path / "r"), timeout=300),
                     "simulation.json", "another version of bundle", "bundle_manifest_sha256")
    assert not (tmp_path / "r").exists()


# --- in-process (CliRunner) -----------------------------------------------------------------------

@pytest.mark.parametrize("changes,fragments", [
    ({"timesteps": 3, "steps_per_sample": 5}, ("timesteps 3", "deploy.h5's 2")),
    ({"timesteps": "2"}, ("timesteps = \"2\"", "integer >= 1")),
    ({"input_shape": [1, 8]}, ("input_shape", "disagrees")),
    ({"target": "loihi3"}, ("target", "loihi3", "loihi2, nir, onnx")),
    ({"format_version": 7}, ("format_version = 7", "allowed")),
    ({"dataset": {"name": "nope"}}, ("unknown dataset 'nope'", "digits")),
    ({"dataset": {"name": "synthetic"}}, ("samples of shape [3, 32, 32]", "[1, 8, 8]")),
    ({"layers": "all"}, ("layers = \"all\"", "non-empty list")),
])
def test_manifest_errors(bundle, tmp_path, changes, fragments):
    b = copy(bundle, tmp_path)
    edit_manifest(b, **changes)
    out = tmp_path / "sim"
    assert_user_error(invoke("simulate", b, "--samples", 4, "--out", out), *fragments)
    assert not out.exists()


def test_manifest_missing_key_in_inspect(bundle, tmp_path):
    b = copy(bundle, tmp_path)
    m = json.loads((b / "manifest.json").read_text())
    del m["resources"]["limits"]
    (b / "manifest.json").write_text(json.dumps(m))
    assert_user_error(invoke("inspect", b), "manifest.json", "key 'resources.limits' is missing")
    (b / "manifest.json").write_bytes(b"\xff\xfe{}")
    assert_user_error(invoke("inspect", b), "manifest.json", "not UTF-8 text")
    (b / "manifest.json").write_text("[1, 2]")
    assert_user_error(invoke("inspect", b), "not a JSON object")


def _set_attr(b: Path, group: str, key: str, value) -> None:
    with h5py.File(b / "deploy.h5", "r+") as f:
        f[group].attrs[key] = json.dumps(value)


@pytest.mark.parametrize("group,key,value,fragments", [
    ("synapses/1", "out_shape", [4, 3, 3], ("synapse 1", "out_shape", "disagrees with its target")),
    ("synapses/1", "stride", [1, 1], ("synapse 1", "out_shape", "stride [1, 1]", "gives [8, 8]")),
    ("synapses/2", "source", "nowhere", ("synapse 2", "source", "'nowhere' names no population")),
    ("synapses/1", "target", "input", ("synapse 1", "target", "names no population")),
    # the readout made a firing population: a spike readout, which the manifest (voltage) contradicts
    ("populations/2", "neuron", {"kind": "lif", "tau": 2.0, "decay_input": True, "v_threshold": 1.0, "v_reset": 0.0},
     ("manifest.json readout \"voltage\"", "disagrees with deploy.h5's \"spikes\"")),
    ("populations/1", "neuron", {"kind": "readout", "tau": 2.0, "decay_input": True, "v_threshold": 1.0, "v_reset": 0.0},
     ("readout populations at [1, 2]", "at most one, the last")),
    ("populations/1", "depth", 3, ("population 1", "depth = 3 disagrees")),
    ("populations/1", "v_th_mant", 2**17, ("v_th_mant = 131072", "0..131071")),
    ("populations/0", "i_decay", -1, ("i_decay = -1", "0..4096")),
    ("/", "timesteps", 0, ("timesteps = 0", "integer >= 1")),
])
def test_deploy_graph_errors(bundle, tmp_path, group, key, value, fragments):
    b = copy(bundle, tmp_path)
    _set_attr(b, group, key, value)
    out = tmp_path / "sim"
    line = assert_user_error(invoke("simulate", b, "--samples", 4, "--out", out), "deploy.h5", *fragments)
    assert "allowed" in line or "disagrees" in line
    assert not out.exists()


def test_deploy_graph_dataset_errors(bundle, tmp_path):
    b = copy(bundle, tmp_path)
    with h5py.File(b / "deploy.h5", "r+") as f:
        w = f["synapses/2/weight_int"][()]
        w[0, 0] = 300
        del f["synapses/2/weight_int"]
        f["synapses/2/weight_int"] = w
    assert_user_error(invoke("simulate", b, "--samples", 4, "--out", tmp_path / "o"), "weight_int", "300", "-256..255")
    with h5py.File(b / "deploy.h5", "r+") as f:
        del f["synapses/2/weight_int"]
    assert_user_error(invoke("simulate", b, "--samples", 4, "--out", tmp_path / "o"), "weight_int", "is missing")
    with h5py.File(b / "deploy.h5", "r+") as f:
        del f["populations"]
    assert_user_error(invoke("simulate", b, "--samples", 4, "--out", tmp_path / "o"), "/populations is missing")
    assert not (tmp_path / "o").exists()


def test_nir_file_errors(bundle, tmp_path):
    from neurodistill.formats.nir.to_torch import from_nir_to_torch

    bad = tmp_path / "network.nir"
    data = (bundle / "network.nir").read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="network.nir' cannot be read as HDF5"):
        from_nir_to_torch(bad)
    with pytest.raises(CheckpointError, match="does not exist"):
        from_nir_to_torch(tmp_path / "none.nir")


def _sim_with(simdir: Path, tmp_path: Path, **changes) -> Path:
    sim = json.loads((simdir / "simulation.json").read_text())
    sim.update(changes)
    d = tmp_path / "s"
    d.mkdir(exist_ok=True)
    (d / "simulation.json").write_text(json.dumps(sim))
    return d


@pytest.mark.parametrize("changes,fragments", [
    ({"samples": "many"}, ("samples = 'many'", "integer >= 1")),
    ({"totals": {"spikes": 1}}, ("key 'totals.acs' is missing",)),
    ({"accuracy": 2}, ("accuracy = 2", "[0, 1]")),
    ({"layers": [{"name": "x"}]}, ("key 'layers[0].neurons' is missing",)),
    ({"timesteps": 3}, ("spikes_per_step", "a list of 3 counts")),
    ({"bundle_manifest_sha256": 5}, ("bundle_manifest_sha256 = 5", "null or a string")),
])
def test_malformed_simulation(simdir, tmp_path, changes, fragments):
    d = _sim_with(simdir, tmp_path, **changes)
    assert_user_error(invoke("report", d, "--profile", "loihi2", "--out", tmp_path / "r"), "simulation.json", *fragments)
    assert not (tmp_path / "r").exists()


def test_simulation_file_not_json(tmp_path):
    (tmp_path / "simulation.json").write_text('{"backend": "fxp", ')
    assert_user_error(invoke("report", tmp_path, "--out", tmp_path / "r"), "not valid JSON")
    (tmp_path / "simulation.json").write_text("[]")
    assert_user_error(invoke("report", tmp_path, "--out", tmp_path / "r"), "not a neurodistill simulation")


def test_simulations_of_different_bundles_compare(bundle, simdir, tmp_path):
    """Two bundles, each simulation current: one report compares them (not an error)."""
    from neurodistill.sim.run import simulate

    b2 = copy(bundle, tmp_path)
    edit_manifest(b2, model="tiny-2")
    simulate(b2, tmp_path / "sim2", samples=4)
    res = invoke("report", simdir, tmp_path / "sim2", "--profile", "loihi2", "--out", tmp_path / "r")
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "r" / "report.json").read_text())
    assert len({m["bundle_manifest_sha256"] for m in rep["models"]}) == 2


def test_simulation_whose_bundle_is_gone_is_taken_as_is(bundle, tmp_path):
    from neurodistill.sim.run import simulate

    b = copy(bundle, tmp_path)
    simulate(b, tmp_path / "sim", samples=4)
    shutil.rmtree(b)
    res = invoke("report", tmp_path / "sim", "--profile", "loihi2", "--out", tmp_path / "r")
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("text,fragments", [
    ('name = "mine"\n[constants.e\n', ("not valid TOML",)),
    ('name = "mine"\ndescription = "d"\nmodel = "compute-only"\nconvention = "c"\n[constants.e_mac]\nvalue = -1.0\n'
     'unit = "pJ"\nkind = "per-op"\napplies_to = "macs"\nsource = "s"\n', ("value = -1.0", "negative", "allowed")),
    ('name = "mine"\ndescription = "d"\nmodel = "compute-only"\nconvention = "c"\n[constants.e_mac]\nvalue = "4.6"\n'
     'unit = "pJ"\nkind = "per-op"\napplies_to = "macs"\nsource = "s"\n', ("value = '4.6'", "not a number")),
    ('name = "mine"\ndescription = "d"\nmodel = "compute-only"\nconvention = "c"\n[constants.e_mac]\nvalue = 4.6\n'
     'unit = "fJ"\nkind = "per-op"\napplies_to = "macs"\nsource = "s"\n', ("unit = 'fJ'", "pJ, nJ")),
    ('name = "mine"\ndescription = "d"\nmodel = "compute-only"\n', ("missing key", "convention")),
])
def test_malformed_profile(simdir, tmp_path, text, fragments):
    p = tmp_path / "mine.toml"
    p.write_text(text)
    assert_user_error(invoke("report", simdir, "--profile", p, "--out", tmp_path / "r"), str(p), *fragments)
    assert not (tmp_path / "r").exists()


def test_profile_not_utf8(simdir, tmp_path):
    p = tmp_path / "mine.toml"
    p.write_bytes(b'name = "mine"\ndescription = "\xff\xfe"\n')
    assert_user_error(invoke("report", simdir, "--profile", p, "--out", tmp_path / "r"), str(p), "not UTF-8")
