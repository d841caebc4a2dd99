"""`neurodistill simulate`: simulation.json from the fixed-point, float and Lava backends."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from neurodistill.cli import main

from .test_cli_errors import assert_user_error


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def bundle(sim_bundle) -> Path:
    return sim_bundle


def _sim(bundle: Path, out: Path, backend: str, n: int = 20, *extra) -> dict:
    res = invoke("simulate", bundle, "--backend", backend, "--samples", n, "--batch-size", 8, "--out", out, *extra)
    assert res.exit_code == 0, res.output
    return json.loads((out / "simulation.json").read_text())


def test_simulation_json_has_what_design_promises(bundle, tmp_path):
    sim = _sim(bundle, tmp_path, "fxp")
    for key in ("backend", "samples", "timesteps", "accuracy", "layers", "firing_rate_neuron_weighted",
                "firing_rate_mean_of_layers"):
        assert key in sim
    assert (sim["backend"], sim["samples"], sim["timesteps"]) == ("fxp", 20, 4)
    for layer in sim["layers"]:
        assert set(layer) >= {"name", "neurons", "spikes", "spikes_per_step", "firing_rate", "synaptic_events",
                              "dense_ops", "acs", "macs", "neuron_updates"}
        assert sum(layer["spikes_per_step"]) == layer["spikes"] and len(layer["spikes_per_step"]) == 4
        assert layer["neuron_updates"] == layer["neurons"] * 4 * 20
    enc = sim["layers"][0]
    assert enc["macs"] == 9 * 16 * 64 * 4 * 20 and enc["acs"] == 0  # host encoding: MACs every step
    assert sim["layers"][1]["acs"] > 0 and sim["layers"][1]["macs"] == 0


def test_batches_do_not_change_the_counts(bundle, tmp_path):
    a = _sim(bundle, tmp_path / "a", "fxp")
    res = invoke("simulate", bundle, "--samples", 20, "--batch-size", 20, "--out", tmp_path / "b")
    assert res.exit_code == 0
    b = json.loads((tmp_path / "b" / "simulation.json").read_text())
    assert a["layers"] == b["layers"] and a["accuracy"] == b["accuracy"]


def _torch_model_run(bundle: Path, n: int) -> tuple[float, dict[str, float]]:
    """The trained spikingjelly model itself (not the deploy graph) on the first `n` test samples,
    direct-encoded (the image repeated at each of the T steps): its accuracy (mean logits over
    the steps) and the spikes of each neuron module, counted by forward hooks."""
    import torch
    from spikingjelly.activation_based import functional, neuron

    from neurodistill.data import DataOptions, load_dataset
    from neurodistill.models import create_model
    from neurodistill.train import load_checkpoint

    manifest = json.loads((bundle / "manifest.json").read_text())
    ckpt = load_checkpoint(manifest["source"])
    meta = ckpt["model"]
    model = create_model(meta["name"], meta["num_classes"], meta["in_channels"], meta.get("neuron"))
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    _, test, _ = load_dataset(manifest["dataset"]["name"], None, DataOptions(augment=False))
    xs, ys = zip(*(test[i] for i in range(n)), strict=True)
    x, y = torch.stack(xs), torch.as_tensor(ys)
    T = manifest["timesteps"]
    counts: dict[str, float] = {}

    def hook(name):
        return lambda _m, _i, out: counts.__setitem__(name, counts.get(name, 0.0) + float(out.sum()))

    handles = [m.register_forward_hook(hook(name)) for name, m in model.named_modules() if isinstance(m, neuron.BaseNode)]
    with torch.no_grad():
        functional.reset_net(model)
        logits = model(x.unsqueeze(0).repeat(T, 1, 1, 1, 1))  # (T, B, K)
    for h in handles:
        h.remove()
    return int((logits.mean(0).argmax(-1) == y).sum()) / n, counts


def test_float_backend_is_close_to_fixed_point(bundle, tmp_path):
    f, q = _sim(bundle, tmp_path / "f", "float"), _sim(bundle, tmp_path / "q", "fxp")
    assert abs(f["accuracy"] - q["accuracy"]) <= 0.1
    assert f["layers"][0]["spikes"] > 0
    # the float backend (folded deploy graph) is the trained torch model: same accuracy, same spikes per layer
    acc, spikes = _torch_model_run(bundle, 20)
    assert f["accuracy"] == acc
    firing = {x["name"]: x["spikes"] for x in f["layers"] if x["firing_rate"] is not None}
    assert firing == spikes and len(spikes) == 2  # body.2, body.5


@pytest.mark.lava
def test_lava_backend_counts_equal_the_fixed_point_simulator(bundle, tmp_path, lava_py):
    res = invoke("simulate", bundle, "--backend", "lava", "--samples", 20, "--lava-python", lava_py, "--out", tmp_path / "l")
    assert res.exit_code == 0, res.output
    lava = json.loads((tmp_path / "l" / "simulation.json").read_text())
    fxp = _sim(bundle, tmp_path / "q", "fxp", 20, "--all-steps")
    assert lava["layers"] == fxp["layers"] and lava["accuracy"] == fxp["accuracy"]
    assert all(layer["pipeline_spikes"] is not None for layer in lava["layers"])


def test_windows_only_gives_the_all_steps_counts(bundle, tmp_path):
    """The default (each layer in its own T-step window) against every chip step: the same accuracy
    and counts; only the pipeline-fill spikes are not computed."""
    win, full = _sim(bundle, tmp_path / "w", "fxp"), _sim(bundle, tmp_path / "a", "fxp", 20, "--all-steps")
    assert win["steps_computed"] == "each layer's T-step window" and full["steps_computed"] == "every chip step"
    unknown = ("pipeline_spikes", "chip_run_synaptic_events")  # the window run does not compute the fill
    strip = [{k: v for k, v in layer.items() if k not in unknown} for layer in win["layers"]]
    assert strip == [{k: v for k, v in layer.items() if k not in unknown} for layer in full["layers"]]
    assert win["accuracy"] == full["accuracy"]
    assert {k: v for k, v in win["totals"].items() if k not in unknown} == \
        {k: v for k, v in full["totals"].items() if k not in unknown}
    assert all(layer["pipeline_spikes"] is None for layer in win["layers"])
    assert sum(layer["pipeline_spikes"] for layer in full["layers"]) > 0  # there is pipeline fill to skip


def test_bad_bundles(bundle, tmp_path):
    import shutil

    assert_user_error(invoke("simulate", tmp_path, "--out", tmp_path / "o"), "not an export bundle")
    broken = tmp_path / "broken"
    shutil.copytree(bundle, broken)
    (broken / "manifest.json").write_text("{not json")
    assert_user_error(invoke("simulate", broken, "--out", tmp_path / "o"), "not valid JSON")
    shutil.rmtree(broken)
    shutil.copytree(bundle, broken)
    data = (broken / "deploy.h5").read_bytes()
    (broken / "deploy.h5").write_bytes(data[: len(data) // 2])
    assert_user_error(invoke("simulate", broken, "--out", tmp_path / "o"), "deploy.h5")
    assert_user_error(invoke("simulate", bundle, "--backend", "gpu", "--out", tmp_path / "o"), "'gpu' is not one of")


def test_device_choice(bundle, tmp_path):
    import torch

    from neurodistill.devices import resolve_device
    from neurodistill.errors import ConfigError

    has_cuda = torch.cuda.is_available()
    assert resolve_device("auto") == torch.device("cuda" if has_cuda else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    for bad in ("gpu", "cuda:", "cuda:x", "CPU", "cuda:-1"):  # the one rule train and simulate share
        with pytest.raises(ConfigError, match="is not allowed; choose auto, cpu, cuda or cuda:N"):
            resolve_device(bad)
    if has_cuda:  # auto runs on the GPU: its counts equal the CPU's exactly
        cpu = _sim(bundle, tmp_path / "c", "fxp", 20, "--device", "cpu")
        assert cpu["layers"] == _sim(bundle, tmp_path / "a", "fxp", 20, "--device", "auto")["layers"]
    else:  # no CUDA here: asking for it is a one-line user error, and nothing is written
        for dev in ("cuda", "cuda:0"):
            assert_user_error(invoke("simulate", bundle, "--device", dev, "--out", tmp_path / "cu"),
                              f"--device {dev} asked for, but this torch sees no CUDA device")
        assert not (tmp_path / "cu" / "simulation.json").exists()
    res = invoke("simulate", bundle, "--device", "tpu", "--out", tmp_path / "t")
    assert res.exit_code == 2 and "--device 'tpu' is not allowed" in res.output


@pytest.mark.gpu
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA device")
def test_fxp_on_cuda_equals_cpu(bundle, tmp_path):
    """Exactness on the GPU: float32 sums with TF32 off, float64 elsewhere (runs where CUDA is)."""
    cpu = _sim(bundle, tmp_path / "c", "fxp", 20, "--device", "cpu", "--all-steps")
    gpu = _sim(bundle, tmp_path / "g", "fxp", 20, "--device", "cuda", "--all-steps")
    assert cpu["layers"] == gpu["layers"] and cpu["accuracy"] == gpu["accuracy"]


def test_chip_run_counts_include_the_pipeline_fill(bundle, tmp_path):
    """Windowed counts (priced) and the whole chip run (T + latency steps) side by side."""
    full = _sim(bundle, tmp_path / "a", "fxp", 20, "--all-steps")
    win = _sim(bundle, tmp_path / "w", "fxp", 20)
    steps = full["steps_per_sample"]
    assert steps == 4 + json.loads((bundle / "manifest.json").read_text())["latency_steps"]
    by_name = {x["name"]: x for x in full["layers"]}
    from neurodistill.formats.deploy_h5 import read_graph

    graph = read_graph(bundle / "deploy.h5")
    for x in full["layers"]:
        assert x["chip_run_neuron_updates"] == x["neurons"] * steps * 20 > x["neuron_updates"]
        for syn in graph.incoming(x["name"]):
            if syn.kind == "dense" and not syn.host:
                # a dense layer's fan-out is its out_features: the extra events are the source's pipeline spikes
                src = by_name[syn.source]
                extra = x["chip_run_synaptic_events"] - x["synaptic_events"]
                assert extra == src["pipeline_spikes"] * x["neurons"]
    assert full["totals"]["chip_run_synaptic_events"] > full["totals"]["synaptic_events"]
    # the window only: events of the whole run are unknown, neuron updates are not
    assert win["totals"]["chip_run_synaptic_events"] is None
    assert win["totals"]["chip_run_neuron_updates"] == full["totals"]["chip_run_neuron_updates"]
    assert win["totals"]["synaptic_events"] == full["totals"]["synaptic_events"]
