"""The options of `neurodistill train`: flag, config path, type and help of each, and the nested
config overrides the given flags make."""

from __future__ import annotations

from typing import Any

import click

from ..errors import ConfigError

# flag -> (config path, click type, help). Every default is None: only flags the user gives
# override the config file, which overrides the dataclass defaults.
TRAIN_OPTIONS: list[tuple[str, str, Any, str]] = [
    ("--model", "model", str, "registered model; 'neurodistill models' lists them [snn_digits]"),
    ("--dataset", "dataset", str, "digits | synthetic | cifar10 | cifar100 | imagenet | cifar10-dvs | dvs-gesture [digits]"),
    ("--data-dir", "data_dir", click.Path(file_okay=False), "directory holding the dataset (never downloaded)"),
    ("--method", "method", str, "none | tet | kd | tser | tssd | esd [none]"),
    ("--backprop", "backprop", click.Choice(["bptt", "rate"]),
     "bptt: through all T steps; rate: rate-based backprop, memory ~constant in T (spiking models; methods none, kd, esd) "
     "[bptt; esd: rate]"),
    ("--readout", "readout", click.Choice(["voltage", "spikes"]),
     "voltage: the class is the argmax of the classifier's output summed over T; spikes: a neuron follows the "
     "classifier and the class is the argmax of its spike counts (methods none, tet; bptt) [voltage]"),
    ("--teacher", "teacher", click.Path(dir_okay=False), "ANN teacher checkpoint (kd, tser)"),
    ("--init", "init", click.Path(dir_okay=False), "start from this checkpoint's weights (fine-tuning) [random init]"),
    ("--deploy", "deploy", click.Choice(["loihi2"]),
     "quantization-aware training: the forward pass is the exported Loihi 2 fixed-point network [off]"),
    ("--weight-bits", "qat.weight_bits", int, "--deploy loihi2: weight bits, 2..8 (export with the same) [8]"),
    ("--qat-calib", "qat.calib", int, "--deploy: training samples that set the encoding scale (export's --calib) [256]"),
    ("--timesteps", "timesteps", int, "time steps T for spiking models [4]"),
    ("--epochs", "epochs", int, "epochs [30]"),
    ("--batch-size", "batch_size", int, "batch size per process [64]"),
    ("--optimizer", "optimizer", click.Choice(["sgd", "adamw"]), "optimizer [sgd]"),
    ("--lr", "lr", float, "peak learning rate [0.1]"),
    ("--momentum", "momentum", float, "SGD momentum [0.9]"),
    ("--weight-decay", "weight_decay", float, "weight decay on conv/linear weights [5e-4]"),
    ("--schedule", "schedule", click.Choice(["cosine", "constant"]), "learning-rate schedule [cosine]"),
    ("--amp/--no-amp", "amp", bool, "mixed precision on CUDA [on]"),
    ("--amp-dtype", "amp_dtype", click.Choice(["fp16", "bf16"]),
     "mixed precision's type on CUDA: fp16 (with loss scaling) or bf16 (Ampere or newer) [fp16]"),
    ("--channels-last/--no-channels-last", "channels_last", bool, "channels-last (NHWC) weights and images on CUDA [off]"),
    ("--compile/--no-compile", "compile", bool, "torch.compile the model's forward on CUDA (bptt, without --deploy) [off]"),
    ("--seed", "seed", int, "random seed [0]"),
    ("--val-split", "val_split", float,
     "fraction of the training split held out to select best.pt [0.1]; 0 selects on the test split, as the "
     "seeds' papers do (not a clean protocol: say so if you publish it)"),
    ("--device", "device", click.Choice(["auto", "cpu", "cuda"]), "device [auto]"),
    ("--backend", "backend", click.Choice(["auto", "torch", "cuda", "triton", "cupy"]),
     "spikingjelly neuron kernels on CUDA; cupy is an alias of cuda in spikingjelly 2.x [auto]"),
    ("--workers", "workers", str,
     "DataLoader worker processes per process: N, or auto = 0 on a CPU, on CUDA the cores per local rank less one, "
     "at most 8 [auto]"),
    ("--limit-train-batches", "limit_train_batches", int, "stop each epoch after N batches (smoke tests) [0 = all]"),
    ("--out", "out", click.Path(), "run directory [runs/train]"),
    ("--tensorboard/--no-tensorboard", "tensorboard", bool, "write TensorBoard events to OUT/tb [off]"),
    ("--log-every", "log_every", int, "a progress line every N steps off a terminal (loss, lr, images/s, ETA) [50; 0 = none]"),
    ("--eval-every", "eval_every", int, "evaluate every N epochs, and after the last [1]"),
    ("--save-every", "save_every", int, "write last.pt every N epochs, and after the last [1]"),
    ("--neuron", "neuron.kind", click.Choice(["lif", "if", "cuba"]),
     "neuron model; cuba: spikingjelly's CUBALIFNode, Loihi 2's CUBA neuron with a decaying current [lif]"),
    ("--tau", "neuron.tau", float, "LIF and CUBA membrane time constant in steps [2.0]"),
    ("--tau-syn", "neuron.tau_syn", float, "CUBA synaptic current time constant in steps; 1: no current memory [2.0]"),
    ("--decay-input/--no-decay-input", "neuron.decay_input", bool, "LIF input is divided by tau [on]"),
    ("--v-threshold", "neuron.v_threshold", float, "firing threshold [1.0]"),
    ("--reset", "neuron.reset", click.Choice(["hard", "soft"]), "hard: v -> v_reset (Loihi 2); soft: v -= threshold [hard]"),
    ("--v-reset", "neuron.v_reset", float, "hard reset value [0.0]"),
    ("--detach-reset/--no-detach-reset", "neuron.detach_reset", bool, "no gradient through the reset [on]"),
    ("--surrogate", "neuron.surrogate", click.Choice(["atan", "sigmoid", "piecewise_quadratic", "erf"]), "surrogate gradient [atan]"),
    ("--surrogate-alpha", "neuron.surrogate_alpha", float, "surrogate sharpness [spikingjelly's default]"),
    ("--alpha", "loss.alpha", float, "distillation weight; CE gets 1 - alpha [0.5]"),
    ("--kd-temperature", "loss.temperature", float, "softmax temperature tau of kd/tser [5.0]"),
    ("--lam", "loss.lam", float, "tser entropy weight lambda [0.01]"),
    ("--ce-temperature", "loss.ce_temperature", float,
     "kd/tser: CE on softmax at this tau; 1: on the logits, = --kd-temperature: TSER's Eq. 8 as written [1.0]"),
    ("--kl-tau-squared/--no-kl-tau-squared", "loss.kl_tau_squared", bool, "scale KL by tau^2 [on]"),
    ("--entropy-on-softened/--no-entropy-on-softened", "loss.entropy_on_softened", bool, "tser: entropy of softmax_tau [on]"),
    ("--separate-ce/--no-separate-ce", "loss.separate_ce", bool, "tser: CE on each step's output [on]"),
    ("--separate-kl/--no-separate-kl", "loss.separate_kl", bool, "tser: KL on each step's output [on]"),
    ("--tssd-alpha", "tssd.alpha", float, "tssd: weight of the temporal KL (T_t-step teacher -> T-step output) [1.0]"),
    ("--tssd-beta", "tssd.beta", float, "tssd: weight of the spatial KL (final output -> weak classifier) [0.3]"),
    ("--tssd-temperature", "tssd.temperature", float, "tssd: softmax temperature tau of both KLs [3.0]"),
    ("--teacher-timesteps", "tssd.teacher_timesteps", int, "tssd: steps T_t of the temporal teacher, > T [0 = 2T]"),
    ("--weak-attach", "tssd.attach", str, "tssd: weak classifier input: auto, stageN or a module path such as body.7 "
     "[auto = stage3; with fewer stages the next-to-last]"),
    ("--weak-head", "tssd.weak_head", click.Choice(["linear", "conv"]),
     "tssd: weak classifier: linear = avg pool + linear; conv = conv3x3-BN-ReLU, avg pool, linear [linear]"),
    ("--tssd-ce-teacher/--no-tssd-ce-teacher", "tssd.ce_teacher", bool, "tssd: CE of the T_t-step output in the loss [on]"),
    ("--tssd-ce-weak/--no-tssd-ce-weak", "tssd.ce_weak", bool, "tssd: CE of the weak classifier in the loss [on]"),
    ("--tssd-kl-tau-squared/--no-tssd-kl-tau-squared", "tssd.kl_tau_squared", bool, "tssd: scale both KLs by tau^2 [on]"),
    ("--teacher-bn-stats/--no-teacher-bn-stats", "tssd.teacher_bn_stats", bool,
     "tssd: the T_t pass also updates BatchNorm running statistics [off]"),
    ("--esd-alpha", "esd.alpha", float, "esd: CE weight of every exit [1.0]"),
    ("--esd-alpha-final", "esd.alpha_final", float, "esd: CE weight of the final exit [= --esd-alpha]"),
    ("--esd-beta", "esd.beta", float, "esd: weight of the distillation from the reliable teacher [0.3]"),
    ("--esd-temperature", "esd.temperature", float, "esd: softmax temperature tau (and the tau^2 factor) [3.0]"),
    ("--esd-distill-final/--no-esd-distill-final", "esd.distill_final", bool, "esd: distil the final exit too [on]"),
    ("--esd-stages", "esd.stages", str, "esd: comma-separated module paths of the stage outputs, the last = the final "
     "stage (no branch), e.g. body.2,body.5 [derived from the model]"),
    ("--augment/--no-augment", "data.augment", bool, "random crop + flip on the train split [on]"),
    ("--autoaugment/--no-autoaugment", "data.autoaugment", bool, "CIFAR AutoAugment policy [off]"),
    ("--cutout", "data.cutout", int, "Cutout side in pixels, 0 = off [0]"),
    ("--frames", "data.frames", int, "event datasets: frames per sample [16]"),
    ("--frame-size", "data.frame_size", int,
     "event datasets: resize frames to S x S (antialiased bilinear; pixels hold mean event counts) [0 = 128]"),
    ("--frame-flip/--no-frame-flip", "data.frame_flip", bool, "event datasets: random horizontal flip of the train split [off]"),
    ("--frame-roll", "data.frame_roll", int, "event datasets: random roll of the train split by up to N pixels in y and x [0]"),
    ("--image-size", "data.image_size", int, "ImageNet crop size [224]"),
    ("--synthetic-shape", "data.synthetic_shape", str, "synthetic: sample shape, e.g. 3,32,32 [3,32,32]"),
    ("--synthetic-classes", "data.synthetic_classes", int, "synthetic: classes [10]"),
    ("--synthetic-size", "data.synthetic_size", int, "synthetic: train samples [256]"),
]



