"""Config files (YAML, TOML) under flags; `models` and `--help` of every command."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from neurodistill.cli import main
from neurodistill.config import TrainConfig, read_config_file, resolve
from neurodistill.errors import ConfigError


@pytest.mark.parametrize("suffix,text", [
    (".yaml", "model: snn_vgg11\nepochs: 7\nneuron:\n  tau: 3.0\n  reset: soft\nloss: {alpha: 0.2}\ndata: {synthetic_shape: [2, 4, 4]}\n"),
    (".toml", 'model = "snn_vgg11"\nepochs = 7\n[neuron]\ntau = 3.0\nreset = "soft"\n[loss]\nalpha = 0.2\n[data]\nsynthetic_shape = [2, 4, 4]\n'),
])
def test_file_then_flags(tmp_path, suffix, text):
    path = tmp_path / f"c{suffix}"
    path.write_text(text)
    cfg = resolve(read_config_file(path), {"epochs": 9, "neuron": {"tau": 4}})
    assert (cfg.model, cfg.epochs, cfg.neuron.tau, cfg.neuron.reset, cfg.loss.alpha) == ("snn_vgg11", 9, 4.0, "soft", 0.2)
    assert cfg.data.synthetic_shape == (2, 4, 4)
    assert cfg.lr == TrainConfig().lr  # untouched keys keep their defaults


def test_round_trip_through_yaml(tmp_path):
    import yaml

    cfg = resolve({"method": "tser", "loss": {"lam": 0.05}}, {"timesteps": 6})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    assert resolve(read_config_file(path), {}) == cfg


@pytest.mark.parametrize("bad,match", [
    ({"batch_size": 0}, "batch_size = 0 is not allowed"),
    ({"lr": -1}, "lr = -1"),
    ({"amp": "yes"}, "amp = 'yes' has the wrong type; expected bool"),
    ({"data": {"synthetic_shape": [3, "a"]}}, "expected a list of integers"),
    ({"neuron": 3}, "neuron must be a mapping"),
])
def test_bad_values(bad, match):
    with pytest.raises(ConfigError, match=match):
        resolve(bad, {})


def test_models_command_lists_the_registry():
    res = CliRunner().invoke(main, ["models"])
    assert res.exit_code == 0
    lines = res.output.splitlines()
    assert any(ln.startswith("snn_resnet18 ") and "ann_resnet18" in ln and "spiking" in ln for ln in lines)
    assert len(lines) == 1 + 16


@pytest.mark.parametrize("cmd", [[], ["train"], ["models"], ["demo"]])
def test_help(cmd):
    res = CliRunner().invoke(main, [*cmd, "--help"])
    assert res.exit_code == 0 and "Usage:" in res.output
