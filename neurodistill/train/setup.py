"""Setting a run up: seeds, data, model, teacher, optimizer, schedule, the state it resumes from, its directory."""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import distributed
from ..config import TrainConfig
from ..data import DatasetInfo, load_dataset
from ..distill import Trainee, build_step
from ..errors import CheckpointError, ConfigError
from ..io.files import inside
from ..models import create_model, get_spec, select_backend
from ..qat import training as qat
from . import gpu
from .checkpoint import load_checkpoint, model_from_checkpoint
from .inputs import Inputs, data_loader
from .loaders import TrainSamples
from .run_dir import create_out_dir, open_tensorboard, write_config
from .schedule import Schedule
from .state import Run, restore

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """The one place seeds are set: the same seed on the CPU gives the same weights."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def model_meta(name: str, info: DatasetInfo, cfg: TrainConfig) -> dict[str, Any]:
    """What a checkpoint needs to rebuild the model without guessing (as nanoGPT does)."""
    spiking = get_spec(name).spiking
    return {
        "name": name,
        "num_classes": info.num_classes,
        "in_channels": info.input_shape[0],
        "spiking": spiking,
        "neuron": cfg.neuron.to_dict() if spiking else None,
        "readout": cfg.readout,
    }


def load_teacher(path: str, info: DatasetInfo, device: torch.device) -> nn.Module:
    """A frozen ANN teacher that fits this dataset, or a CheckpointError that says why not."""
    ckpt = load_checkpoint(path)
    meta = ckpt["model"]
    if meta.get("spiking"):
        raise CheckpointError(
            f"teacher checkpoint {path!r} holds the spiking model {meta['name']!r}; kd and tser need an ANN "
            "teacher (train one with --model ann_...)"
        )
    for key, want in (("num_classes", info.num_classes), ("in_channels", info.input_shape[0])):
        if meta.get(key) != want:
            raise CheckpointError(
                f"teacher checkpoint {path!r} has {key} = {meta.get(key)}, but dataset {info.name!r} needs {want}"
            )
    teacher = model_from_checkpoint(ckpt, path).to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on conv/linear weights only: never on BatchNorm parameters or biases."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    rest = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay)
    params = [p for g in groups for p in g["params"]]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=False, **gpu.fused(params))
    return torch.optim.AdamW(groups, lr=cfg.lr, **gpu.fused(params))


def build_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, batches: int) -> Schedule:
    """The learning rate over `cfg.epochs` epochs of `batches` steps (neurodistill/train/schedule.py)."""
    return Schedule(opt, cfg.schedule, cfg.epochs, batches)


def load_data(cfg: TrainConfig) -> tuple[Any, Any, Any, DatasetInfo]:
    """(train, validation or None, test, info); with val_split the validation samples come from the
    training split, without its augmentation."""
    train_ds, test_ds, info = load_dataset(cfg.dataset, cfg.data_dir, cfg.data)
    val_ds = None
    if cfg.val_split:
        from dataclasses import replace

        from ..data.split import split

        plain, _, _ = load_dataset(cfg.dataset, cfg.data_dir, replace(cfg.data, augment=False, autoaugment=False, cutout=0))
        train_ds, val_ds = split(train_ds, plain, cfg.val_split, cfg.seed)
        if len(train_ds) == 0 or len(val_ds) == 0:
            raise ConfigError(f"val_split = {cfg.val_split} leaves {len(train_ds)} training and {len(val_ds)} validation "
                              f"samples of {len(plain)}; choose a fraction that leaves both (e.g. 0.1), or 0")
    return train_ds, val_ds, test_ds, info


def setup_run(cfg: TrainConfig, spec, out: Path, device: torch.device, d: distributed.Dist,
              resume: bool, overwrite: bool) -> Run:
    """Everything a run needs, in the order that fixes its random numbers; the run directory is
    written only once all of it has loaded."""
    seed_everything(cfg.seed)
    select_backend(cfg.backend)
    train_ds, val_ds, test_ds, info = load_data(cfg)
    run = _build(cfg, spec, out, device, d, resume, train_ds, info)
    qat_entry = _resume(run) if resume else None
    # --deploy: the training forward is the exported fixed-point network (neurodistill/qat)
    run.dep = qat.setup(cfg, run.model, tuple(info.input_shape), qat_entry) if cfg.deploy else None
    if d.main:  # everything the run needs has loaded: only now is anything written
        create_out_dir(out, resume, overwrite)
        write_config(out, cfg)
    distributed.barrier(d)
    _attach(run, val_ds, test_ds)
    return run


def _build(cfg: TrainConfig, spec, out: Path, device: torch.device, d: distributed.Dist, resume: bool,
           train_ds, info: DatasetInfo) -> Run:
    """The model (with its --init weights), the teacher, the method's step, the optimizer and its schedule."""
    meta = model_meta(cfg.model, info, cfg)
    model = create_model(cfg.model, info.num_classes, info.input_shape[0], cfg.neuron if spec.spiking else None,
                         cfg.readout).to(device)
    model = gpu.prepare(model, cfg, device)
    qat.check_deploy(cfg.deploy, spec.spiking, info.frames, cfg.model)
    if cfg.init and not resume:
        qat.load_init(cfg.init, model, cfg.model)
    teacher = gpu.prepare(load_teacher(cfg.teacher, info, device), cfg, device) if cfg.teacher else None
    inputs = Inputs(info, cfg.timesteps, spec.spiking)
    if info.frames and spec.spiking and cfg.timesteps != info.frames:
        log.info("event data: using its %d frames per sample as the time steps (timesteps=%d ignored)", info.frames, cfg.timesteps)

    step = build_step(cfg, model, inputs, tuple(info.input_shape), info.num_classes, teacher)

    samples = TrainSamples(train_ds, cfg, d, device.type)
    batches = samples.batches()
    if cfg.limit_train_batches:
        batches = min(batches, cfg.limit_train_batches)
    trainee = Trainee(model, step)
    optimizer = build_optimizer(trainee, cfg)
    scheduler = build_scheduler(optimizer, cfg, batches)
    step.use_amp, step.amp_dtype, scaled = gpu.amp(cfg, device)
    scaler = torch.amp.GradScaler("cuda", enabled=scaled)
    return Run(cfg=cfg, out=out, device=device, d=d, info=info, meta=meta, model=model, step=step, inputs=inputs,
               trainee=trainee, optimizer=optimizer, scheduler=scheduler, scaler=scaler, train_ds=samples,
               batches=batches)


