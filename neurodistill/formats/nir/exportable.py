"""Which torch/spikingjelly models the float NIR export can map, and BatchNorm folded into a copy.

Tracing stops at "units" (known layers, spikingjelly modules, leaf modules) so an unsupported
module is reported by its path, not by the functions inside it.
"""

from __future__ import annotations

import copy
import operator

import numpy as np
import torch
from torch import nn

from ...errors import UnsupportedLayerError


def spikingjelly_parts():
    """spikingjelly's modules, imported late (importing it costs about a second)."""
    from spikingjelly.activation_based import base, functional, layer, neuron

    return base, functional, layer, neuron


# ----------------------------------------------------------------------------- support table


def module_types() -> dict[str, tuple[type, ...]]:
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
        "cuba": (neuron.CUBALIFNode,),
    }


def supported_modules() -> list[str]:
    """Names of the module classes `to_nir_graph` accepts (for error messages and docs)."""
    names = {t.__name__ for ts in module_types().values() for t in ts}
    return sorted(names)


def role_of(m: nn.Module) -> str | None:
    return next((role for role, ts in module_types().items() if type(m) in ts), None)


def _is_unit(m: nn.Module) -> bool:
    """A module the export treats as one operation (never looks inside): a known layer, any
    spikingjelly neuron or layer (they hold a surrogate child), or a module without children.
    A Sequential, even an empty one (an identity shortcut), is always looked into."""
    base, _, _, _ = spikingjelly_parts()
    if type(m) is nn.Sequential:
        return False
    return (
        role_of(m) is not None
        or isinstance(m, base.MemoryModule | base.StepModule)
        or next(m.children(), None) is None
    )


def units(model: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """(path, module) of every unit, in registration order, without descending into units."""
    out = []
    for name, child in model.named_children():
        path = f"{prefix}.{name}" if prefix else name
        if _is_unit(child):
            out.append((path, child))
        else:
            out.extend(units(child, path))
    return out


class _UnitTracer(torch.fx.Tracer):
    """torch.fx tracing that stops at units, so unsupported ones show up as modules, not as
    the functions inside them."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return _is_unit(m)


# ----------------------------------------------------------------------------- checks


def _unit_problem(m: nn.Module, accept_reset_approximation: bool) -> str | None:
    """Why one unit cannot be exported, or None."""
    role = role_of(m)
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
    if role in ("lif", "if", "cuba") and m.v_reset is None and not accept_reset_approximation:
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
        elif node.op == "call_module" and role_of(gm.get_submodule(node.target)) == "bn":
            if _bn_source(gm, node) is None:
                problems.append(f"{node.target} (BatchNorm not directly after a Conv2d/Linear used only by it)")
    return problems


def _bn_source(gm: torch.fx.GraphModule, bn_node: torch.fx.Node) -> torch.fx.Node | None:
    """The Conv/Linear call a BatchNorm call can be folded into, or None."""
    src = bn_node.args[0] if bn_node.args else None
    if not isinstance(src, torch.fx.Node) or src.op != "call_module" or len(src.users) != 1:
        return None
    return src if role_of(gm.get_submodule(src.target)) in ("conv", "linear") else None


def trace(model: nn.Module) -> torch.fx.GraphModule:
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
    found = units(model)
    problems = [
        f"{path} ({type(m).__name__}: {why})"
        for path, m in found
        if (why := _unit_problem(m, accept_reset_approximation)) is not None
    ]
    try:
        gm = trace(model)
        problems += _graph_problems(gm)
    except UnsupportedLayerError as e:  # report it with the module problems, not instead of them
        problems.append(str(e))
    if not any(role_of(m) in ("lif", "if", "cuba") for _, m in found):
        problems.append("no spiking neurons (LIFNode/IFNode/CUBALIFNode): float NIR export is for spiking models")
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
    from ...core.fold import fold_bn as fold_arrays

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


def fold_and_strip(work: nn.Module) -> None:
    """In place: fold every BatchNorm into its Conv/Linear and replace BatchNorm, Identity and
    Dropout by an empty Sequential, which tracing passes straight through (no NIR node)."""
    gm = trace(work)
    for node in gm.graph.nodes:
        if node.op != "call_module":
            continue
        role = role_of(gm.get_submodule(node.target))
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
    fold_and_strip(work)
    return work
