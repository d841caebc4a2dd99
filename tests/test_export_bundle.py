"""`neurodistill export`/`inspect`: the loihi2 bundle's files and manifest, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import nir
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from neurodistill.cli import main
from neurodistill.config import resolve
from neurodistill.core.float_graph import run_float
from neurodistill.core.fxp import run_fxp
from neurodistill.core.loihi2 import encoding_bias, encoding_current
from neurodistill.data.digits import digits_arrays
from neurodistill.formats.deploy_h5 import read_graph
from neurodistill.formats.nir.deploy import to_nir
from neurodistill.formats.nir.to_torch import from_nir_to_torch
from neurodistill.train import load_checkpoint, save_checkpoint, train

from .test_cli_errors import assert_user_error
from .test_export_lava import reference


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def student(tmp_path_factory, digits_teacher) -> Path:
    out = tmp_path_factory.mktemp("student")
    train(resolve({"model": "snn_digits", "method": "tser", "teacher": str(digits_teacher), "epochs": 15, "out": str(out)}, {}))
    return out / "best.pt"


@pytest.fixture(scope="module")
def bundle(student, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundles") / "loihi2"
    res = invoke("export", student, "--target", "loihi2", "--out", out, "--calib", "360")
    assert res.exit_code == 0, res.output
    return out


def test_manifest_has_what_design_promises(bundle, student):
    m = json.loads((bundle / "manifest.json").read_text())
    for key in ("format_version", "neurodistill_version", "source_sha256", "target", "timesteps", "dt", "latency_steps",
                "input_shape", "layers", "accuracy_float", "accuracy_quantized", "calibration_samples", "resources"):
        assert key in m, key
    assert (m["target"], m["timesteps"], m["dt"], m["latency_steps"], m["input_shape"]) == ("loihi2", 4, 1.0, 2, [1, 8, 8])
    import hashlib

    assert m["source_sha256"] == hashlib.sha256(student.read_bytes()).hexdigest()
    for layer in m["layers"]:
        assert {"iDecay", "vDecay", "vThMant"} <= set(layer["neuron_loihi"]) and layer["weight_bits"] == 8
        assert np.log2(layer["scale"]) == int(np.log2(layer["scale"]))  # a power of two
        assert set(layer["clipped_fraction"]) == {"weights", "bias"}
    assert [layer["cores"] for layer in m["resources"]["layers"]] == [1, 1, 1] and m["resources"]["fits"]
    assert 0 <= m["accuracy_float"] <= 1 and m["calibration_samples"] == 360
    files = ["deploy.h5", "manifest.json", "network.net", "network.nir"]
    assert sorted(p.name for p in bundle.iterdir()) == [".neurodistill", *files]
    assert json.loads((bundle / ".neurodistill").read_text()) == {"written_by": "neurodistill", "command": "export",
                                                                 "files": files}


def recompute_accuracies(bundle: Path, ckpt_path: Path) -> dict:
    """The manifest's accuracies, recomputed without the exporter: its calibration samples rebuilt
    from the data (the first `calibration_samples` of the training split in the order of
    `randperm(seed 0)`, no augmentation), the trained spikingjelly model itself for the float
    side, and for the quantized side the encoding current computed here with torch and the
    independent numpy reference of Lava's equations (test_export_lava) on deploy.h5's integers."""
    import torch.nn.functional as F

    from neurodistill.train.loop import model_from_checkpoint

    m = json.loads((bundle / "manifest.json").read_text())
    n, T = m["calibration_samples"], m["timesteps"]
    x_tr, y_tr, _, _ = digits_arrays()
    idx = torch.randperm(len(y_tr), generator=torch.Generator().manual_seed(0))[:n]
    x, y = x_tr[idx], y_tr[idx]
    model = model_from_checkpoint(load_checkpoint(ckpt_path), ckpt_path).eval()
    with torch.no_grad():
        model_pred = model(x.unsqueeze(0).repeat(T, 1, 1, 1, 1)).mean(0).argmax(-1)
    graph = read_graph(bundle / "deploy.h5")
    graph_pred = run_float(graph, x.unsqueeze(0).expand(T, *x.shape))["logits"].mean(0).argmax(-1)
    (enc,) = graph.encoding
    pop = graph.population(enc.target)
    current = F.conv2d(x.double(), torch.as_tensor(enc.weight), stride=enc.stride, padding=enc.padding, groups=enc.groups)
    current = current + torch.as_tensor(graph.biases[pop.name])
    bias = np.clip(np.round(current.numpy() * pop.scale), -4096, 4095).astype(np.int64)  # 13-bit mantissa
    steps = T + graph.latency_steps
    q_pred = torch.as_tensor([int(np.argmax(reference(graph, bias[i], steps)[1][-1])) for i in range(n)])
    return {"n": n, "float_model": (model_pred == y).float().mean().item(),
            "float_graph": (graph_pred == y).float().mean().item(), "model_vs_graph": int((model_pred != graph_pred).sum()),
            "quantized": (q_pred == y).float().mean().item()}


def test_manifest_accuracies_are_recomputed(bundle, student):
    """accuracy_float / accuracy_quantized equal a recomputation that shares no code path with the
    exporter's (see recompute_accuracies)."""
    m = json.loads((bundle / "manifest.json").read_text())
    r = recompute_accuracies(bundle, student)
    assert r["n"] == 360
    assert m["accuracy_quantized"] == r["quantized"]
    assert m["accuracy_float"] == r["float_graph"]
    # the trained model itself: the folded float graph may flip a spike that sits within float32
    # rounding of its threshold, never a visible share of the predictions
    assert r["model_vs_graph"] <= 1 and abs(m["accuracy_float"] - r["float_model"]) <= 1 / 360