def _resume(run: Run) -> dict | None:
    """Load last.pt into the run (weights, optimizer, schedule, RNG, progress); its qat entry, if any."""
    cfg, out = run.cfg, run.out
    ckpt = restore(inside(out, "last.pt", "--resume: run file"), cfg, run.model, run.step, run.optimizer,
                   run.scheduler, run.scaler)
    run.start_epoch, run.history, run.best, run.train_seconds = ckpt["epoch"], ckpt["history"], ckpt["best"], ckpt["train_seconds"]
    if run.start_epoch > cfg.epochs:  # equal is allowed: no epoch runs, the run is evaluated again
        n = run.start_epoch
        raise ConfigError(f"--resume: {str(out / 'last.pt')!r} has trained {n} epoch{'s' * (n != 1)} already, more "
                          f"than --epochs {cfg.epochs}; pass --epochs {n} to evaluate it again or more to go on")
    log.info("resuming %s at epoch %d of %d", out / "last.pt", run.start_epoch + 1, cfg.epochs)
    run.start = ckpt.get("start")
    return ckpt.get("qat")


def _attach(run: Run, val_ds, test_ds) -> None:
    """What the epochs use besides the model: the wrapped network, evaluation loaders, TensorBoard."""
    cfg, d, device = run.cfg, run.d, run.device
    run.net = run.trainee
    if d.enabled:
        run.net = nn.parallel.DistributedDataParallel(run.trainee, device_ids=[device.index] if device.type == "cuda" else None)
    run.test_loader = data_loader(test_ds, cfg, d, train=False, device_type=device.type)
    run.val_loader = data_loader(val_ds, cfg, d, train=False, device_type=device.type) if val_ds is not None else None
    run.selection = ({"split": "validation", "samples": len(val_ds), "fraction": cfg.val_split, "of": "the training split"}
                     if val_ds is not None else
                     {"split": "test", "samples": len(test_ds), "note": "--val-split 0: best.pt chosen on the test split"})
    run.writer = open_tensorboard(run.out) if cfg.tensorboard and d.main else None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
