"""Training configuration: dataclasses with defaults, loaded from YAML/TOML, overridden by flags.

A config file mirrors the dataclasses: top-level keys of `TrainConfig`, with the nested
sections `neuron:`, `loss:`, `tssd:`, `esd:`, `qat:` and `data:`. Unknown keys and wrong types are `ConfigError`s
that name the file, the key, the value and what is allowed.
"""

from __future__ import annotations

import math
import tomllib
import types
import typing
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from .data import DataOptions
from .distill import BACKPROPS
from .distill.esd import ESDConfig
from .distill.losses import LossConfig
from .distill.tssd import TssdConfig
from .errors import ConfigError, MethodError
from .io.files import read_text
from .io.limits import MAX_CLASSES, MAX_SAMPLES, MAX_TIMESTEPS, MAX_WORKERS, check_range
from .models.neurons import NeuronConfig
from .qat.config import QatConfig, check_deploy_name


@dataclass
class TrainConfig:
    model: str = "snn_digits"
    dataset: str = "digits"
    data_dir: str | None = None
    method: str = "none"  # none | tet | kd | tser | tssd | esd (kd and tser need --teacher)
    readout: str = "voltage"  # voltage (argmax of the classifier's mean output) | spikes (a neuron after it; argmax of its spike counts)
    backprop: str = "bptt"  # bptt | rate (rate-based backprop: spiking models, methods none, kd, esd); esd switches it to rate
    teacher: str | None = None  # path of an ANN teacher checkpoint
    init: str | None = None  # start from this checkpoint's weights (fine-tuning, e.g. --deploy from a float run)
    deploy: str | None = None  # loihi2: quantization-aware training, the forward is the exported fixed point
    timesteps: int = 4  # T; ignored for ANN models; event data uses its own frame count
    epochs: int = 30
    batch_size: int = 64  # per process; under torchrun the global batch is this x world size
    optimizer: str = "sgd"  # sgd | adamw
    lr: float = 0.1
    momentum: float = 0.9  # SGD only
    weight_decay: float = 5e-4  # on conv/linear weights only, never on BN or biases
    schedule: str = "cosine"  # cosine (per iteration, to 0) | constant
    amp: bool = True  # mixed precision; only ever used on CUDA
    amp_dtype: str = "fp16"  # fp16 (with a gradient scaler) | bf16 (none needed); CUDA only, like amp
    channels_last: bool = False  # NHWC weights and images on CUDA (faster convolutions); ignored on a CPU
    compile: bool = False  # torch.compile the model's forward on CUDA (BPTT); ignored on a CPU
    seed: int = 0
    val_split: float = 0.1  # held out of the training split to select best.pt; 0: select on test (the papers' protocol)
    device: str = "auto"  # auto | cpu | cuda
    backend: str = "auto"  # spikingjelly neuron kernels on CUDA: auto | torch | cuda | triton
    workers: int | str = "auto"  # DataLoader worker processes per process; auto: 0 on a CPU, on CUDA cores per local rank - 1, at most 8
    limit_train_batches: int = 0  # > 0: stop each epoch after that many batches (smoke tests)
    out: str = "runs/train"
    tensorboard: bool = False
    log_every: int = 50  # one log line (or bar update) every N training steps; 0: at each epoch's end only
    eval_every: int = 1  # evaluate every N epochs, and always after the last
    save_every: int = 1  # write last.pt every N epochs, and always after the last
    neuron: NeuronConfig = field(default_factory=NeuronConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    tssd: TssdConfig = field(default_factory=TssdConfig)  # settings of --method tssd
    esd: ESDConfig = field(default_factory=ESDConfig)  # settings of --method esd
    qat: QatConfig = field(default_factory=QatConfig)  # settings of --deploy
    data: DataOptions = field(default_factory=DataOptions)

    def to_dict(self) -> dict[str, Any]:
        return _plain(asdict(self))


CHOICES = {
    "optimizer": ("sgd", "adamw"),
    "schedule": ("cosine", "constant"),
    "device": ("auto", "cpu", "cuda"),
    "backend": ("auto", "torch", "cuda", "triton", "cupy"),
    "backprop": BACKPROPS,
    "readout": ("voltage", "spikes"),
    "amp_dtype": ("fp16", "bf16"),
}
POSITIVE = ("timesteps", "epochs", "batch_size")
# Integer settings and their allowed range (neurodistill.io.limits: a typo cannot hang the tool or
# exhaust memory). Keys are dotted config paths.
INT_RANGES = {
    "timesteps": (1, MAX_TIMESTEPS), "epochs": (1, 1_000_000), "batch_size": (1, 1_000_000),
    "limit_train_batches": (0, 2**40), "seed": (0, 2**63 - 1),
    "data.cutout": (0, 100_000), "data.frames": (1, MAX_TIMESTEPS), "data.image_size": (1, 100_000),
    "data.synthetic_classes": (1, MAX_CLASSES), "data.synthetic_size": (1, MAX_SAMPLES), "data.seed": (0, 2**63 - 1),
    "tssd.teacher_timesteps": (0, MAX_TIMESTEPS), "qat.calib": (1, MAX_SAMPLES),
    "log_every": (0, 2**40), "eval_every": (1, 1_000_000), "save_every": (1, 1_000_000),
}
# Elements of one synthetic sample (3 x 4096 x 4096 is far beyond any image a model here takes).
MAX_SAMPLE_ELEMENTS = 3 * 4096 * 4096


def _plain(d: Any) -> Any:
    """Tuples to lists, so YAML and JSON hold plain types."""
    if isinstance(d, dict):
        return {k: _plain(v) for k, v in d.items()}
    if isinstance(d, list | tuple):
        return [_plain(v) for v in d]
    return d


def _check_type(where: str, key: str, value: Any, tp: Any) -> Any:
    """`value` converted to annotation `tp`, or a ConfigError."""
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errs = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _check_type(where, key, value, a)
            except ConfigError as e:
                errs.append(e)
        raise errs[0]
    if origin is tuple:
        elem = typing.get_args(tp)[0]
        ok_elem = (lambda v: isinstance(v, int) and not isinstance(v, bool)) if elem is int else (lambda v: isinstance(v, elem))
        if not isinstance(value, list | tuple) or not all(ok_elem(v) for v in value):
            kind = "integers" if elem is int else "strings" if elem is str else elem.__name__
            raise ConfigError(f"{where}: {key} = {value!r} has the wrong type; expected a list of {kind}")
        return tuple(value)
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, int | float) and not isinstance(value, bool),
        str: isinstance(value, str),
    }.get(tp)
    if ok is None:  # pragma: no cover - an annotation this loader does not know is a bug
        raise TypeError(f"unsupported config annotation {tp!r} for {key}")
    if not ok:
        raise ConfigError(f"{where}: {key} = {value!r} has the wrong type; expected {tp.__name__}")
    return float(value) if tp is float else value


