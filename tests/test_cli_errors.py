"""Bad input: exit status 2, one clear line on stderr, no traceback (click's CliRunner)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from neurodistill.cli import main


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def assert_user_error(result, *fragments: str) -> str:
    err = result.stderr
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def spiking_ckpt(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("snn")
    res = invoke("train", "--model", "snn_digits", "--epochs", "1", "--limit-train-batches", "2", "--out", str(out))
    assert res.exit_code == 0, res.output
    return out / "last.pt"


def test_unknown_model(tmp_path):
    assert_user_error(invoke("train", "--model", "resnet5", "--out", str(tmp_path / "r")), "unknown model 'resnet5'", "snn_resnet18")


def test_unknown_method(tmp_path):
    assert_user_error(invoke("train", "--method", "distil", "--out", str(tmp_path / "r")), "unknown method 'distil'", "tser")


def test_unknown_dataset(tmp_path):
    assert_user_error(invoke("train", "--dataset", "mnist", "--out", str(tmp_path / "r")), "unknown dataset 'mnist'", "digits")


def test_missing_data_dir(tmp_path):
    missing = tmp_path / "nowhere"
    assert_user_error(invoke("train", "--dataset", "cifar10", "--data-dir", str(missing), "--out", str(tmp_path / "r")),
                      str(missing), "cifar-10-batches-py")


def test_malformed_data_dir(tmp_path):
    d = tmp_path / "cifar" / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for name in ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]:
        (d / name).write_bytes(b"this is not a pickle")
    assert_user_error(invoke("train", "--dataset", "cifar10", "--data-dir", str(tmp_path / "cifar"), "--out", str(tmp_path / "r")),
                      "cifar-10-batches-py")


def test_kd_without_teacher(tmp_path):
    assert_user_error(invoke("train", "--method", "kd", "--out", str(tmp_path / "r")), "needs --teacher")


def test_teacher_that_is_spiking(tmp_path, spiking_ckpt):
    assert_user_error(invoke("train", "--method", "tser", "--teacher", str(spiking_ckpt), "--out", str(tmp_path / "r")),
                      str(spiking_ckpt), "spiking model 'snn_digits'")


def test_teacher_with_other_class_count(tmp_path):
    t = tmp_path / "t5"
    res = invoke("train", "--model", "ann_digits", "--dataset", "synthetic", "--synthetic-shape", "1,8,8",
                 "--synthetic-classes", "5", "--synthetic-size", "16", "--epochs", "1", "--out", str(t))
    assert res.exit_code == 0, res.output
    assert_user_error(invoke("train", "--method", "kd", "--teacher", str(t / "last.pt"), "--out", str(tmp_path / "r")),
                      "num_classes = 5", "needs 10")


def test_teacher_of_another_architecture(tmp_path, digits_teacher):
    ckpt = torch.load(digits_teacher, weights_only=True)
    ckpt["model"]["name"] = "ann_vgg11"  # the weights are ann_digits'
    bad = tmp_path / "relabelled.pt"
    torch.save(ckpt, bad)
    assert_user_error(invoke("train", "--method", "kd", "--teacher", str(bad), "--out", str(tmp_path / "r")),
                      str(bad), "do not fit model 'ann_vgg11'")


def test_corrupt_checkpoint(tmp_path):
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"\x00garbage" * 100)
    assert_user_error(invoke("train", "--method", "kd", "--teacher", str(bad), "--out", str(tmp_path / "r")),
                      str(bad), "is not a checkpoint (neither a torch zip archive nor a pickle")


def test_truncated_checkpoint(tmp_path, digits_teacher):
    data = digits_teacher.read_bytes()
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(data[: len(data) // 2])
    assert_user_error(invoke("train", "--method", "tser", "--teacher", str(bad), "--out", str(tmp_path / "r")),
                      str(bad), "damaged or truncated (its zip archive is incomplete)")


def test_truncated_last_pt_on_resume(tmp_path, spiking_ckpt):
    run = tmp_path / "run"
    run.mkdir()
    data = spiking_ckpt.read_bytes()
    (run / "last.pt").write_bytes(data[: len(data) // 3])
    before = sorted(p.name for p in run.iterdir())
    assert_user_error(invoke("train", "--resume", "--out", str(run)), "last.pt", "damaged or truncated")
    assert sorted(p.name for p in run.iterdir()) == before  # --resume wrote nothing (no config.yaml)


def test_not_a_neurodistill_checkpoint(tmp_path):
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    assert_user_error(invoke("train", "--method", "kd", "--teacher", str(other), "--out", str(tmp_path / "r")),
                      "not a neurodistill checkpoint")


def test_config_unknown_key(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: snn_digits\nlearning_rate: 0.1\n")
    assert_user_error(invoke("train", "--config", str(cfg), "--out", str(tmp_path / "r")), str(cfg), "unknown key 'learning_rate'")


def test_config_nested_unknown_key_toml(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[neuron]\ntau = 2.0\nleak = 0.5\n")
    assert_user_error(invoke("train", "--config", str(cfg), "--out", str(tmp_path / "r")), "unknown key 'neuron.leak'")


def test_config_wrong_type(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("epochs: ten\n")
    assert_user_error(invoke("train", "--config", str(cfg), "--out", str(tmp_path / "r")), "epochs = 'ten'", "expected int")


def test_config_invalid_yaml(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("epochs: [1, 2\n")
    assert_user_error(invoke("train", "--config", str(cfg), "--out", str(tmp_path / "r")), "not valid YAML")


def test_bad_flag_value_is_one_line(tmp_path):
    assert_user_error(invoke("train", "--epochs", "many", "--out", str(tmp_path / "r")), "'many' is not a valid integer")


def test_existing_run_is_not_overwritten(tmp_path, spiking_ckpt):
    out = spiking_ckpt.parent
    before = spiking_ckpt.read_bytes()
    assert_user_error(invoke("train", "--model", "snn_digits", "--out", str(out)), "already holds a run")
    assert spiking_ckpt.read_bytes() == before


def test_resume_with_fewer_epochs_than_done(tmp_path, spiking_ckpt):
    """A run resumed with --epochs below the epochs it has done: refused, nothing written (it
    used to crash with an UnboundLocalError after loading the checkpoint)."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(spiking_ckpt.parent, run)
    assert invoke("train", "--resume", "--epochs", "2", "--out", str(run)).exit_code == 0  # now 2 epochs done
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    assert_user_error(invoke("train", "--resume", "--epochs", "1", "--out", str(run)),
                      "has trained 2 epochs already, more than --epochs 1", "pass --epochs 2 to evaluate it again")
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before


def test_resume_without_a_run(tmp_path):
    assert_user_error(invoke("train", "--resume", "--out", str(tmp_path / "empty")), "no ", "last.pt")
