"""What a run carries from step to step (`Run`), what its checkpoints hold, and restoring one for --resume."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from .. import distributed
from ..config import TrainConfig
from ..data import DatasetInfo
from ..errors import CheckpointError
from ..qat import training as qat
from .checkpoint import load_checkpoint, rng_state, set_rng_state
from .evaluate import evaluate_run
from .inputs import Inputs
from .run_dir import run_config


@dataclass
class Run:
    """One training run: what `setup_run` built, and the progress the epochs make."""

    cfg: TrainConfig
    out: Path
    device: torch.device
    d: distributed.Dist
    info: DatasetInfo
    meta: dict[str, Any]  # what a checkpoint needs to rebuild the model
    model: nn.Module
    step: Any  # the method's MethodStep
    inputs: Inputs
    trainee: nn.Module  # the model and the method's auxiliary modules, trained together
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    train_ds: Any  # TrainSamples: the training split, its per-sample seeds and the run's one loader
    batches: int  # training batches per epoch
    dep: Any = None  # --deploy: the qat Deployment the training forward runs
    net: nn.Module | None = None  # net(x, y): the method's step; net(x): the plain model (evaluation)
    test_loader: DataLoader | None = None
    val_loader: DataLoader | None = None
    selection: dict[str, Any] = field(default_factory=dict)  # the split best.pt is chosen on
    writer: Any = None  # TensorBoard's SummaryWriter, on rank 0 with tensorboard = true
    start_epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)  # metrics.csv's rows
    best: dict[str, Any] = field(default_factory=lambda: {"acc": -1.0, "epoch": 0})
    train_seconds: float = 0.0
    start: dict[str, Any] | None = None  # the --init model's accuracies
    warned_negative: bool = False

    def evaluate(self, loader: DataLoader) -> dict[str, Any]:
        return evaluate_run(self.net, self.model, self.dep, loader, self.inputs, self.device, self.d)


def payload(run: Run, epoch: int, test: dict) -> dict:
    """A checkpoint's entries after `epoch` epochs, `test` the evaluation of its weights."""
    cfg, info = run.cfg, run.info
    p = {
        "model": run.meta, "state_dict": run.model.state_dict(), "method": run.step.checkpoint_entry(cfg.method),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(), "scaler": run.scaler.state_dict(), "rng": rng_state(),
        "epoch": epoch, "history": run.history, "best": run.best, "train_seconds": run.train_seconds,
        "test": test, "config": run_config(cfg), "start": run.start,
        "dataset": {"name": info.name, "num_classes": info.num_classes,
                    "input_shape": list(info.input_shape), "frames": info.frames},
    }
    if run.dep:
        p["qat"] = qat.checkpoint_entry(run.dep, run.model)
    return p


def restore(last: Path, cfg, model, step, optimizer, scheduler, scaler) -> dict[str, Any]:
    """Restore a run's state from its last.pt; anything that does not fit is one CheckpointError."""
    where = f"--resume: {str(last)!r}"
    ckpt = load_checkpoint(last)
    if ckpt["model"]["name"] != cfg.model:
        raise CheckpointError(f"{where} holds {ckpt['model']['name']!r}, not {cfg.model!r}")
    for key, kind in (("epoch", int), ("history", list), ("best", dict), ("train_seconds", int | float),
                      ("optimizer", dict), ("scheduler", dict), ("rng", dict)):
        if not isinstance(ckpt.get(key), kind) or isinstance(ckpt.get(key), bool):
            raise CheckpointError(f"{where}: entry {key!r} is missing or of the wrong type; the checkpoint is damaged")
    try:
        model.load_state_dict(ckpt["state_dict"])
        step.load_checkpoint_entry(ckpt.get("method"), where)
        optimizer.load_state_dict(ckpt["optimizer"])
        # The checkpoint's scheduler entry (torch's CosineAnnealingLR state in older runs) is not read:
        # the schedule follows from the epochs finished and the --epochs in force.
        scheduler.resume(ckpt["epoch"])
        if ckpt.get("scaler"):  # a run saved without AMP (CPU, amp: false) has an empty scaler state
            scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"])
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError, AttributeError) as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        reason = (lines[1] if len(lines) > 1 else lines[0] if lines else type(e).__name__)[:200]
        raise CheckpointError(f"{where} does not fit this run ({reason})") from None
    return ckpt