def test_quantized_digits_within_one_point_of_float(bundle):
    """On the 360 test images: Loihi fixed point vs the float SNN, and the manifest's numbers."""
    m = json.loads((bundle / "manifest.json").read_text())
    assert abs(m["accuracy_quantized"] - m["accuracy_float"]) <= 0.01
    graph = read_graph(bundle / "deploy.h5")
    _, _, x, y = digits_arrays()
    fl = run_float(graph, x.double().unsqueeze(0).expand(4, *x.shape))["logits"].mean(0).argmax(-1)
    bias, _ = encoding_bias(graph, encoding_current(graph, x.numpy()))
    q = run_fxp(graph, torch.as_tensor(bias), 4, record=False)["v_readout"].argmax(-1)
    acc_f, acc_q = (fl == y).float().mean().item(), (q == y).float().mean().item()
    assert acc_f >= 0.97 and abs(acc_q - acc_f) <= 0.01, (acc_f, acc_q)


def test_bundle_nir_reads_back_equal_and_runs(bundle):
    graph = read_graph(bundle / "deploy.h5")
    written, back = to_nir(graph), nir.read(bundle / "network.nir")
    assert set(back.nodes) == set(written.nodes)
    assert {tuple(e) for e in back.edges} == {tuple(e) for e in written.edges}
    for name, node in written.nodes.items():
        other = back.nodes[name]
        assert type(other) is type(node)
        for k, v in node.to_dict().items():
            if isinstance(v, np.ndarray):
                assert np.array_equal(np.asarray(other.to_dict()[k]), v), (name, k)
    _, _, x, _ = digits_arrays()
    xs = x[:50].unsqueeze(0).repeat(4, 1, 1, 1, 1)
    logits = from_nir_to_torch(back)(xs).double()
    ref = run_float(graph, xs.double())["logits"]
    assert ((logits - ref).abs().max() / ref.abs().max()).item() < 1e-5


def test_netx_file_layout(bundle):
    with h5py.File(bundle / "network.net") as f:
        types = [f[f"layer/{i}/type"][0].decode() for i in range(len(f["layer"]))]
        assert types == ["input", "conv", "flatten", "dense"]
        w = f["layer/1/weight"][()]
        assert w.shape == (32, 16, 3, 3) and np.all(w % 2 == 0) and w.min() >= -256 and w.max() <= 254
        assert list(f["layer/1/stride"][()]) == [2, 2] and f["layer/3/neuron/vThMant"][()] == 2**17 - 1


