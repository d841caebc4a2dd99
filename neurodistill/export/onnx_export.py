"""`--target onnx`: the ANN teacher as it is, the SNN unrolled over T with LIF as elementwise ops.

spikingjelly's neurons run custom autograd functions and (on CUDA) native kernels, which the
ONNX exporters cannot trace. For export we therefore rebuild the spiking model as a single-step
network whose neurons are plain torch arithmetic that reproduces spikingjelly's forward
exactly (the same operations in the same order as its CPU kernel), and call it once per time
step in Python, so the traced graph is the network repeated T times with the membrane state
carried from one copy to the next. Weights are shared parameters, so they are stored once.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from ..errors import CheckpointError, ConfigError, NeurodistillError, UnsupportedLayerError
from ..io.output import atomic_write
from ..models.checkpoint import checkpoint_meta, load_checkpoint, model_from_checkpoint

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17
EXAMPLE_BATCH = 2  # any size > 1 works; the batch axis is exported as dynamic


class ElementwiseNeuron(nn.Module):
    """One step of a spikingjelly `LIFNode`/`IFNode` forward in plain torch ops (inference only).

    The membrane potential lives on the module between calls, so calling it T times after
    `reset()` unrolls the dynamics; there is no surrogate gradient, export needs none.

    Shape:
        Input `(B, *)`, output spikes `(B, *)` in {0, 1}, same dtype.
    """

    def __init__(self, tau: float | None, decay_input: bool, v_threshold: float, v_reset: float | None) -> None:
        super().__init__()
        self.tau = tau  # None: IF neuron (no leak)
        self.decay_input = decay_input
        self.v_threshold = float(v_threshold)
        self.v_reset = v_reset  # None: soft reset (subtract the threshold)
        self.v: torch.Tensor | None = None

    @classmethod
    def from_spikingjelly(cls, node: nn.Module) -> ElementwiseNeuron:
        from spikingjelly.activation_based.neuron import LIFNode

        if isinstance(node, LIFNode):
            return cls(float(node.tau), bool(node.decay_input), node.v_threshold, node.v_reset)
        return cls(None, False, node.v_threshold, node.v_reset)

    def reset(self) -> None:
        self.v = None

    def extra_repr(self) -> str:
        return f"tau={self.tau}, decay_input={self.decay_input}, v_threshold={self.v_threshold}, v_reset={self.v_reset}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # spikingjelly starts from v_reset, or from 0 with a soft reset.
        rest = 0.0 if self.v_reset is None else self.v_reset
        v = torch.full_like(x, rest) if self.v is None else self.v
        h = self._charge(x, v, rest)
        spike = (h >= self.v_threshold).to(x.dtype)
        if self.v_reset is None:
            self.v = h - spike * self.v_threshold
        else:
            self.v = spike * self.v_reset + (1.0 - spike) * h
        return spike

    def _charge(self, x: torch.Tensor, v: torch.Tensor, rest: float) -> torch.Tensor:
        # Same expression trees as spikingjelly's kernels, so spikes match bit for bit.
        if self.tau is None:
            return v + x
        if self.decay_input:
            return v + (x - (v - rest)) / self.tau
        return v - (v - rest) / self.tau + x


class UnrolledSNN(nn.Module):
    """A spiking network run step by step for a fixed T: the form that exports to ONNX.

    Shape:
        Input `(T, B, C, H, W)`, output logits `(T, B, K)`.
    """

    def __init__(self, step_net: nn.Module, timesteps: int) -> None:
        super().__init__()
        self.step_net = step_net
        self.timesteps = timesteps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for m in self.step_net.modules():
            if isinstance(m, ElementwiseNeuron):
                m.reset()
        # A Python loop over a fixed T: tracing records T copies of the network.
        return torch.stack([self.step_net(x[t]) for t in range(self.timesteps)])


def unroll_snn(model: nn.Module, timesteps: int) -> UnrolledSNN:
    """A CPU copy of a multi-step spikingjelly model, in eval mode, unrolled over `timesteps`.

    Raises UnsupportedLayerError (naming the module) for anything that cannot run one step
    at a time: neurons other than LIFNode/IFNode, other stateful layers, multi-step containers.

    Shape:
        Input `(T, B, C, H, W)`, output `(T, B, K)` as `model` gives.
    """
    from spikingjelly.activation_based import functional

    net = copy.deepcopy(model).cpu().eval()
    _swap_neurons(net)
    try:
        functional.set_step_mode(net, "s")
    except ValueError as e:  # a layer that only runs multi-step
        raise UnsupportedLayerError(f"ONNX export: cannot run the model one time step at a time ({e})") from None
    # Net.forward resets spikingjelly state each call; its body is the per-step graph.
    step_net = net.body if hasattr(net, "body") and getattr(net, "spiking", False) else net
    return UnrolledSNN(step_net, timesteps)


def _swap_neurons(net: nn.Module) -> None:
    from spikingjelly.activation_based import base, layer
    from spikingjelly.activation_based.neuron import IFNode, LIFNode

    for name, module in list(net.named_modules()):
        kind = type(module)
        if kind in (LIFNode, IFNode):
            if getattr(module, "_neuron_precision", None) is not None:
                raise UnsupportedLayerError(
                    f"ONNX export: neuron {name!r} ({kind.__name__}) uses reduced-precision state; only fp32 neurons export"
                )
            _set_submodule(net, name, ElementwiseNeuron.from_spikingjelly(module))
        elif isinstance(module, base.MultiStepModule) or (
            isinstance(module, base.MemoryModule) and not isinstance(module, layer.Dropout)
        ):
            # Dropout is the identity in eval mode; any other state or multi-step-only layer has no
            # per-step equivalent here.
            raise UnsupportedLayerError(
                f"ONNX export: module {name!r} of type {kind.__module__}.{kind.__name__} cannot be unrolled; "
                "supported neurons: spikingjelly LIFNode, IFNode"
            )


def _set_submodule(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, new)


def export_onnx(
    model: nn.Module,
    path: Path,
    input_shape: tuple[int, ...],
    timesteps: int | None,
    opset: int = DEFAULT_OPSET,
) -> dict[str, Any]:
    """Write one model as ONNX at `path` (atomically) and check it with `onnx.checker`.

    An ANN (`model.spiking` false) is exported as it is; a spiking model is unrolled over
    `timesteps` (see `unroll_snn`). The batch axis is dynamic; T is fixed.

    Shape:
        `input_shape` is one sample, `(C, H, W)`.
        ANN: input `x (B, C, H, W)`, output `logits (B, K)`.
        SNN: input `x (T, B, C, H, W)`, output `logits (T, B, K)`.
    """
    path = Path(path)
    spiking = bool(getattr(model, "spiking", False))
    # Tracing only needs shapes; a private generator leaves the caller's RNG stream alone.
    gen = torch.Generator().manual_seed(0)
    if spiking:
        _check_timesteps(timesteps)
        net: nn.Module = unroll_snn(model, int(timesteps))
        example = torch.randn(int(timesteps), EXAMPLE_BATCH, *input_shape, generator=gen)
        batch_axis = 1
    else:
        net = copy.deepcopy(model).cpu().eval()
        example = torch.randn(EXAMPLE_BATCH, *input_shape, generator=gen)
        batch_axis = 0
        timesteps = None

    def write(tmp: str) -> None:
        _torch_export(net, example, tmp, opset, batch_axis)
        onnx.checker.check_model(tmp, full_check=True)

    atomic_write(path, write)
    info = {"path": str(path), "opset": opset, "spiking": spiking, "timesteps": timesteps, **_io_signature(path)}
    # debug: inside a bundle `path` is in the staging directory, renamed when the bundle is complete
    log.debug("wrote %s (%s)", path, f"SNN unrolled over T={timesteps}" if spiking else "ANN")
    return info


def _check_timesteps(timesteps: int | None) -> None:
    if isinstance(timesteps, bool) or not isinstance(timesteps, int) or timesteps < 1:
        raise ConfigError(f"ONNX export of a spiking model needs timesteps >= 1 (an integer), got {timesteps!r}")


def _torch_export(net: nn.Module, example: torch.Tensor, dest: str, opset: int, batch_axis: int) -> None:
    # The legacy TorchScript exporter (dynamo=False): it traces the unrolled Python loop as
    # plain ops, honours opset 17 directly, and takes well under a second where the
    # torch.export-based exporter takes seconds and up-converts to opset 18.
    with torch.no_grad(), warnings.catch_warnings(), _unsupported_op_as_user_error():
        warnings.simplefilter("ignore", DeprecationWarning)  # legacy exporter's deprecation notice
        torch.onnx.export(
            net,
            (example,),
            dest,
            input_names=["x"],
            output_names=["logits"],
            opset_version=opset,
            dynamic_axes={"x": {batch_axis: "batch"}, "logits": {batch_axis: "batch"}},
            do_constant_folding=True,
            dynamo=False,
        )


@contextlib.contextmanager
def _unsupported_op_as_user_error() -> Iterator[None]:
    # An operator with no ONNX mapping at this opset is a property of the model, not a bug here.
    try:
        yield
    except torch.onnx.errors.UnsupportedOperatorError as e:
        first = (str(e).splitlines() or [""])[0][:200]
        raise UnsupportedLayerError(f"ONNX export: {first}") from None


def _io_signature(path: Path) -> dict[str, list[dict[str, Any]]]:
    graph = onnx.load(str(path), load_external_data=False).graph

    def describe(values) -> list[dict[str, Any]]:
        return [
            {"name": v.name, "shape": [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]}
            for v in values
        ]

    return {"inputs": describe(graph.input), "outputs": describe(graph.output)}


def verify_onnx(path: Path, torch_model: nn.Module, example: torch.Tensor, atol: float = 1e-4) -> float:
    """Max abs difference between onnxruntime (CPU) and `torch_model` on `example`.

    `torch_model` is the original model (a spiking one in multi-step mode, with its own
    neurons), so for an SNN this checks the unrolling as well as the export. Logs a warning
    above `atol`; the caller decides what a difference means.

    Shape:
        `example`: ANN `(B, C, H, W)`, SNN `(T, B, C, H, W)`; outputs compared as `(B, K)` or `(T, B, K)`.
    """
    import onnxruntime as ort

    reference = copy.deepcopy(torch_model).cpu().eval()
    with torch.no_grad():
        expected = reference(example.cpu()).numpy()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # small models; do not compete with training on a small machine
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    (got,) = session.run(["logits"], {"x": example.cpu().numpy().astype(np.float32)})
    if got.shape != expected.shape:
        raise ValueError(f"ONNX output shape {got.shape} differs from torch {expected.shape} for {path}")
    diff = float(np.abs(got - expected).max()) if got.size else 0.0
    if diff > atol:
        log.warning("%s: onnxruntime differs from torch by %.3g (> %.0e)", path, diff, atol)
    return diff


def export_onnx_bundle(ckpt_path: Path, out_dir: Path, timesteps: int | None, verify: bool = True) -> dict[str, Any]:
    """Export a checkpoint (`snn.onnx` or `ann.onnx`) and its distillation teacher (`teacher.onnx`).

    Both checkpoints are read before anything is written, and files this call wrote are
    removed if a later step fails, so `out_dir` never holds half a bundle. A teacher named in
    the checkpoint's config but not found (or not an ANN) is skipped with a warning.

    Shape:
        `snn.onnx`: `x (T, B, C, H, W)` -> `logits (T, B, K)`; `ann.onnx`/`teacher.onnx`: `x (B, C, H, W)` -> `logits (B, K)`.
    """
    ckpt_path, out_dir = Path(ckpt_path), Path(out_dir)
    ckpt = _load(ckpt_path)
    model = model_from_checkpoint(ckpt, ckpt_path)
    if timesteps is not None:
        _check_timesteps(timesteps)
    meta = checkpoint_meta(ckpt, str(ckpt_path), timesteps)
    spiking, T = meta.spiking, meta.timesteps
    if not spiking and timesteps is not None:
        log.info("%s holds an ANN; --timesteps %s is ignored", ckpt_path, timesteps)
    teacher, teacher_entry, warn = _find_teacher(ckpt, ckpt_path)

    jobs = [("snn" if spiking else "ann", model, meta.input_shape, T)]
    if teacher is not None:
        tckpt, tmodel, tpath = teacher
        jobs.append(("teacher", tmodel, checkpoint_meta(tckpt, str(tpath)).input_shape, None))

    created_dir = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    models: dict[str, Any] = {}
    try:
        for role, net, shape, steps in jobs:
            dest = out_dir / f"{role}.onnx"
            info = export_onnx(net, dest, shape, steps)
            written.append(dest)
            if verify:
                info["max_abs_diff"] = _verify_random(dest, net, shape, steps)
            models[role] = {**info, "path": dest.name}  # relative: the bundle directory moves
    except BaseException:
        for p in written:
            p.unlink(missing_ok=True)
        if created_dir and not any(out_dir.iterdir()):
            out_dir.rmdir()
        raise
    if teacher is not None:
        teacher_entry["status"] = "exported"
    return {
        "checkpoint": str(ckpt_path),
        "model": ckpt["model"]["name"],
        "spiking": spiking,
        "timesteps": T,
        "opset": DEFAULT_OPSET,
        "models": models,
        "teacher": teacher_entry,
        "warnings": warn,
    }


def _load(path: Path) -> dict[str, Any]:
    try:
        return load_checkpoint(path)
    except NeurodistillError:  # load_checkpoint's own verdict (a refused pickle global included) stands
        raise
    except Exception as e:
        # torch's weights-only unpickler raises KeyError/IndexError/... on arbitrary bytes,
        # which load_checkpoint does not list; any failure to read the file is the file's fault.
        reason = (str(e).splitlines() or [""])[0][:160] or type(e).__name__
        raise CheckpointError(f"checkpoint {str(path)!r} is damaged or truncated ({type(e).__name__}: {reason}); re-create it") from None


def _find_teacher(ckpt: dict[str, Any], ckpt_path: Path):
    """(teacher checkpoint, model, path) or None, the manifest entry, and warnings."""
    named = (ckpt.get("config") or {}).get("teacher")
    if not named:
        return None, {"path": None, "status": "none"}, []
    path = _resolve_teacher(Path(named), ckpt_path)
    entry: dict[str, Any] = {"path": str(path)}
    if not path.is_file():
        msg = f"teacher checkpoint {named!r} named in {str(ckpt_path)!r} does not exist; teacher.onnx not written"
        log.warning(msg)
        return None, {**entry, "status": "missing"}, [msg]
    tckpt = _load(path)
    if tckpt["model"].get("spiking"):
        msg = f"teacher checkpoint {str(path)!r} holds a spiking model, not an ANN; teacher.onnx not written"
        log.warning(msg)
        return None, {**entry, "status": "not_ann"}, [msg]
    return (tckpt, model_from_checkpoint(tckpt, path), path), {**entry, "status": "pending"}, []


def _resolve_teacher(named: Path, ckpt_path: Path) -> Path:
    # The config keeps the path as typed at training time; if the run directory moved since,
    # a relative path may still hold next to the student checkpoint.
    if named.is_absolute() or named.is_file():
        return named
    beside = ckpt_path.parent / named
    return beside if beside.is_file() else named


def _verify_random(path: Path, model: nn.Module, input_shape: tuple[int, ...], timesteps: int | None) -> float:
    gen = torch.Generator().manual_seed(0)
    lead = (timesteps, EXAMPLE_BATCH) if timesteps else (EXAMPLE_BATCH,)
    example = torch.randn(*lead, *input_shape, generator=gen)
    return verify_onnx(path, model, example)
