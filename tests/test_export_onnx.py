"""`--target onnx`: checker passes, onnxruntime matches torch within 1e-4 (ANN and unrolled SNN)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from neurodistill.config import resolve
from neurodistill.data import DataOptions, load_dataset
from neurodistill.errors import CheckpointError, ConfigError, UnsupportedLayerError
from neurodistill.export.onnx_export import (
    ElementwiseNeuron,
    export_onnx,
    export_onnx_bundle,
    unroll_snn,
    verify_onnx,
)
from neurodistill.models import create_model
from neurodistill.train import load_checkpoint, model_from_checkpoint, train

ATOL = 1e-4
# No reference neuron may sit closer than this to its threshold: conv sums in onnxruntime and
# torch differ by ~1e-6, so a closer one could flip a spike and the comparison would be luck.
MARGIN = 1e-5


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """An ANN digits teacher (a few batches) and a kd snn_digits student naming it (~6 s).

    The student gets two full epochs: after only a few batches its second layer never fires,
    and a network that does not spike would make the comparison with onnxruntime vacuous.
    """
    root = tmp_path_factory.mktemp("onnx_ckpts")
    teacher = root / "teacher"
    train(resolve({"model": "ann_digits", "epochs": 1, "limit_train_batches": 5, "out": str(teacher)}, {}))
    student = root / "student"
    train(resolve({"model": "snn_digits", "method": "kd", "teacher": str(teacher / "last.pt"), "timesteps": 3,
                   "epochs": 2, "out": str(student)}, {}))
    return {"teacher": teacher / "last.pt", "student": student / "last.pt"}


def randomize_bn(model: nn.Module) -> None:
    """Non-trivial BN statistics, scaled so random-init networks spike down to the last block."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.uniform_(1.0, 3.0)
            m.bias.data.uniform_(-0.5, 1.0)
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)


def spike_stats(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, int, float, list[torch.Tensor]]:
    """Unrolled torch output, spikes fired in total, the closest any neuron came to its threshold,
    and each neuron layer's spikes stacked over time [T, B, ...], in module order."""
    unrolled = unroll_snn(model, x.shape[0])
    fired, margin = [0], [float("inf")]
    spikes: dict[nn.Module, list[torch.Tensor]] = {}

    def pre(mod: ElementwiseNeuron, args):
        v = torch.full_like(args[0], 0.0 if mod.v_reset is None else mod.v_reset) if mod.v is None else mod.v
        h = mod._charge(args[0], v, 0.0 if mod.v_reset is None else mod.v_reset)
        margin[0] = min(margin[0], (h - mod.v_threshold).abs().min().item())

    def post(mod, args, out):
        fired[0] += int(out.sum().item())
        spikes.setdefault(mod, []).append(out.detach().clone())

    for m in unrolled.modules():
        if isinstance(m, ElementwiseNeuron):
            m.register_forward_pre_hook(pre)
            m.register_forward_hook(post)
    with torch.no_grad():
        out = unrolled(x)
    return out, fired[0], margin[0], [torch.stack(v) for v in spikes.values()]