def test_inspect_shows_the_bundle(bundle, student, tmp_path):
    import hashlib
    import shutil

    res = invoke("inspect", bundle)
    assert res.exit_code == 0
    assert "body.5" in res.output and "vThMant" in res.output and "fits one chip: yes" in res.output
    digest = hashlib.sha256(student.read_bytes()).hexdigest()
    assert f"(sha256 {digest[:12]}...)" in res.output.splitlines()[1]
    # a bundle exported from Python has no checkpoint file: inspect says so instead of 'sha256 None'
    py = tmp_path / "py"
    shutil.copytree(bundle, py)
    m = json.loads((py / "manifest.json").read_text())
    (py / "manifest.json").write_text(json.dumps({**m, "source": None, "source_sha256": None}))
    line = invoke("inspect", py).output.splitlines()[1]
    assert line == "source (a model exported from Python, no checkpoint file)"


def test_inspect_reports_against_the_planned_chips(student, tmp_path):
    """After --chips 2, inspect's resource line counts two chips' cores, as the manifest plans."""
    res = invoke("export", student, "--out", tmp_path / "b2", "--calib", "32", "--chips", "2")
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "b2" / "manifest.json").read_text())
    cores = m["resources"]["limits"]["cores_per_chip"]["value"]
    line = next(ln for ln in invoke("inspect", tmp_path / "b2").output.splitlines() if ln.startswith("resources:"))
    assert f"{m['resources']['cores']} of {2 * cores:.0f} cores (2 chips)" in line and "fits 2 chips: yes" in line
    assert "one chip" not in line


# --- bad input: exit 2, one line, nothing half-written --------------------------------------
def _assert_nothing_written(parent: Path, before: set[str]) -> None:
    assert {p.name for p in parent.iterdir()} == before


def _ckpt(tmp_path, **cfg) -> Path:
    out = tmp_path / "ck"
    train(resolve({"epochs": 1, "limit_train_batches": 1, "out": str(out), **cfg}, {}))
    return out / "last.pt"


def test_unsupported_layer(tmp_path):
    ck = _ckpt(tmp_path, model="snn_sew_resnet18", dataset="synthetic", data={"synthetic_shape": [3, 32, 32], "synthetic_size": 4},
               batch_size=4, timesteps=1)
    before = {p.name for p in tmp_path.iterdir()}
    assert_user_error(invoke("export", ck, "--out", tmp_path / "b", "--calib", "4"), "body.3: MaxPool2d is not supported")
    _assert_nothing_written(tmp_path, before)


def test_soft_reset_needs_the_flag(tmp_path):
    ck = _ckpt(tmp_path, model="snn_digits", neuron={"reset": "soft"})
    assert_user_error(invoke("export", ck, "--out", tmp_path / "b", "--calib", "16"), "soft reset", "--accept-reset-approximation")
    res = invoke("export", ck, "--out", tmp_path / "b", "--calib", "16", "--accept-reset-approximation")
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert "soft reset approximated" in " ".join(m["layers"][0]["notes"])
    note = m["reset_approximation"]
    assert note["layers"] == ["body.2", "body.5"]
    # the measured numbers, recomputed independently: the soft-reset float model vs Loihi's reset to 0
    r = recompute_accuracies(tmp_path / "b", ck)
    assert r["n"] == 16 and r["model_vs_graph"] <= 1
    assert (m["accuracy_float"], m["accuracy_quantized"]) == (r["float_graph"], r["quantized"])
    assert (note["accuracy_float_soft_reset"], note["accuracy_quantized_reset_to_0"]) == (r["float_graph"], r["quantized"])
    assert note["accuracy_change"] == pytest.approx(r["quantized"] - r["float_graph"])


def test_nan_weights(tmp_path, student):
    ckpt = load_checkpoint(student)
    ckpt["state_dict"]["body.0.weight"][0, 0, 0, 0] = float("nan")
    bad = tmp_path / "nan.pt"
    save_checkpoint(bad, {k: v for k, v in ckpt.items() if k not in ("format", "format_version", "neurodistill_version")})
    assert_user_error(invoke("export", bad, "--out", tmp_path / "b"), "NaN or Inf", "body.0.weight")
    assert not (tmp_path / "b").exists()


def test_layer_that_does_not_fit(tmp_path):
    ck = _ckpt(tmp_path, model="snn_resnet19", dataset="synthetic", data={"synthetic_shape": [3, 32, 32], "synthetic_size": 2},
               batch_size=2, timesteps=1, val_split=0)  # 2 samples: none to hold out
    line = assert_user_error(invoke("export", ck, "--out", tmp_path / "b", "--calib", "2"), "does not fit 1 Loihi 2 chip",
                             "neurons", "largest layer is")
    assert "> 1048576" in line
    assert not (tmp_path / "b").exists()
    res = invoke("export", ck, "--out", tmp_path / "b", "--calib", "2", "--chips", "3")
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert m["netx"]["written"] is False and "residual" in m["netx"]["reason"] and m["resources"]["chips"] == 3
    assert m["resources"]["synapses"] > m["resources"]["weights_stored"]  # conv connections share stored kernels