def build(cls: type, values: dict[str, Any], where: str, prefix: str = "") -> Any:
    """Instantiate dataclass `cls` from `values`, checking keys and types recursively."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: {prefix.rstrip('.') or 'the config'} must be a mapping, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {prefix + unknown[0]!r}; allowed keys{' in ' + prefix.rstrip('.') if prefix else ''}: "
            f"{', '.join(sorted(known))}"
        )
    kwargs = {}
    for name, value in values.items():
        tp = hints[name]
        if is_dataclass(tp):
            kwargs[name] = build(tp, value, where, f"{prefix}{name}.")
        else:
            kwargs[name] = _check_type(where, prefix + name, value, tp)
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The raw mapping in a YAML (.yaml/.yml) or TOML (.toml) file."""
    p = Path(path)
    text = read_text(p, "config file", ConfigError)
    try:
        data = tomllib.loads(text) if p.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError, RecursionError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"config file {str(p)!r} is not valid {'TOML' if p.suffix == '.toml' else 'YAML'}: {first}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(p)!r} must hold a mapping of keys, got {type(data).__name__}")
    return data


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def resolve(file_values: dict[str, Any], overrides: dict[str, Any], where: str = "config") -> TrainConfig:
    """Defaults, then the file, then the flags; validated.

    `backprop` left unset with method esd resolves to rate (esd trains with rate-based
    backprop); the resolved config records the value used.
    """
    values = merge(file_values, overrides)
    cfg = build(TrainConfig, values, where)
    for key, allowed in CHOICES.items():
        if getattr(cfg, key) not in allowed:
            raise ConfigError(f"{where}: {key} = {getattr(cfg, key)!r} is not allowed; choose one of {', '.join(allowed)}")
    for key in POSITIVE:
        if getattr(cfg, key) < 1:
            raise ConfigError(f"{where}: {key} = {getattr(cfg, key)} is not allowed; it must be >= 1")
    _check_ranges(cfg, where)
    check_deploy_name(where, cfg.deploy)
    if cfg.lr <= 0:
        raise ConfigError(f"{where}: lr = {cfg.lr} is not allowed; it must be > 0")
    if cfg.method == "esd":
        if "backprop" not in values:
            cfg.backprop = "rate"
        elif cfg.backprop != "rate":
            raise ConfigError(f"{where}: backprop = {cfg.backprop!r} is not allowed with method esd, which trains with "
                              "rate-based backprop; set backprop = rate or leave it out")
    _check_spike_readout(cfg, where)
    if cfg.neuron.kind == "cuba" and cfg.backprop == "rate":
        raise MethodError(f"{where}: backprop = rate supports LIF and IF neurons only, not neuron.kind = cuba; "
                          f"train cuba with backprop = bptt{' and a method other than esd' if cfg.method == 'esd' else ''}")
    if cfg.compile and (cfg.backprop == "rate" or cfg.deploy):
        raise ConfigError(f"{where}: compile = true is not allowed with {'deploy' if cfg.deploy else 'rate-based backprop'}, "
                          "which swaps the model's layer forwards at every step (torch.compile would recompile each time); "
                          "leave compile out")
    if cfg.method == "tssd" and cfg.tssd.teacher_timesteps and cfg.tssd.teacher_timesteps <= cfg.timesteps:
        raise ConfigError(f"{where}: tssd.teacher_timesteps = {cfg.tssd.teacher_timesteps} is not allowed with "
                          f"timesteps = {cfg.timesteps}; the temporal teacher needs more steps (0 = 2 x timesteps)")
    return cfg


