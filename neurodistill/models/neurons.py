"""Spiking neuron settings and the spikingjelly neurons built from them."""

from __future__ import annotations

import importlib
import math
import os
from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from ..errors import ConfigError

# surrogate name -> (spikingjelly class name, default alpha as spikingjelly defines it)
SURROGATES = {
    "atan": ("ATan", 2.0),
    "sigmoid": ("Sigmoid", 4.0),
    "piecewise_quadratic": ("PiecewiseQuadratic", 1.0),
    "erf": ("Erf", 2.0),
}
NEURON_KINDS = ("lif", "if", "cuba")
RESETS = ("hard", "soft")
# spikingjelly 2.x chooses its CUDA kernels with this variable (its CuPy kernels of 0.0.0.0.14
# became the native "cuda" implementation); on the CPU the torch implementation always runs.
BACKENDS = ("auto", "torch", "cuda", "triton", "cupy")
# spikingjelly 2.0 picks LIF and IF kernels separately, each from its own variable
_BACKEND_OPS = (("SJ_LIF_CUDA_IMPLEMENTATION", "spikingjelly._ops.lif"), ("SJ_IF_CUDA_IMPLEMENTATION", "spikingjelly._ops.if_"))


@dataclass
class NeuronConfig:
    kind: str = "lif"  # lif | if | cuba (spikingjelly's CUBALIFNode: Loihi 2's CUBA neuron)
    tau: float = 2.0  # membrane time constant in steps (LIF and CUBA; CUBA: v_decay = 1 - 1/tau)
    tau_syn: float = 2.0  # synaptic current time constant in steps (CUBA only: c_decay = 1 - 1/tau_syn)
    decay_input: bool = True  # spikingjelly: H = V + (X - (V - V_reset)) / tau
    v_threshold: float = 1.0
    reset: str = "hard"  # hard: V -> v_reset after a spike (what Loihi 2 runs); soft: V -= threshold
    v_reset: float = 0.0  # hard reset value
    detach_reset: bool = True  # no gradient through the reset, as in TET, SEW and rate-BP
    surrogate: str = "atan"
    surrogate_alpha: float | None = None  # None: spikingjelly's default for that surrogate

    def __post_init__(self) -> None:
        _choice("neuron.kind", self.kind, NEURON_KINDS)
        _choice("neuron.reset", self.reset, RESETS)
        _choice("neuron.surrogate", self.surrogate, tuple(SURROGATES))
        if self.kind in ("lif", "cuba") and not self.tau > 1.0:
            raise ConfigError(f"neuron.tau = {self.tau} is not allowed; {self.kind.upper()} needs tau > 1")
        if self.kind == "cuba" and not self.tau_syn >= 1.0:
            raise ConfigError(f"neuron.tau_syn = {self.tau_syn} is not allowed; CUBA needs tau_syn >= 1 (1: no current memory)")
        if not self.v_threshold > 0:
            raise ConfigError(f"neuron.v_threshold = {self.v_threshold} is not allowed; it must be > 0")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> NeuronConfig:
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown neuron setting(s) {unknown}; allowed: {sorted(known)}")
        for f in fields(cls):
            if f.name in d and not _of_type(d[f.name], f.default):
                kind = "true or false" if isinstance(f.default, bool) else "a number" if f.default is None or isinstance(
                    f.default, float) else "a string"
                raise ConfigError(f"neuron.{f.name} = {d[f.name]!r} is not allowed; allowed: {kind}")
        return cls(**d)


def _of_type(value, default) -> bool:
    """Whether `value` has the type of the field whose default is `default` (None: an optional number)."""
    if isinstance(default, bool):
        return isinstance(value, bool)
    if default is None or isinstance(default, float):
        number = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        return number or (default is None and value is None)
    return isinstance(value, type(default))


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} = {value!r} is not allowed; choose one of {', '.join(allowed)}")


