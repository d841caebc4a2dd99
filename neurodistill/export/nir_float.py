"""Float NIR export: a trained spiking model as a `nir.NIRGraph` (the way back: `nir_import`).

The graph is the float network exactly as trained, with BatchNorm folded into the synapse
layer before it (NIR has no BatchNorm node). Everything a reader needs to re-run it is in
`graph.metadata`, because NIR itself carries no time step (docs/loihi2.md#nir-conventions).

Conventions (also written into every graph's metadata):

* Time. `dt` is explicit, default 1.0 meaning "one simulation step" (`time_unit = "step"`);
  any other dt is taken as seconds (`time_unit = "s"`), the unit most NIR readers assume
  (spikingjelly and snnTorch default to dt = 1e-4 s). Time constants scale with it.
* Integration: forward Euler with that dt, `v[t] = v[t-1] + dt/tau * (v_leak - v[t-1] + r*I[t])`,
  the convention of every PyTorch-family NIR exporter.
* spikingjelly `LIFNode(tau_sj, decay_input, v_threshold, v_reset)` -> `nir.LIF` with
  `tau = tau_sj * dt`, `r = 1 if decay_input else tau_sj`, `v_leak = v_reset`, `v_threshold`,
  `v_reset`, so that `dt/tau = 1/tau_sj` reproduces spikingjelly's update exactly.
  `IFNode` -> `nir.IF(r = 1/dt, v_threshold, v_reset)`.
* Spikes: spikingjelly fires when `v >= v_threshold`; NIR's nominal rule is `v > v_threshold`.
  The values are exported unchanged and the difference is recorded (`threshold_comparison`).
* Reset: NIR only knows "reset to v_reset". A soft reset (`v -= v_threshold`) is refused unless
  `accept_reset_approximation=True`, in which case it is written as a hard reset to 0 and the
  layers are listed in `metadata["reset_approximated"]`.
* Shapes exclude time and batch: the model runs on `[T, B, *input_shape]`, NIR shapes are
  `input_shape`-like, and `Flatten.start_dim` counts from the first non-batch axis.
* Readout: the final Linear becomes `Affine -> Output`: logits per step, which the model's user
  averages over time (`metadata["readout"]`).
* Residual adds become several edges into one node; a NIR node sums its inputs.
"""

from __future__ import annotations

import copy
import logging
import math
import operator
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nir
import numpy as np
import torch
from torch import nn

from .. import __version__
from ..errors import CheckpointError, ConfigError, ModelError, UnsupportedLayerError

log = logging.getLogger(__name__)

NIR_FILE = "network.nir"
READOUT_LOGITS = "affine logits per step"
LIF_CONVENTION = (
    "nir.LIF: tau = tau_sj*dt, r = 1 if decay_input else tau_sj, v_leak = v_reset, "
    "v_threshold, v_reset; nir.IF: r = 1/dt"
)
INTEGRATION = "forward Euler with dt: v[t] = v[t-1] + dt/tau*(v_leak - v[t-1] + r*I[t])"
THRESHOLD_RULE = "v >= v_threshold (spikingjelly); NIR nominal is v > v_threshold; values unchanged"
BN_RULE = "folded into the preceding Conv2d/Linear: W' = W*g/s, b' = beta + (b - mu)*g/s, s = sqrt(var + eps)"


def spikingjelly_parts():
    """spikingjelly's modules, imported late (importing it costs about a second)."""
    from spikingjelly.activation_based import base, functional, layer, neuron

    return base, functional, layer, neuron


# ----------------------------------------------------------------------------- support table


def _types() -> dict[str, tuple[type, ...]]:
    """Module classes the export maps, by role. Exact classes (a subclass may compute otherwise),
    and spikingjelly's multi-step wrappers only: plain torch conv, pooling and flatten layers do
    not accept the `[T, B, ...]` layout (nn.Linear does, it acts on the last axis)."""
    _, _, layer, neuron = spikingjelly_parts()
    return {
        "conv": (layer.Conv2d,),
        "linear": (nn.Linear, layer.Linear),
        "flatten": (layer.Flatten,),
        "avgpool": (layer.AvgPool2d,),
        "adaptive": (layer.AdaptiveAvgPool2d,),
        "bn": (layer.BatchNorm1d, layer.BatchNorm2d),
        "identity": (nn.Identity, nn.Dropout),
        "lif": (neuron.LIFNode,),
        "if": (neuron.IFNode,),
    }