SPIKE_READOUT_METHODS = ("none", "tet")  # losses on the output itself; the others read logits or features


def _check_spike_readout(cfg: TrainConfig, where: str) -> None:
    """A spike readout trains on its spike rate (cross-entropy of the time-mean spikes, or per step
    with tet): the teacher methods match logits, which a rate in [0, 1] is not, and rate backprop
    and --deploy build their forward from a classifier read out as a voltage."""
    if cfg.readout != "spikes":
        return
    if cfg.method not in SPIKE_READOUT_METHODS:
        raise MethodError(f"{where}: method {cfg.method!r} is not allowed with readout = spikes; allowed: "
                          f"{', '.join(SPIKE_READOUT_METHODS)} (the others match logits or features, not spike counts)")
    if cfg.backprop == "rate" or cfg.deploy:
        what = "backprop = rate" if cfg.backprop == "rate" else f"deploy = {cfg.deploy}"
        raise MethodError(f"{where}: {what} is not allowed with readout = spikes, whose output neuron it does not "
                          "model; allowed: backprop = bptt without deploy")


def _get(cfg: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _floats(obj: Any, prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for f in fields(obj):
        v = getattr(obj, f.name)
        if is_dataclass(v):
            out += _floats(v, f"{prefix}{f.name}.")
        elif isinstance(v, float):
            out.append((prefix + f.name, v))
    return out


def _check_ranges(cfg: TrainConfig, where: str) -> None:
    for key, (lo, hi) in INT_RANGES.items():
        check_range(where, key, _get(cfg, key), lo, hi)
    if cfg.workers != "auto" and (isinstance(cfg.workers, str) or not 0 <= cfg.workers <= MAX_WORKERS):
        raise ConfigError(f"{where}: workers = {cfg.workers!r} is not allowed; allowed: auto, or an integer from 0 to {MAX_WORKERS}")
    for key, v in _floats(cfg):
        if not math.isfinite(v):
            raise ConfigError(f"{where}: {key} = {v} is not allowed; it must be a finite number")
    if not 0 <= cfg.val_split < 1:
        raise ConfigError(f"{where}: val_split = {cfg.val_split} is not allowed; it must be in [0, 1)")
    shape = cfg.data.synthetic_shape
    if not shape or any(d < 1 for d in shape) or math.prod(shape) > MAX_SAMPLE_ELEMENTS:
        raise ConfigError(f"{where}: data.synthetic_shape = {list(shape)} is not allowed; every size >= 1 and at most "
                          f"{MAX_SAMPLE_ELEMENTS:,} elements per sample")