def make_neuron(cfg: NeuronConfig) -> nn.Module:
    """A multi-step spikingjelly neuron: input `[T, B, ...]`, output spikes of the same shape."""
    from spikingjelly.activation_based import neuron, surrogate

    cls_name, default_alpha = SURROGATES[cfg.surrogate]
    sg = getattr(surrogate, cls_name)(alpha=cfg.surrogate_alpha or default_alpha)
    common = dict(
        v_threshold=cfg.v_threshold,
        v_reset=cfg.v_reset if cfg.reset == "hard" else None,
        surrogate_function=sg,
        detach_reset=cfg.detach_reset,
        step_mode="m",
    )
    if cfg.kind == "cuba":
        node = _cuba_node(cfg, common)
    elif cfg.kind == "if":
        node = neuron.IFNode(**common)
    else:
        node = neuron.LIFNode(tau=cfg.tau, decay_input=cfg.decay_input, **common)
    node.register_forward_pre_hook(_float32_input)
    return node


def _cuba_node(cfg: NeuronConfig, common: dict) -> nn.Module:
    """spikingjelly's own CUBALIFNode (`c = c c_decay + x; v = v v_decay + c`), decays from the time
    constants as LIF's tau: the factors 1 - 1/tau_syn and 1 - 1/tau. Its constructor takes neither
    detach_reset nor step_mode: they are set on the node (BaseNode attributes)."""
    from spikingjelly.activation_based import neuron

    node = neuron.CUBALIFNode(c_decay=1.0 - 1.0 / cfg.tau_syn, v_decay=1.0 - 1.0 / cfg.tau,
                              v_threshold=common["v_threshold"], v_reset=common["v_reset"],
                              surrogate_function=common["surrogate_function"])
    node.detach_reset = common["detach_reset"]
    node.step_mode = common["step_mode"]
    return node


def loihi_cuba(body: nn.Module) -> None:
    """Make a model of CUBALIFNodes exactly deployable on Loihi 2, in place (docs/training.md).

    Loihi adds a bias to v, spikingjelly to the decaying current: so BatchNorm (its folded shift
    is a bias) becomes Identity and every synapse layer but the last (the readout's) loses its
    bias; the first neuron (fed by the analog input, which Loihi gets as a bias) keeps no
    current memory (c_decay = 0, tau_syn = 1). A model without CUBALIFNodes is left as it is.
    """
    from spikingjelly.activation_based.neuron import CUBALIFNode

    nodes = [m for m in body.modules() if isinstance(m, CUBALIFNode)]
    if not nodes:
        return
    nodes[0].c_decay = 0.0
    for parent in list(body.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.BatchNorm1d | nn.BatchNorm2d):
                setattr(parent, name, nn.Identity())
    synapses = [m for m in body.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    for m in synapses[:-1]:
        m.register_parameter("bias", None)


def _float32_input(module: nn.Module, args: tuple):
    """Under autocast a conv hands the neuron float16: spikingjelly then keeps v in float16 and
    runs its fused CUDA/Triton kernels only for float32 state (an explicit --backend even raises).
    The neuron runs in float32; the next conv casts its spikes (exactly 0/1) back down."""
    x = args[0]
    if isinstance(x, torch.Tensor) and x.dtype in (torch.float16, torch.bfloat16):
        return (x.float(), *args[1:])
    return None


def select_backend(name: str) -> None:
    """Pick spikingjelly's neuron kernels on CUDA (auto, torch, cuda or triton)."""
    _choice("backend", name, BACKENDS)
    name = "cuda" if name == "cupy" else name
    for env, ops in _BACKEND_OPS:
        os.environ[env] = name
        # The choice is read when spikingjelly's ops load; if they already have, update it there.
        try:
            selection = importlib.import_module(ops)._selection
        except (ImportError, AttributeError):  # pragma: no cover - layout of another spikingjelly version
            continue
        selection._requested = name
        selection._selections.clear()
