"""`train --deploy loihi2`: what the run reports is what the exported bundle does in fixed point.

Per test sample, the QAT forward's prediction equals `run_fxp` of the exported bundle's own
deploy.h5; the run's test accuracy is `simulate --backend fxp`'s; the manifest's
accuracy_quantized is the run's calibration accuracy; every method and rate backprop train
deployed; resume on a CPU is bit-identical; DDP (two gloo processes) evaluates the same.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

from neurodistill.cli import main
from neurodistill.config import resolve
from neurodistill.export.bundle import dataset_samples, load_model
from neurodistill.formats.deploy_h5 import read_graph
from neurodistill.qat.deploy import fxp_readout
from neurodistill.qat.forward import Deployment
from neurodistill.train import train
from neurodistill.train.checkpoint import load_checkpoint

from .conftest import ROOT, run_cli
from .resume import kill_after_epoch_1_then_resume

SMALL = {"model": "snn_digits", "epochs": 1, "limit_train_batches": 3, "batch_size": 32, "device": "cpu"}


@pytest.fixture(scope="module")
def float_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("float")
    train(resolve({"model": "snn_digits", "epochs": 4, "device": "cpu", "out": str(out)}, {}))
    return out / "last.pt"


@pytest.fixture(scope="module")
def qat_run(tmp_path_factory, float_run):
    out = tmp_path_factory.mktemp("qat")
    summary = train(resolve({"model": "snn_digits", "epochs": 2, "lr": 0.01, "device": "cpu", "out": str(out),
                             "deploy": "loihi2", "init": str(float_run), "qat": {"weight_bits": 4}}, {}))
    return out, summary


def _qat_forward_predictions(ckpt_path, x, T):
    ckpt, model = load_model(ckpt_path)
    q = ckpt["qat"]
    dep = Deployment.for_model(model, tuple(q["input_shape"]), q["weight_bits"], x[:1], q["encoding_scale"])
    with torch.no_grad(), dep.active(model):
        z = model(x.unsqueeze(0).repeat(T, 1, 1, 1, 1))
    return z.double().sum(0).argmax(-1)


def test_qat_predictions_equal_the_exported_bundle_in_fxp(qat_run, tmp_path):
    out, summary = qat_run
    bundle = tmp_path / "bundle"
    res = CliRunner().invoke(main, ["export", str(out / "last.pt"), "--target", "loihi2", "--out", str(bundle)])
    assert res.exit_code == 0, res.output
    manifest = json.loads((bundle / "manifest.json").read_text())
    ckpt = load_checkpoint(out / "last.pt")
    assert manifest["weight_bits"] == 4
    assert {layer["name"]: layer["scale"] for layer in manifest["layers"]} == ckpt["qat"]["scales"]
    assert manifest["accuracy_quantized"] == summary["deploy"]["calibration_acc"]
    x, y = dataset_samples("digits", None, {}, 10_000, "test")
    graph = read_graph(bundle / "deploy.h5")
    deployed = fxp_readout(graph, x, 4).argmax(-1)
    qat = _qat_forward_predictions(out / "last.pt", x, 4)
    assert torch.equal(qat, deployed), f"{int((qat != deployed).sum())} of {len(y)} test predictions differ"
    assert summary["test_acc"] == int((deployed == y).sum()) / len(y)
    assert summary["deploy"]["test_acc_qat_forward"] == summary["test_acc"]
    sim = CliRunner().invoke(main, ["simulate", str(bundle), "--backend", "fxp", "--samples", "360",
                                    "--out", str(tmp_path / "sim")])
    assert sim.exit_code == 0, sim.output
    assert json.loads((tmp_path / "sim" / "simulation.json").read_text())["accuracy"] == summary["test_acc"]
    # item 5: the bundle's inspect shows each layer's weight error at the start and the end of QAT
    shown = CliRunner().invoke(main, ["inspect", str(bundle)]).output
    assert "quantization-aware training (4-bit weights" in shown and "error before" in shown
    # the checkpoint's bits are the export's; other bits would not be what was trained
    bad = CliRunner().invoke(main, ["export", str(out / "last.pt"), "--target", "loihi2", "--weight-bits", "8",
                                    "--out", str(tmp_path / "b8")])
    assert bad.exit_code == 2 and "trained for Loihi 2 with 4-bit weights" in bad.output


def test_a_finetunes_start_competes_for_best_pt(tmp_path, float_run):
    """With --init the starting point is epoch 0 of model selection: a QAT run that cannot beat it
    on validation keeps it, so its best.pt deploys exactly as post-training quantization does."""
    out = tmp_path / "q"
    s = train(resolve({**SMALL, "deploy": "loihi2", "init": str(float_run), "lr": 1e-9, "qat": {"weight_bits": 4},
                       "out": str(out)}, {}))
    init_summary = json.loads((float_run.parent / "summary.json").read_text())
    assert s["start"]["test_acc_float"] == init_summary["test_acc"]  # the same weights, measured again
    assert s["best_epoch"] == 0 and s["best_selection_acc"] == s["start"]["val_acc"]
    assert s["best_test_acc"] == s["start"]["test_acc"]
    best, init = load_checkpoint(out / "best.pt"), load_checkpoint(float_run)
    assert best["epoch"] == 0
    assert all(torch.equal(best["state_dict"][k], init["state_dict"][k]) for k in init["state_dict"])
    for src, dst, bits in ((out / "best.pt", "qat", []), (float_run, "ptq", ["--weight-bits", "4"])):
        res = CliRunner().invoke(main, ["export", str(src), "--target", "loihi2", *bits, "--out", str(tmp_path / dst)])
        assert res.exit_code == 0, res.output
    x, _ = dataset_samples("digits", None, {}, 10_000, "test")
    v_qat = fxp_readout(read_graph(tmp_path / "qat" / "deploy.h5"), x, 4)
    v_ptq = fxp_readout(read_graph(tmp_path / "ptq" / "deploy.h5"), x, 4)
    assert torch.equal(v_qat, v_ptq)
    assert (torch.sum(v_ptq.argmax(-1) == dataset_samples("digits", None, {}, 10_000, "test")[1]).item() / len(x)
            == s["start"]["test_acc"])


def test_training_from_the_start_learns_batchnorm_statistics():
    """Without --init the deployed forward updates each BatchNorm's running statistics as float
    training does: the encoding layer's BatchNorm sees the same images either way, so its
    statistics after one batch equal torch's own BatchNorm's; a fine-tune keeps them frozen."""
    import copy

    from neurodistill.models import NeuronConfig, create_model

    torch.manual_seed(0)
    model = create_model("snn_digits", 10, 1, NeuronConfig()).train()
    x, _ = dataset_samples("digits", None, {}, 32)
    xs = x.unsqueeze(0).repeat(4, 1, 1, 1, 1)
    ref, frozen = copy.deepcopy(model), copy.deepcopy(model)
    with torch.no_grad():
        ref(xs)
    dep = Deployment.for_model(model, (1, 8, 8), 8, x)
    enc_bn = dep.plan.terms[dep.plan.encoding.terms[0]].bns[0]
    later = [t.bns[0] for t in dep.plan.terms.values() if t.bns and not t.host]
    assert later, "snn_digits has BatchNorm after its on-chip convolutions"
    dep.learn_bn_stats = True
    with torch.no_grad(), dep.active(model):
        model(xs)
    bn, bn_ref = dict(model.named_modules())[enc_bn], dict(ref.named_modules())[enc_bn]
    assert torch.allclose(bn.running_mean, bn_ref.running_mean, rtol=1e-6, atol=1e-7)
    assert torch.allclose(bn.running_var, bn_ref.running_var, rtol=1e-6, atol=1e-7)
    assert int(bn.num_batches_tracked) == 1
    modules = dict(model.named_modules())
    for path in later:  # learned from the deployed spikes
        assert int(modules[path].num_batches_tracked) == 1 and not torch.all(modules[path].running_var == 1)
    dep_f = Deployment.for_model(frozen, (1, 8, 8), 8, x)
    before = {k: v.clone() for k, v in frozen.state_dict().items() if "running" in k}
    with torch.no_grad(), dep_f.active(frozen):
        frozen(xs)
    assert all(torch.equal(before[k], v) for k, v in frozen.state_dict().items() if "running" in k)


def test_deployed_from_the_start_equals_its_bundle(tmp_path):
    out = tmp_path / "scratch"
    s = train(resolve({**SMALL, "epochs": 2, "deploy": "loihi2", "qat": {"weight_bits": 6}, "out": str(out)}, {}))
    ckpt = load_checkpoint(out / "last.pt")
    assert any(not torch.all(v == 1) for k, v in ckpt["state_dict"].items() if k.endswith("running_var"))
    res = CliRunner().invoke(main, ["export", str(out / "last.pt"), "--target", "loihi2", "--out", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    x, y = dataset_samples("digits", None, {}, 10_000, "test")
    deployed = fxp_readout(read_graph(tmp_path / "b" / "deploy.h5"), x, 4).argmax(-1)
    assert torch.equal(_qat_forward_predictions(out / "last.pt", x, 4), deployed)
    assert s["test_acc"] == int((deployed == y).sum()) / len(y)


def test_resume_is_bit_identical(tmp_path, float_run, monkeypatch):
    base = {**SMALL, "epochs": 2, "deploy": "loihi2", "init": str(float_run), "lr": 0.01}
    train(resolve({**base, "out": str(tmp_path / "a")}, {}))
    kill_after_epoch_1_then_resume({**base, "out": str(tmp_path / "b")}, monkeypatch)
    a, b = load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    assert a["qat"] == b["qat"]
    assert a["history"][-1]["test_acc"] == b["history"][-1]["test_acc"]


@pytest.mark.parametrize("method,extra", [
    ("none", {}), ("tet", {}), ("kd", {}), ("tser", {}), ("tssd", {}), ("esd", {}),
    ("none", {"backprop": "rate"}), ("kd", {"backprop": "rate"}),
])
def test_every_method_trains_the_deployed_network(tmp_path, method, extra, float_run, digits_teacher):
    teacher = {"teacher": str(digits_teacher)} if method in ("kd", "tser") else {}
    cfg = resolve({**SMALL, "method": method, **extra, **teacher, "deploy": "loihi2", "init": str(float_run),
                   "lr": 0.01, "out": str(tmp_path)}, {})
    before = load_checkpoint(float_run)["state_dict"]
    s = train(cfg)
    after = load_checkpoint(tmp_path / "last.pt")
    weights = [k for k in before if k.endswith(".weight") and before[k].dim() > 1]  # every conv and linear
    unchanged = [k for k in weights if torch.equal(before[k], after["state_dict"][k])]
    assert weights and not unchanged, f"not trained: {unchanged}"
    x, y = dataset_samples("digits", None, {}, 10_000, "test")
    pred = _qat_forward_predictions(tmp_path / "last.pt", x, 4)
    assert s["test_acc"] == int((pred == y).sum()) / len(y)
    assert s["deploy"]["weight_bits"] == 8 and s["test_acc"] > 0.5


def test_deploy_refuses_bad_input(tmp_path, digits_teacher, float_run):
    cases = [
        (["--model", "ann_digits", "--deploy", "loihi2"], "runs spiking models only"),
        (["--deploy", "loihi2", "--weight-bits", "9"], "qat.weight_bits = 9 is not allowed"),
        (["--deploy", "loihi2", "--init", str(digits_teacher)], "holds model 'ann_digits', not 'snn_digits'"),
        (["--deploy", "loihi2", "--reset", "soft", "--limit-train-batches", "1"], "soft reset"),
    ]
    for i, (flags, msg) in enumerate(cases):
        res = run_cli("train", *flags, "--epochs", "1", "--device", "cpu", "--out", str(tmp_path / str(i)))
        assert res.returncode == 2, (flags, res.stderr[-2000:])
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and msg in lines[0], (flags, res.stderr)


@pytest.mark.slow
def test_torchrun_two_processes_deployed(tmp_path, float_run):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "neurodistill.cli",
           "train", "--model", "snn_digits", "--epochs", "1", "--limit-train-batches", "4", "--lr", "0.01",
           "--deploy", "loihi2", "--init", str(float_run), "--device", "cpu", "--out", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    x, y = dataset_samples("digits", None, {}, 10_000, "test")
    pred = _qat_forward_predictions(out / "last.pt", x, 4)
    # the evaluation each rank ran on its shard, reduced, is the whole test set's
    assert summary["world_size"] == 2 and summary["test_acc"] == int((pred == y).sum()) / len(y)