def with_train_options(fn):
    for flag, dest, tp, help_ in reversed(TRAIN_OPTIONS):
        name = "opt_" + dest.replace(".", "__")
        if tp is bool:
            fn = click.option(flag, name, default=None, help=help_)(fn)
        else:
            fn = click.option(flag, name, type=tp, default=None, help=help_)(fn)
    return fn


def config_overrides(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Nested config overrides from the flags that were given."""
    out: dict[str, Any] = {}
    for key, value in kwargs.items():
        if not key.startswith("opt_") or value is None:
            continue
        path = key[4:].split("__")
        if path[-1] == "synthetic_shape":
            value = _int_list("--synthetic-shape", value)
        elif path[-1] == "stages":
            value = _str_list("--esd-stages", value)
        elif path[-1] == "workers":
            value = _workers(value)
        node = out
        for p in path[:-1]:
            node = node.setdefault(p, {})
        node[path[-1]] = value
    return out


def _int_list(flag: str, text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{flag} {text!r} is not a comma-separated list of integers (e.g. 3,32,32)") from None
    if not values or any(v < 1 for v in values):
        raise ConfigError(f"{flag} {text!r}: every size must be >= 1")
    return values


def _workers(text: str) -> int | str:
    """`auto` or an integer; the config checks its range."""
    if text.strip() == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"--workers {text!r} is neither auto nor an integer (e.g. --workers 8)") from None


def _str_list(flag: str, text: str) -> list[str]:
    values = [v.strip() for v in text.split(",")]
    if not text.strip() or any(not v for v in values):
        raise ConfigError(f"{flag} {text!r} is not a comma-separated list of module paths (e.g. body.2,body.5)")
    return values