def supported_modules() -> list[str]:
    """Names of the module classes `to_nir_graph` accepts (for error messages and docs)."""
    names = {t.__name__ for ts in _types().values() for t in ts}
    return sorted(names)


def _role(m: nn.Module) -> str | None:
    return next((role for role, ts in _types().items() if type(m) in ts), None)


def _is_unit(m: nn.Module) -> bool:
    """A module the export treats as one operation (never looks inside): a known layer, any
    spikingjelly neuron or layer (they hold a surrogate child), or a module without children.
    A Sequential, even an empty one (an identity shortcut), is always looked into."""
    base, _, _, _ = spikingjelly_parts()
    if type(m) is nn.Sequential:
        return False
    return (
        _role(m) is not None
        or isinstance(m, base.MemoryModule | base.StepModule)
        or next(m.children(), None) is None
    )


def _units(model: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """(path, module) of every unit, in registration order, without descending into units."""
    out = []
    for name, child in model.named_children():
        path = f"{prefix}.{name}" if prefix else name
        if _is_unit(child):
            out.append((path, child))
        else:
            out.extend(_units(child, path))
    return out


class _UnitTracer(torch.fx.Tracer):
    """torch.fx tracing that stops at units, so unsupported ones show up as modules, not as
    the functions inside them."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return _is_unit(m)


# ----------------------------------------------------------------------------- checks


def _unit_problem(m: nn.Module, accept_reset_approximation: bool) -> str | None:
    """Why one unit cannot be exported, or None."""
    role = _role(m)
    if role is None:
        return "not supported"
    if getattr(m, "step_mode", "m") != "m":
        return "single-step mode (the export expects multi-step models: input [T, B, ...])"
    if role == "conv" and (m.padding_mode != "zeros" or isinstance(m.padding, str)):
        return f"padding {m.padding!r} / padding_mode {m.padding_mode!r} (zero padding by numbers only)"
    if role == "avgpool" and (m.ceil_mode or m.divisor_override is not None or (np.any(m.padding) and not m.count_include_pad)):
        return "ceil_mode, divisor_override or padding without count_include_pad"
    if role == "bn" and (m.running_mean is None or m.running_var is None):
        return "BatchNorm without running statistics cannot be folded"
    if role in ("lif", "if") and m.v_reset is None and not accept_reset_approximation:
        return (
            "soft reset (v -= v_threshold) is not expressible in NIR; train with a hard reset "
            "(neuron.reset = hard) or pass accept_reset_approximation=True to export it as a hard reset to 0"
        )
    return None


def _graph_problems(gm: torch.fx.GraphModule) -> list[str]:
    """Operations between modules that NIR cannot hold (only sums are edges), and BatchNorms
    that have no single Conv/Linear right before them to fold into."""
    problems = []
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.target not in (operator.add, torch.add):
            problems.append(f"{node.name} (function {getattr(node.target, '__name__', node.target)})")
        elif node.op == "call_method" and node.target != "add":
            problems.append(f"{node.name} (tensor method {node.target})")
        elif node.op == "call_module" and _role(gm.get_submodule(node.target)) == "bn":
            if _bn_source(gm, node) is None:
                problems.append(f"{node.target} (BatchNorm not directly after a Conv2d/Linear used only by it)")
    return problems


def _bn_source(gm: torch.fx.GraphModule, bn_node: torch.fx.Node) -> torch.fx.Node | None:
    """The Conv/Linear call a BatchNorm call can be folded into, or None."""
    src = bn_node.args[0] if bn_node.args else None
    if not isinstance(src, torch.fx.Node) or src.op != "call_module" or len(src.users) != 1:
        return None
    return src if _role(gm.get_submodule(src.target)) in ("conv", "linear") else None


def _trace(model: nn.Module) -> torch.fx.GraphModule:
    try:
        graph = _UnitTracer().trace(model)
    except Exception as e:  # fx raises many kinds (TraceError, TypeError, ...) on dynamic code
        raise UnsupportedLayerError(
            f"cannot trace {type(model).__name__} for NIR export (torch.fx: {str(e).splitlines()[0][:200]}); "
            "the forward must be a static graph of modules and additions"
        ) from None
    return torch.fx.GraphModule(model, graph)


def check_exportable(model: nn.Module, accept_reset_approximation: bool = False) -> torch.fx.GraphModule:
    """Raise one UnsupportedLayerError listing every module and operation the float NIR export
    cannot map; return the traced model otherwise."""
    units = _units(model)
    problems = [
        f"{path} ({type(m).__name__}: {why})"
        for path, m in units
        if (why := _unit_problem(m, accept_reset_approximation)) is not None
    ]
    try:
        gm = _trace(model)
        problems += _graph_problems(gm)
    except UnsupportedLayerError as e:  # report it with the module problems, not instead of them
        problems.append(str(e))
    if not any(_role(m) in ("lif", "if") for _, m in units):
        problems.append("no spiking neurons (LIFNode/IFNode): float NIR export is for spiking models")
    if problems:
        raise UnsupportedLayerError(
            f"cannot export {getattr(model, 'model_name', type(model).__name__)} to NIR: "
            f"{'; '.join(problems)}. Supported modules: {', '.join(supported_modules())} "
            "(plus additions between them)"
        )
    return gm


# ----------------------------------------------------------------------------- folding


def fold_bn(weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """`bn(W x + b)` (eval mode) as `W' x + b'`, per output channel c:
    `W'[c] = W[c] * g_c / s_c`, `b'_c = beta_c + (b_c - mu_c) * g_c / s_c`, `s = sqrt(var + eps)`.

    Computed in float64 and returned in `weight`'s dtype, so the only rounding is the final one.
    A BatchNorm without affine parameters has g = 1, beta = 0.
    """
    from ..core.fold import fold_bn as fold_arrays

    n = weight.shape[0]
    b = np.zeros(n) if bias is None else bias.detach().double().cpu().numpy()
    gamma = bn.weight.detach().double().cpu().numpy() if bn.weight is not None else np.ones(n)
    beta = bn.bias.detach().double().cpu().numpy() if bn.bias is not None else np.zeros(n)
    w_new, b_new = fold_arrays(weight.detach().double().cpu().numpy(), b, gamma, beta,
                               bn.running_mean.detach().double().cpu().numpy(), bn.running_var.detach().double().cpu().numpy(),
                               bn.eps)
    return torch.from_numpy(w_new).to(weight.dtype), torch.from_numpy(b_new).to(weight.dtype)


def _set_submodule(root: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, module)


def _fold_and_strip(work: nn.Module) -> None:
    """In place: fold every BatchNorm into its Conv/Linear and replace BatchNorm, Identity and
    Dropout by an empty Sequential, which tracing passes straight through (no NIR node)."""
    gm = _trace(work)
    for node in gm.graph.nodes:
        if node.op != "call_module":
            continue
        role = _role(gm.get_submodule(node.target))
        if role == "bn":
            src = _bn_source(gm, node)
            syn, bn = work.get_submodule(src.target), work.get_submodule(node.target)
            w, b = fold_bn(syn.weight, syn.bias, bn)
            syn.weight = nn.Parameter(w, requires_grad=False)
            syn.bias = nn.Parameter(b, requires_grad=False)
        if role in ("bn", "identity"):
            _set_submodule(work, node.target, nn.Sequential())


def folded_copy(model: nn.Module) -> nn.Module:
    """A copy of `model` (eval mode, CPU) with every BatchNorm folded into the Conv/Linear before
    it: the float network that the NIR graph describes, module for module.

    It equals `model` up to float rounding of the folded parameters (about 1e-7 relative in
    float32), so a neuron sitting that close to its threshold can spike differently.
    """
    check_exportable(model, accept_reset_approximation=True)
    work = copy.deepcopy(model).cpu().eval()
    _fold_and_strip(work)
    return work


# ----------------------------------------------------------------------------- mapping


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


def as_pair(v) -> tuple[int, int]:
    """(h, w) from an int, a pair, or what nir.read gives back (numpy scalars and arrays)."""
    a = np.asarray(v).reshape(-1)
    return int(a[0]), int(a[-1])


class _Mapper:
    """torch module -> NIR node, given each module's per-sample input shape (without T and B)."""

    def __init__(self, shapes: dict[int, tuple[int, ...]], dt: float) -> None:
        self.shapes, self.dt = shapes, dt
        self.approximated: list[nn.Module] = []

    def module_map(self) -> dict[type, Callable[[nn.Module], nir.NIRNode]]:
        fns = {
            "conv": self.conv, "linear": self.linear, "flatten": self.flatten, "avgpool": self.avgpool,
            "adaptive": self.adaptive, "lif": self.lif, "if": self.if_,
        }
        return {t: fns[role] for role, ts in _types().items() if role in fns for t in ts}

    def shape(self, m: nn.Module) -> tuple[int, ...]:
        return self.shapes[id(m)]

    def conv(self, m: nn.Conv2d) -> nir.Conv2d:
        bias = _np(m.bias) if m.bias is not None else np.zeros(m.out_channels, dtype=_np(m.weight).dtype)
        return nir.Conv2d(
            input_shape=tuple(self.shape(m)[-2:]), weight=_np(m.weight), stride=as_pair(m.stride),
            padding=as_pair(m.padding), dilation=as_pair(m.dilation), groups=int(m.groups), bias=bias,
        )

    def linear(self, m: nn.Linear) -> nir.NIRNode:
        if m.bias is None:
            return nir.Linear(weight=_np(m.weight))
        return nir.Affine(weight=_np(m.weight), bias=_np(m.bias))

    def flatten(self, m: nn.Flatten) -> nir.Flatten:
        # A multi-step Flatten sees [T*B, ...] (time folded into batch); NIR counts dims
        # without the batch axis.
        shape = self.shape(m)
        ndim = len(shape) + 1
        start, end = m.start_dim % ndim, m.end_dim % ndim
        if start == 0:
            raise UnsupportedLayerError(f"Flatten({m.start_dim}, {m.end_dim}) flattens the batch axis; NIR cannot express it")
        return nir.Flatten(
            input_type={"input": np.array(shape)}, start_dim=start - 1, end_dim=-1 if end == ndim - 1 else end - 1
        )

    def avgpool(self, m: nn.AvgPool2d) -> nir.AvgPool2d:
        stride = m.stride if m.stride is not None else m.kernel_size
        return nir.AvgPool2d(
            kernel_size=np.array(as_pair(m.kernel_size)), stride=np.array(as_pair(stride)), padding=np.array(as_pair(m.padding))
        )

    def adaptive(self, m: nn.AdaptiveAvgPool2d) -> nir.AvgPool2d:
        # An adaptive pool is a plain average pool when the output size divides the input size.
        h, w = self.shape(m)[-2:]
        oh, ow = (h if s is None else s for s in _pair_or_none(m.output_size))
        if h % oh or w % ow:
            raise UnsupportedLayerError(
                f"AdaptiveAvgPool2d to {(oh, ow)} on a {h}x{w} input is not a plain average pool; NIR cannot express it"
            )
        k = np.array((h // oh, w // ow))
        return nir.AvgPool2d(kernel_size=k, stride=k.copy(), padding=np.array((0, 0)))

    def _reset(self, m: nn.Module) -> float:
        if m.v_reset is None:  # refused earlier unless the caller accepted the approximation
            self.approximated.append(m)
            return 0.0
        return float(m.v_reset)

    def lif(self, m: nn.Module) -> nir.LIF:
        # float64 keeps spikingjelly's Python-float parameters exact through the file.
        full = lambda v: np.full(self.shape(m), v, dtype=np.float64)  # noqa: E731
        tau, v_reset = float(m.tau), self._reset(m)
        return nir.LIF(
            tau=full(tau * self.dt), r=full(1.0 if m.decay_input else tau), v_leak=full(v_reset),
            v_threshold=full(float(m.v_threshold)), v_reset=full(v_reset),
        )

    def if_(self, m: nn.Module) -> nir.IF:
        full = lambda v: np.full(self.shape(m), v, dtype=np.float64)  # noqa: E731
        v_reset = self._reset(m)
        return nir.IF(r=full(1.0 / self.dt), v_threshold=full(float(m.v_threshold)), v_reset=full(v_reset))


def _pair_or_none(v) -> tuple[int | None, int | None]:
    return (v, v) if isinstance(v, int) or v is None else (v[0], v[1])


def _record_input_shapes(work: nn.Module, input_shape: tuple[int, ...]) -> dict[int, tuple[int, ...]]:
    """Run one zero sample (T = B = 1) and note every unit's input shape without T and B."""
    shapes: dict[int, tuple[int, ...]] = {}

    def hook(m, args):
        shapes[id(m)] = tuple(args[0].shape[2:])

    handles = [m.register_forward_pre_hook(hook) for _, m in _units(work)]
    try:
        with torch.no_grad():
            work(torch.zeros(1, 1, *input_shape))
    except RuntimeError as e:
        raise ModelError(
            f"the model does not accept inputs of shape {tuple(input_shape)} (C, H, W): {str(e).splitlines()[0][:200]}"
        ) from None
    finally:
        for h in handles:
            h.remove()
    return shapes


# ----------------------------------------------------------------------------- public API


def to_nir_graph(
    model: nn.Module,
    input_shape: tuple[int, ...],
    timesteps: int,
    dt: float = 1.0,
    accept_reset_approximation: bool = False,
) -> nir.NIRGraph:
    """The float NIR graph of a multi-step spikingjelly model.

    Args:
        model: runs `[T, B, *input_shape] -> [T, B, K]`; it is not modified (a copy is folded).
        input_shape: one sample's shape without time and batch, e.g. `(1, 8, 8)`.
        timesteps: T the model is meant to run for (recorded; NIR has no notion of it).
        dt: seconds per step, or 1.0 for "one step" (see the module docstring).
        accept_reset_approximation: export soft-reset neurons as hard reset to 0 instead of refusing.

    Raises:
        UnsupportedLayerError: listing every module or operation NIR cannot express.
    """
    if not (isinstance(dt, int | float) and math.isfinite(dt) and dt > 0):
        raise ConfigError(f"dt = {dt!r} is not allowed; it must be a finite number > 0 (1.0 means one step)")
    if int(timesteps) < 1:
        raise ConfigError(f"timesteps = {timesteps!r} is not allowed; it must be >= 1")
    import nirtorch

    check_exportable(model, accept_reset_approximation)
    work = copy.deepcopy(model).cpu().float().eval()
    _fold_and_strip(work)
    shapes = _record_input_shapes(work, tuple(input_shape))
    mapper = _Mapper(shapes, float(dt))
    # default_dict=None: nirtorch's defaults would override our map for nn.Linear.
    graph = nirtorch.torch_to_nir(work, mapper.module_map(), default_dict=None, type_check=True)
    graph.metadata = _metadata(model, work, graph, mapper, tuple(input_shape), int(timesteps), float(dt))
    log.info("float NIR graph: %d nodes, %d edges, dt=%g, T=%d", len(graph.nodes), len(graph.edges), dt, timesteps)
    return graph


def _readout(graph: nir.NIRGraph) -> str:
    outputs = set(graph.outputs)
    last = {type(graph.nodes[a]).__name__ for a, b in graph.edges if b in outputs}
    if last == {"Affine"} or last == {"Linear"}:
        return READOUT_LOGITS
    if last <= {"LIF", "IF"}:
        return "spikes per step"
    return f"{'/'.join(sorted(last))} per step"


def _metadata(model, work, graph, mapper: _Mapper, input_shape, timesteps: int, dt: float) -> dict[str, Any]:
    # Module path of every NIR node, so that a reader can match nodes to the trained model.
    names = {node.name: node.target for node in _trace(work).graph.nodes if node.op == "call_module"}
    module_path = {id(work.get_submodule(t)): t for t in names.values()}
    approximated = sorted(module_path[id(m)] for m in mapper.approximated)
    meta: dict[str, Any] = {
        "format": "neurodistill float NIR",
        "neurodistill_version": __version__,
        "nir_version": nir.version,
        "model": str(getattr(model, "model_name", type(model).__name__)),
        "dt": dt,
        "time_unit": "step" if dt == 1.0 else "s",
        "timesteps": timesteps,
        "input_shape": np.array(input_shape, dtype=np.int64),
        "input_layout": "[T, B, *input_shape]; NIR shapes exclude T and B",
        "integration": INTEGRATION,
        "lif_convention": LIF_CONVENTION,
        "threshold_comparison": THRESHOLD_RULE,
        "reset": "hard reset to v_reset",
        "batchnorm": BN_RULE,
        "readout": _readout(graph),
        "source_modules": {n: t for n, t in names.items() if n in graph.nodes},
    }
    if approximated:
        meta["reset"] = "soft reset approximated as hard reset to 0 in reset_approximated; others hard"
        meta["reset_approximated"] = ", ".join(approximated)
        log.warning("soft reset exported as hard reset to 0 in %s (accept_reset_approximation)", ", ".join(approximated))
    return meta


def write_nir(graph: nir.NIRGraph, path: str | Path) -> Path:
    """Write `graph` with `nir.write`, atomically (a reader never sees a partial file)."""
    from ..io.output import atomic_write

    path = Path(path)
    atomic_write(path, lambda tmp: nir.write(tmp, graph))
    return path


def export_nir_float(ckpt_path: Path, out_dir: Path, timesteps: int | None, dt: float = 1.0, *,
                     accept_reset_approximation: bool = False, consumer: str | None = None) -> dict[str, Any]:
    """Write `out_dir/network.nir` for a neurodistill spiking checkpoint; return what the manifest needs.

    `timesteps` None takes the checkpoint's (its event frame count, else its training T).
    `consumer` (a name in `nir_consumers`) rewrites the graph into that importer's conventions.
    """
    from .nir_consumers import DEFAULT, adapt_for, get

    consumer = consumer or DEFAULT
    get(consumer)  # an unknown name fails before the checkpoint is read
    from ..models.checkpoint import checkpoint_timesteps, load_checkpoint, model_from_checkpoint

    ckpt = load_checkpoint(ckpt_path)
    meta = ckpt["model"]
    if not meta.get("spiking"):
        raise CheckpointError(
            f"checkpoint {str(ckpt_path)!r} holds the ANN {meta.get('name')!r}; the float NIR export is for "
            "spiking models (train one with --model snn_...)"
        )
    dataset = ckpt.get("dataset") or {}
    if "input_shape" not in dataset:
        raise CheckpointError(f"checkpoint {str(ckpt_path)!r} has no dataset input_shape; re-create it with 'neurodistill train'")
    timesteps = checkpoint_timesteps(ckpt, str(ckpt_path), timesteps)
    model = model_from_checkpoint(ckpt, ckpt_path)
    graph = adapt_for(to_nir_graph(model, tuple(dataset["input_shape"]), int(timesteps), dt, accept_reset_approximation),
                      consumer)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = write_nir(graph, out_dir / NIR_FILE)
    return {
        "path": str(path), "nodes": len(graph.nodes), "edges": len(graph.edges), "dt": float(graph.metadata["dt"]),
        "consumer": consumer, "consumer_conventions": graph.metadata["consumer_conventions"],
        "timesteps": int(timesteps), "time_unit": graph.metadata["time_unit"], "readout": graph.metadata["readout"],
        "reset_approximated": graph.metadata.get("reset_approximated", ""),
    }
