"""What the trainer does for `--deploy loihi2`: set up the deployment, evaluate it in fixed point,
checkpoint it, and report each layer's quantization error.

The encoding population's scale depends on calibration currents: at the start and after every
epoch it is export's own choice on `qat.calib` training samples (the ones `export --calib`
draws, same order) with the current weights, so the checkpoint's scales are the ones export
computes for the saved weights; export of a QAT checkpoint uses the stored ones regardless.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError, ConfigError
from .config import TARGETS, QatConfig, check_deploy_name  # noqa: F401 - their home is qat.config
from .forward import Deployment, calibrate_encoding

log = logging.getLogger(__name__)


def check_deploy(deploy: str | None, spiking: bool, frames: int | None, model_name: str) -> None:
    if deploy is None:
        return
    if not spiking:
        raise ConfigError(f"--deploy {deploy} trains for Loihi 2's fixed point, which runs spiking models only; "
                          f"{model_name} is an ANN")
    if frames:
        raise ConfigError(f"--deploy {deploy}: event (DVS) inputs are not supported by the loihi2 target yet (its "
                          "encoding layer assumes direct-encoded static images)")


def load_init(path: str, model: nn.Module, model_name: str) -> None:
    """Start from a checkpoint's weights (`--init`); the same model, or a CheckpointError."""
    from ..models.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)
    if ckpt["model"]["name"] != model_name:
        raise CheckpointError(f"--init {path!r} holds model {ckpt['model']['name']!r}, not {model_name!r}")
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        first = str(e).splitlines()[1 if len(str(e).splitlines()) > 1 else 0].strip()[:200]
        raise CheckpointError(f"--init {path!r}: its weights do not fit {model_name!r} ({first})") from None


def calibration_inputs(cfg: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The training samples export calibrates on (`export --calib N`: same split, order, no augmentation)."""
    from ..data.samples import dataset_samples

    return dataset_samples(cfg.dataset, cfg.data_dir, asdict(cfg.data), cfg.qat.calib, "train")


def setup(cfg: Any, model: nn.Module, input_shape: tuple[int, ...], entry: dict | None = None) -> Deployment:
    """The deployment of `model`: from a checkpoint's `qat` entry when resuming, else calibrated now."""
    x, y = calibration_inputs(cfg)
    if entry is not None:
        if entry.get("weight_bits") != cfg.qat.weight_bits:
            raise CheckpointError(f"--resume: the run trained {entry.get('weight_bits')}-bit weights, not "
                                  f"{cfg.qat.weight_bits}")
        dep = Deployment.for_model(model, input_shape, cfg.qat.weight_bits, x, entry["encoding_scale"])
        dep.before = entry.get("before")
    else:
        dep = Deployment.for_model(model, input_shape, cfg.qat.weight_bits, x)
        dep.before = weight_report(dep, model)
    dep.calib_x, dep.calib_y = x, y
    dep.learn_bn_stats = not cfg.init  # from the start there are no float statistics to keep
    return dep


def calibration_accuracy(dep: Deployment, model: nn.Module, timesteps: int) -> float:
    """The deployed accuracy on the calibration samples: export's manifest `accuracy_quantized`."""
    from .deploy import fxp_accuracy

    return fxp_accuracy(dep, model, dep.calib_x, dep.calib_y, timesteps)["acc"]


def recalibrate(dep: Deployment, model: nn.Module) -> None:
    """Export's encoding scale for the current weights (done between epochs, never inside one)."""
    dep.encoding_scale = calibrate_encoding(model, dep.plan.input_shape, dep.weight_bits, dep.calib_x)


def checkpoint_entry(dep: Deployment, model: nn.Module) -> dict:
    return {**dep.state(model), "before": dep.before, "after": weight_report(dep, model)}


@torch.no_grad()
def evaluate_fxp(dep: Deployment, model: nn.Module, loader, timesteps: int, device, d) -> dict[str, float]:
    """Accuracy of the deployed network in `run_fxp` over a (sharded) loader, summed over processes."""
    from .. import distributed
    from ..core.fxp import run_fxp
    from ..core.loihi2 import encoding_bias, encoding_current
    from .deploy import deploy_graph

    graph = deploy_graph(dep, model, timesteps)
    sums = torch.zeros(2, dtype=torch.float64)
    for x, y in loader:
        bias, _ = encoding_bias(graph, encoding_current(graph, x.numpy()))
        v = run_fxp(graph, torch.as_tensor(bias, device=device), timesteps, record=False)["v_readout"]
        sums[0] += (v.argmax(-1).cpu() == y).sum().item()
        sums[1] += len(y)
    sums = distributed.reduce_sum(d, sums)
    return {"acc": sums[0].item() / max(sums[1].item(), 1.0), "samples": int(sums[1].item())}


@torch.no_grad()
def weight_report(dep: Deployment, model: nn.Module) -> list[dict]:
    """Per on-chip population: its scale, the fraction of weights clipped to the grid and the
    relative RMS error of the quantized weights `||Q/s - W|| / ||W||` (rounding and clipping).

    The scales are export's rule on these weights, so at the start of QAT this is post-training
    quantization's error.
    """
    from ..core.quantize import weight_grid
    from .plan import fold_weight

    modules = dict(model.named_modules())
    dev = next(model.parameters()).device
    step, lo, hi = weight_grid(dep.weight_bits)
    scales = dep.scales(model)
    rows = []
    for p in dep.plan.populations:
        terms = [dep.plan.terms[n] for n in p.terms if not dep.plan.terms[n].host]
        if not terms:
            continue
        ws = [fold_weight(t, modules, dev) for t in terms]
        s = scales[p.name]
        w = torch.cat([x.flatten() for t, x in zip(terms, ws, strict=True) if t.kind != "identity"])
        if not w.numel():
            continue
        r = torch.round(w * s / step) * step
        q = r.clamp(lo, hi)
        rows.append({"name": p.name, "scale": s, "weights": int(w.numel()),
                     "clipped": float(((r < lo) | (r > hi)).double().mean()),
                     "error": float(torch.linalg.vector_norm(q / s - w) / max(float(torch.linalg.vector_norm(w)), 1e-300))})
    return rows