def test_not_a_neurodistill_checkpoint(tmp_path):
    other = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(2)}, other)
    assert_user_error(invoke("export", other, "--out", tmp_path / "b"), "not a neurodistill checkpoint")


def test_existing_output_directory(tmp_path, student):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "keep.txt").write_text("mine")
    assert_user_error(invoke("export", student, "--out", tmp_path / "b"), "is not empty", "keep.txt", "--overwrite")
    assert (tmp_path / "b" / "keep.txt").read_text() == "mine"
    res = invoke("export", student, "--out", tmp_path / "b", "--overwrite")  # written beside the user's file
    assert res.exit_code == 0, res.output
    assert (tmp_path / "b" / "keep.txt").read_text() == "mine" and (tmp_path / "b" / "deploy.h5").is_file()
    assert_user_error(invoke("export", student, "--out", tmp_path / "b"), "already holds the output of 'neurodistill "
                      "export'", "--overwrite")


def test_ann_is_refused_for_loihi2(tmp_path, digits_teacher):
    assert_user_error(invoke("export", digits_teacher, "--out", tmp_path / "b"), "no spiking neurons")


def test_python_api_exports_any_spiking_module(tmp_path):
    """A spikingjelly model that is not in the registry, exported from Python."""
    from spikingjelly.activation_based import layer, neuron
    from torch import nn

    from neurodistill.export.bundle import export_module_loihi2
    from neurodistill.models.base import Net

    torch.manual_seed(0)
    model = Net(nn.Sequential(layer.Conv2d(2, 4, 3, padding=1), neuron.IFNode(v_threshold=0.5), layer.AvgPool2d(2),
                              layer.Conv2d(4, 4, 3, padding=1), neuron.LIFNode(tau=2.0, v_threshold=0.5),
                              layer.Flatten(1), layer.Linear(4 * 3 * 3, 3)), spiking=True).eval()
    x, y = torch.rand(16, 2, 6, 6), torch.randint(0, 3, (16,))
    m = export_module_loihi2(model, (2, 6, 6), x, y, tmp_path / "b", timesteps=3)
    assert m["model"] == "Net" and m["source_sha256"] is None and (tmp_path / "b" / "network.net").is_file()
    # the average pool was folded into the next conv: stride 2, kernel 6x6
    assert m["layers"][1]["synapses"][0]["stride"] == [2, 2] and m["layers"][1]["synapses"][0]["weight_shape"] == [4, 4, 6, 6]


def test_netx_is_not_written_when_lava_would_change_a_dense_layer():
    """Lava's Dense picks its sign mode from the weights at run time: a layer with no positive
    weight runs as INHIBITORY and -256 becomes -254. Such a chain gets no network.net (the Lava
    backend then builds it from deploy.h5), rather than a file Lava would run differently."""
    import numpy as np

    from neurodistill.core.graph import INPUT, DeployGraph, Neuron, Population, Synapse
    from neurodistill.formats.netx.writer import netx_unsupported_reason

    def graph(w):
        pops = [Population("a", (3,), Neuron("lif"), 0, 1.0, 4096, 2048, 10, np.zeros(3, np.int64)),
                Population("r", (3,), Neuron("readout"), 1, 1.0, 4096, 0, 2**17 - 1, np.zeros(3, np.int64))]
        syns = [Synapse("e", "dense", INPUT, "a", np.eye(3), (3,), (3,), weight_int=np.eye(3, dtype=np.int64)),
                Synapse("d", "dense", "a", "r", w.astype(float), (3,), (3,), weight_int=w)]
        return DeployGraph((3,), pops, syns)

    assert netx_unsupported_reason(graph(np.array([[-256, 0, -64], [-2, -128, 0], [0, 0, -4]]))) is not None
    assert netx_unsupported_reason(graph(np.array([[-256, 2, -64], [-2, -128, 0], [0, 0, -4]]))) is None
