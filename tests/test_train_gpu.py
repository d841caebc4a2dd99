"""The GPU options (--amp-dtype, --channels-last, --compile, cuDNN's autotuner, the fused optimizer
step, the teacher under inference mode): validated, recorded in the run, and on a CPU the run
without them, bit for bit. What only a GPU shows is in the CUDA-only test at the end."""

from __future__ import annotations

import csv

import pytest
import torch
from click.testing import CliRunner

from neurodistill.cli import main
from neurodistill.config import TrainConfig, resolve
from neurodistill.distill import LogitStep
from neurodistill.distill.losses import LossConfig, loss_kd
from neurodistill.errors import ConfigError
from neurodistill.models import create_model
from neurodistill.train import gpu, load_checkpoint, train

SMALL = {"model": "snn_digits", "epochs": 2, "limit_train_batches": 3, "batch_size": 32, "seed": 2}
TIME_COLUMNS = ("seconds", "train_step_seconds")


def _fingerprint(out):
    """The weights, optimizer state and metrics.csv without its wall-clock columns."""
    ckpt = load_checkpoint(out / "last.pt")
    lines = (out / "metrics.csv").read_text().splitlines()
    rows = [{k: v for k, v in r.items() if k not in TIME_COLUMNS} for r in csv.DictReader(lines)]
    return ckpt["state_dict"], ckpt["optimizer"]["state"], rows


def _same(a, b) -> bool:
    (wa, oa, ra), (wb, ob, rb) = a, b
    same_opt = all(torch.equal(oa[i][k], ob[i][k]) for i in oa for k in oa[i])
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa) and same_opt and ra == rb


def test_gpu_options_change_no_cpu_result(tmp_path, digits_teacher):
    """kd (a teacher pass) with every GPU option set: the same weights, optimizer state and metrics
    as without them, and the options are in config.yaml and the checkpoint's config."""
    base = {**SMALL, "method": "kd", "teacher": str(digits_teacher), "device": "cpu"}
    train(resolve({**base, "out": str(tmp_path / "plain")}, {}))
    opts = {"amp_dtype": "bf16", "channels_last": True, "compile": True}
    train(resolve({**base, **opts, "out": str(tmp_path / "opts")}, {}))
    assert _same(_fingerprint(tmp_path / "plain"), _fingerprint(tmp_path / "opts"))
    config = load_checkpoint(tmp_path / "opts" / "last.pt")["config"]
    assert {k: config[k] for k in opts} == opts
    assert "amp_dtype: bf16" in (tmp_path / "opts" / "config.yaml").read_text()