def spikingjelly_spikes(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The multi-step model's output and each spiking neuron layer's output [T, B, ...], in module order."""
    from spikingjelly.activation_based.neuron import BaseNode

    seen: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda mod, a, out: seen.append(out.detach().clone()))
             for m in model.modules() if isinstance(m, BaseNode)]
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        for h in hooks:
            h.remove()
    return out, seen


def check_export(model: nn.Module, path: Path, shape: tuple[int, ...], T: int | None, x: torch.Tensor) -> float:
    info = export_onnx(model, path, shape, T)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    assert info["inputs"][0]["name"] == "x" and info["outputs"][0]["name"] == "logits"
    assert not list(path.parent.glob(".*.tmp")), "temp file left behind"
    if T is None:
        assert info["inputs"][0]["shape"] == ["batch", *shape] and info["outputs"][0]["shape"] == ["batch", 10]
        return verify_onnx(path, model, x)
    assert info["inputs"][0]["shape"] == [T, "batch", *shape] and info["outputs"][0]["shape"] == [T, "batch", 10]
    unrolled_out, fired, margin, spikes = spike_stats(model, x)
    ref, ref_spikes = spikingjelly_spikes(model, x)
    # The plain-torch neurons reproduce spikingjelly's spikes exactly, every layer and step. The
    # logits agree to float rounding only: one step at a time, the convs and the Linear run on
    # batches of B instead of T*B, and oneDNN may then sum in another order.
    assert len(spikes) == len(ref_spikes) >= 2
    for got, want in zip(spikes, ref_spikes, strict=True):
        assert torch.equal(got, want)
    torch.testing.assert_close(unrolled_out, ref, rtol=0, atol=1e-6)
    assert fired > 0 and (ref[0] - ref[-1]).abs().max() > 1e-3, "no spikes: the comparison would be vacuous"
    assert margin > MARGIN, f"a neuron is {margin:.2g} from threshold; pick another seed"
    return verify_onnx(path, model, x)


def test_ann_digits_trained(trained, tmp_path):
    model = model_from_checkpoint(load_checkpoint(trained["teacher"]), trained["teacher"]).eval()
    torch.manual_seed(1)
    diff = check_export(model, tmp_path / "ann.onnx", (1, 8, 8), None, torch.randn(3, 1, 8, 8))  # batch 3 != export's 2
    assert diff <= ATOL


@pytest.mark.parametrize("inputs", ["random", "digits"])
def test_snn_digits_trained(inputs, trained, tmp_path):
    model = model_from_checkpoint(load_checkpoint(trained["student"]), trained["student"]).eval()
    if inputs == "random":
        # The trained weights differ with the library versions of the lock; draw inputs until no
        # neuron sits within float rounding of its threshold (a tie ONNX may break otherwise).
        for seed in range(2, 12):
            torch.manual_seed(seed)
            x = 2 * torch.randn(3, 5, 1, 8, 8)
            if spike_stats(model, x)[2] > MARGIN:
                break
    else:  # test images, direct encoding (repeated over T) as in training
        x = load_dataset("digits", None, DataOptions(augment=False))[1].tensors[0][:8].expand(3, -1, -1, -1, -1)
    diff = check_export(model, tmp_path / "snn.onnx", (1, 8, 8), 3, x.contiguous())
    assert diff <= ATOL


@pytest.mark.parametrize("neuron", [
    {"reset": "soft", "decay_input": False},
    {"reset": "soft"},
    {"decay_input": False, "v_reset": -0.3, "tau": 3.0},
    {"kind": "if"},
    {"kind": "if", "reset": "soft"},
], ids=["soft-nodecay", "soft", "hard-nodecay-vreset", "if-hard", "if-soft"])
def test_snn_digits_neuron_variants(neuron, tmp_path):
    torch.manual_seed(3)
    model = create_model("snn_digits", 10, 1, neuron=neuron)
    randomize_bn(model)
    model.eval()
    diff = check_export(model, tmp_path / "snn.onnx", (1, 8, 8), 4, 2 * torch.randn(4, 2, 1, 8, 8))
    assert diff <= ATOL


# Seeds chosen so that no neuron lands within MARGIN of its threshold (see check_export).
@pytest.mark.parametrize(("name", "seed"), [("ann_resnet18", 4), ("snn_resnet18", 9), ("snn_sew_resnet18", 10)])
def test_resnets_random_init(name, seed, tmp_path):
    torch.manual_seed(seed)
    model = create_model(name, 10, 3)
    randomize_bn(model)
    model.eval()
    T = 2 if model.spiking else None
    x = 2 * torch.randn(*((T, 2) if T else (2,)), 3, 16, 16)
    assert check_export(model, tmp_path / f"{name}.onnx", (3, 16, 16), T, x) <= ATOL


def test_unsupported_neuron_names_the_module(tmp_path):
    from spikingjelly.activation_based import neuron

    model = create_model("snn_digits", 10, 1)
    model.body[2] = neuron.ParametricLIFNode(step_mode="m")
    with pytest.raises(UnsupportedLayerError, match=r"'body\.2'.*ParametricLIFNode"):
        export_onnx(model, tmp_path / "snn.onnx", (1, 8, 8), 2)
    assert list(tmp_path.iterdir()) == []


def test_bundle_writes_student_and_teacher(trained, tmp_path):
    res = export_onnx_bundle(trained["student"], tmp_path, None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snn.onnx", "teacher.onnx"]
    assert res["timesteps"] == 3 and res["teacher"]["status"] == "exported" and res["warnings"] == []
    assert res["models"]["snn"]["inputs"][0]["shape"] == [3, "batch", 1, 8, 8]
    assert res["models"]["teacher"]["inputs"][0]["shape"] == ["batch", 1, 8, 8]
    for role in ("snn", "teacher"):
        assert res["models"][role]["max_abs_diff"] <= ATOL
    # --timesteps overrides the checkpoint's T
    again = tmp_path / "t5"
    again.mkdir()
    assert export_onnx_bundle(trained["student"], again, 5)["models"]["snn"]["inputs"][0]["shape"][0] == 5


def test_bundle_missing_teacher_warns(trained, tmp_path, caplog):
    ckpt = load_checkpoint(trained["student"])
    ckpt["config"]["teacher"] = str(tmp_path / "gone.pt")
    moved = tmp_path / "student.pt"
    torch.save(ckpt, moved)
    out = tmp_path / "out"
    out.mkdir()
    with caplog.at_level(logging.WARNING):
        res = export_onnx_bundle(moved, out, None, verify=False)
    assert [p.name for p in out.iterdir()] == ["snn.onnx"]
    assert res["teacher"]["status"] == "missing" and "does not exist" in res["warnings"][0]
    assert "gone.pt" in caplog.text


def test_bundle_ann_checkpoint(trained, tmp_path):
    res = export_onnx_bundle(trained["teacher"], tmp_path, None)
    assert [p.name for p in tmp_path.iterdir()] == ["ann.onnx"] and res["teacher"]["status"] == "none"
    assert res["timesteps"] is None and res["models"]["ann"]["max_abs_diff"] <= ATOL


def test_not_a_checkpoint_is_a_checkpoint_error(tmp_path):
    bogus = tmp_path / "weights.pt"
    torch.save({"state_dict": {}}, bogus)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(CheckpointError, match="not a neurodistill checkpoint"):
        export_onnx_bundle(bogus, out, None)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="is not a checkpoint"):
        export_onnx_bundle(text, out, None)
    assert list(out.iterdir()) == []


def test_onnx_graph_unrolled_with_elementwise_lif(tmp_path):
    import onnxruntime as ort
    from spikingjelly.activation_based import base

    torch.manual_seed(3)
    model = create_model("snn_digits", 10, 1)
    randomize_bn(model)  # random-init BN statistics leave the second population silent
    model.eval()
    export_onnx(model, tmp_path / "snn.onnx", (1, 8, 8), 3)
    ops = [n.op_type for n in onnx.load(str(tmp_path / "snn.onnx")).graph.node]
    # two conv layers per step, three steps; neurons as comparisons, no custom ops
    assert ops.count("Conv") == 6 and ops.count("GreaterOrEqual") == 6
    assert {n.domain for n in onnx.load(str(tmp_path / "snn.onnx")).graph.node} <= {""}

    x = 2 * torch.randn(3, 4, 1, 8, 8)
    # the truth: spikingjelly's own multi-step neurons, spikes counted per population by hooks
    fired: dict[str, int] = {}
    neurons = [(n, m) for n, m in model.named_modules() if isinstance(m, base.MemoryModule) and hasattr(m, "v_threshold")]
    assert len(neurons) == 2
    for name, m in neurons:
        m.register_forward_hook(lambda mod, args, out, name=name: fired.__setitem__(name, int(out.sum())))
    with torch.no_grad():
        expected = model(x).numpy()
    assert all(n > 0 for n in fired.values()), f"a population never spikes, the comparison would be vacuous: {fired}"
    _, _, margin, _ = spike_stats(model, x)
    assert margin > MARGIN, f"a neuron is {margin:.2g} from threshold; pick another seed"
    # onnxruntime run here, not through verify_onnx (the product's own check)
    session = ort.InferenceSession(str(tmp_path / "snn.onnx"), providers=["CPUExecutionProvider"])
    (got,) = session.run(["logits"], {"x": x.numpy().astype(np.float32)})
    assert got.shape == expected.shape == (3, 4, 10)
    assert np.abs(got - expected).max() <= ATOL
    assert np.abs(expected[0] - expected[-1]).max() > 1e-3, "logits do not change over time: the spikes do not matter"
    assert verify_onnx(tmp_path / "snn.onnx", model, x) <= ATOL


def test_bundle_failure_leaves_nothing(trained, tmp_path, monkeypatch):
    from neurodistill.export import onnx_export

    real = onnx_export.export_onnx

    def fail_on_teacher(model, path, *args, **kwargs):
        if Path(path).name == "teacher.onnx":
            raise UnsupportedLayerError("simulated")
        return real(model, path, *args, **kwargs)

    monkeypatch.setattr(onnx_export, "export_onnx", fail_on_teacher)
    out = tmp_path / "new" / "bundle"  # not there yet: created, and removed again on failure
    with pytest.raises(UnsupportedLayerError, match="simulated"):
        export_onnx_bundle(trained["student"], out, None, verify=False)
    assert list(tmp_path.rglob("*.onnx")) == [] and not out.exists()


def test_bad_timesteps_is_a_config_error(trained, tmp_path):
    with pytest.raises(ConfigError, match="timesteps >= 1"):
        export_onnx_bundle(trained["student"], tmp_path, 0)
    assert list(tmp_path.iterdir()) == []


def test_cli_bundle_manifest_names_files_inside_the_bundle(trained, tmp_path):
    """The CLI stages the bundle in a hidden directory and renames it: the manifest must name the
    models relative to the bundle, and nothing printed may point into the staging directory."""
    import json

    import onnxruntime as ort

    from .conftest import run_cli

    out = tmp_path / "bundle"
    res = run_cli("export", str(trained["student"]), "--target", "onnx", "--out", str(out), cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert ".bundle." not in res.stdout + res.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert {role: m["path"] for role, m in manifest["models"].items()} == {"snn": "snn.onnx", "teacher": "teacher.onnx"}
    sess = ort.InferenceSession(str(out / manifest["models"]["snn"]["path"]))
    assert [i.shape for i in sess.get_inputs()] == [manifest["models"]["snn"]["inputs"][0]["shape"]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]  # no staging directory left
