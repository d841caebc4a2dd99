"""A run's GPU settings: cuDNN's autotuner, channels-last memory, torch.compile, mixed precision's type,
the fused optimizer step.

Each applies on CUDA only. On a CPU a run given any of them is the run without them, bit for bit
(tests/test_train_gpu.py), as `amp` always was: a recipe written for a GPU trains unchanged on a CPU.
What cannot work on this machine (bf16 on a GPU without it, torch.compile without its code
generator) is a one-line ConfigError before anything is written.
"""

from __future__ import annotations

import logging
import sys

import torch
from torch import nn

from ..config import TrainConfig
from ..errors import ConfigError

log = logging.getLogger(__name__)
AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def check(cfg: TrainConfig, device: torch.device) -> None:
    """ConfigError for a GPU setting this machine cannot run; nothing on a CPU, which ignores them."""
    if device.type != "cuda":
        return
    if cfg.amp and cfg.amp_dtype == "bf16" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"amp_dtype = 'bf16' needs a GPU with bfloat16 (compute capability 8.0 or newer; "
                          f"{torch.cuda.get_device_name(device)} has not); use --amp-dtype fp16")
    reason = compile_unavailable() if cfg.compile else None
    if reason:
        raise ConfigError(f"compile = true: torch.compile cannot run here ({reason}); leave --compile out")


def compile_unavailable() -> str | None:
    """Why torch.compile cannot compile for CUDA here, or None when it can."""
    import torch._dynamo

    if not torch._dynamo.is_dynamo_supported():
        return f"torch {torch.__version__} has no torch.compile for Python {sys.version_info.major}.{sys.version_info.minor}"
    from torch.utils._triton import has_triton

    if not has_triton():
        return "its CUDA code generator needs Triton, which is not installed or finds no usable GPU"
    return None


def configure(device: torch.device) -> None:
    if device.type == "cuda":
        # A run's convolution shapes never change, so timing cuDNN's algorithms once per shape
        # pays back within a few steps.
        torch.backends.cudnn.benchmark = True


def amp(cfg: TrainConfig, device: torch.device) -> tuple[bool, torch.dtype, bool]:
    """(autocast on, its type, gradient scaler on): bf16 has fp32's exponent range, so nothing to scale."""
    on = cfg.amp and device.type == "cuda"
    dtype = AMP_DTYPES[cfg.amp_dtype]
    return on, dtype, on and dtype == torch.float16


def memory_format(cfg: TrainConfig, device: torch.device) -> torch.memory_format:
    return torch.channels_last if cfg.channels_last and device.type == "cuda" else torch.preserve_format


def prepare(model: nn.Module, cfg: TrainConfig, device: torch.device) -> nn.Module:
    """The model in the run's memory format (channels-last changes only its 4-D weights)."""
    fmt = memory_format(cfg, device)
    return model if fmt == torch.preserve_format else model.to(memory_format=fmt)


def to_device(x: torch.Tensor, device: torch.device, fmt: torch.memory_format) -> torch.Tensor:
    """A batch on the device; images (4-D) in `fmt`. Event batches (5-D) keep their layout."""
    return x.to(device, non_blocking=True, memory_format=fmt if x.dim() == 4 else torch.preserve_format)


def compile_model(model: nn.Module, cfg: TrainConfig, device: torch.device) -> None:
    """torch.compile the model's forward in place (its state_dict keys stay those export reads)."""
    if not cfg.compile:
        return
    if device.type != "cuda":
        log.info("compile: CUDA only; this CPU run is eager, as without it")
        return
    import torch._dynamo

    # A graph the compiler cannot handle (e.g. a spikingjelly kernel it cannot trace) then runs
    # eagerly with a warning instead of ending a run that may have trained for hours.
    torch._dynamo.config.suppress_errors = True
    model.compile()


def fused(params: list[nn.Parameter]) -> dict[str, bool]:
    """The optimizer's `fused` option: on CUDA the fused step takes the fp16 gradient scaler's
    inf check on the device, where the unfused one reads it on the host every step."""
    return {"fused": True} if params and all(p.is_cuda for p in params) else {}