def test_flags_reach_the_config(tmp_path):
    res = CliRunner().invoke(main, ["train", "--epochs", "1", "--limit-train-batches", "1", "--amp-dtype", "bf16",
                                    "--channels-last", "--compile", "--log-every", "7", "--eval-every", "3",
                                    "--save-every", "4", "--device", "cpu", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    cfg = load_checkpoint(tmp_path / "last.pt")["config"]
    assert (cfg["amp_dtype"], cfg["channels_last"], cfg["compile"]) == ("bf16", True, True)
    assert (cfg["log_every"], cfg["eval_every"], cfg["save_every"]) == (7, 3, 4)
    defaults = TrainConfig()
    assert (defaults.amp_dtype, defaults.channels_last, defaults.compile) == ("fp16", False, False)


@pytest.mark.parametrize("args,match", [
    (["--amp-dtype", "fp8"], "'fp8' is not one of 'fp16', 'bf16'"),
    (["--eval-every", "0"], "eval_every = 0"),
    (["--save-every", "-1"], "save_every = -1"),
    (["--log-every", "-2"], "log_every = -2"),
    (["--compile", "--backprop", "rate"], "compile = true is not allowed with rate-based backprop"),
    (["--compile", "--method", "esd"], "compile = true is not allowed with rate-based backprop"),
    (["--compile", "--deploy", "loihi2"], "compile = true is not allowed with deploy"),
])
def test_bad_gpu_and_logging_options_are_one_line_errors(tmp_path, args, match):
    res = CliRunner().invoke(main, ["train", *args, "--out", str(tmp_path / "run")])
    assert res.exit_code == 2, res.output
    assert match in res.output and len(res.output.strip().splitlines()) == 1, res.output
    assert not (tmp_path / "run").exists()


def test_config_file_values_are_checked():
    with pytest.raises(ConfigError, match="amp_dtype = 'float16' is not allowed; choose one of fp16, bf16"):
        resolve({"amp_dtype": "float16"}, {})
    with pytest.raises(ConfigError, match="channels_last = 'yes' has the wrong type; expected bool"):
        resolve({"channels_last": "yes"}, {})


def test_amp_settings_per_device():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert gpu.amp(resolve({}, {}), cuda) == (True, torch.float16, True)
    assert gpu.amp(resolve({"amp_dtype": "bf16"}, {}), cuda) == (True, torch.bfloat16, False)  # bf16: no scaler
    assert gpu.amp(resolve({"amp": False, "amp_dtype": "bf16"}, {}), cuda)[::2] == (False, False)
    assert gpu.amp(resolve({"amp_dtype": "bf16"}, {}), cpu)[::2] == (False, False)


def test_channels_last_on_cuda_only():
    cfg = resolve({"channels_last": True}, {})
    assert gpu.memory_format(cfg, torch.device("cpu")) == torch.preserve_format
    assert gpu.memory_format(cfg, torch.device("cuda")) == torch.channels_last
    assert gpu.memory_format(resolve({}, {}), torch.device("cuda")) == torch.preserve_format
    model = create_model("ann_resnet18", 10, 3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    gpu.prepare(model, cfg, torch.device("cuda"))  # the conversion itself; here on CPU tensors
    convs = [v for v in model.state_dict().values() if v.dim() == 4]
    assert convs and all(v.is_contiguous(memory_format=torch.channels_last) for v in convs)
    assert not any(v.is_contiguous() for v in convs if v.shape[-1] > 1)  # 1x1 kernels are both at once
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_cuda_refusals_name_the_reason(monkeypatch):
    """The checks a GPU machine runs, before anything is written: bf16 on a GPU without it, and
    --compile where torch.compile has no code generator."""
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla V100-SXM2-16GB")
    with pytest.raises(ConfigError, match=r"bfloat16 .*Tesla V100-SXM2-16GB has not\); use --amp-dtype fp16"):
        gpu.check(resolve({"amp_dtype": "bf16"}, {}), cuda)
    gpu.check(resolve({"amp_dtype": "bf16", "amp": False}, {}), cuda)  # no AMP: bf16 is never used
    gpu.check(resolve({"amp_dtype": "bf16"}, {}), torch.device("cpu"))
    from torch.utils import _triton

    monkeypatch.setattr(_triton, "has_triton", lambda: False)
    with pytest.raises(ConfigError, match=r"compile = true: torch.compile cannot run here \(.*Triton.*\); leave --compile out"):
        gpu.check(resolve({"compile": True}, {}), cuda)


def test_compile_keeps_the_state_dict_keys(monkeypatch):
    import torch._dynamo

    monkeypatch.setattr(torch._dynamo.config, "suppress_errors", False)  # compile_model sets it: restore it after
    model = create_model("snn_digits", 10, 1)
    keys = list(model.state_dict())
    gpu.compile_model(model, resolve({"compile": True}, {}), torch.device("cpu"))
    assert model._compiled_call_impl is None  # a CPU run stays eager
    gpu.compile_model(model, resolve({"compile": True}, {}), torch.device("cuda"))
    assert model._compiled_call_impl is not None and list(model.state_dict()) == keys  # export reads these keys
    assert torch._dynamo.config.suppress_errors  # a graph it cannot compile runs eagerly instead of ending the run


def test_teacher_logits_under_inference_mode_can_enter_a_loss():
    """The teacher's logits equal a plain no-grad pass, and a loss that saves them for its backward
    still trains the student (an inference tensor there would raise)."""
    teacher = create_model("ann_digits", 10, 1).eval()

    class Inputs:
        spiking, event, timesteps = True, False, 2

        def teacher(self, x):
            return x

    step = LogitStep(loss_kd, LossConfig(), Inputs(), teacher)
    x = torch.randn(4, 1, 8, 8)
    z_tea = step.teacher_logits(x)
    with torch.no_grad():
        assert torch.equal(z_tea, teacher(x))
    assert not z_tea.is_inference() and not z_tea.requires_grad
    student = torch.randn(4, 10, requires_grad=True)
    (student * z_tea).sum().backward()  # mul saves z_tea for the backward
    assert torch.equal(student.grad, z_tea)


def test_fused_optimizer_only_for_cuda_parameters():
    assert gpu.fused([torch.nn.Parameter(torch.zeros(2))]) == {}
    assert gpu.fused([]) == {}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("amp_dtype,extra", [("fp16", {}), ("bf16", {"channels_last": True})])
def test_cuda_steps_never_wait_for_the_device(tmp_path, monkeypatch, amp_dtype, extra):
    """On a GPU: no training step syncs with the host (CUDA's sync debug mode raises on any),
    with the fp16 scaler (fused optimizer step) and with bf16 + channels-last; the fused step ran."""
    from neurodistill.train import epoch as ep

    real_step, fused = ep.train_step, []

    def checked(run, x, y):
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            out = real_step(run, x, y)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        fused.append(run.optimizer.param_groups[0].get("fused"))
        return out

    monkeypatch.setattr(ep, "train_step", checked)
    train(resolve({**SMALL, "device": "cuda", "amp_dtype": amp_dtype, "log_every": 0, **extra, "out": str(tmp_path)}, {}))
    assert fused and all(fused)
    assert torch.backends.cudnn.benchmark


@pytest.mark.parametrize("name,size", [("snn_resnet18", 16), ("snn_vgg11", 32), ("snn_sew_resnet18", 32)])
def test_channels_last_models_compute_the_same(name, size):
    """What --channels-last runs on a GPU, here on CPU tensors in float64 (no spike flips on
    rounding): BPTT's and rate backprop's steps of every model family take channels-last weights
    and images (no reshape fails on their strides) and give the same logits and gradients."""
    from neurodistill.models.neurons import NeuronConfig
    from neurodistill.models.rate_bp import rate_step

    torch.manual_seed(0)
    plain = create_model(name, 10, 3, NeuronConfig()).double()
    nhwc = gpu.prepare(create_model(name, 10, 3, NeuronConfig()).double(), resolve({"channels_last": True}, {}),
                       torch.device("cuda"))
    nhwc.load_state_dict(plain.state_dict())
    assert any(not p.is_contiguous() for p in nhwc.parameters())  # loading kept the channels-last strides
    x = torch.rand(2, 3, size, size, dtype=torch.float64) * 4
    fmt = gpu.memory_format(resolve({"channels_last": True}, {}), torch.device("cuda"))
    for step in (lambda m, x: m(x.unsqueeze(0).repeat(2, 1, 1, 1, 1)).mean(0), lambda m, x: rate_step(m, x, 2).logits):
        outs, grads = [], []
        for m, xi in ((plain, x), (nhwc, x.contiguous(memory_format=fmt))):
            m.zero_grad()
            z = step(m, xi)
            z.square().sum().backward()
            outs.append(z.detach())
            grads.append([p.grad.clone() for p in m.parameters()])
        assert outs[0].abs().sum() > 0 and torch.allclose(outs[0], outs[1], rtol=1e-9, atol=1e-12)
        assert all(torch.allclose(a, b, rtol=1e-8, atol=1e-12) for a, b in zip(*grads, strict=True))
