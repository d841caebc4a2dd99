"""The training loop: ANN teachers and spiking students, BPTT or rate-based backprop, one process or torchrun.

One function, `train(cfg)`, does everything; the CLI only parses options and calls it. Every
epoch ends with an evaluation and an atomic `last.pt`, so a run killed at any moment resumes
from its last finished epoch and ends with the same weights as an uninterrupted run.

What a batch's loss is belongs to the method: `distill.build_step` gives a `MethodStep`
(`step(model, x, y) -> (parts, z)`), which may own auxiliary trainable modules (tssd's weak
classifier, esd's branches) and decides how the gradients are formed (`--backprop rate`:
none/kd's `RateLogitStep` and `EsdStep` run rate-based backprop's two passes). The loop trains
the model and those modules together and checkpoints them apart (`state_dict` and `method`),
so export still builds the plain model.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import random
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, RandomSampler, Subset
from torch.utils.data.distributed import DistributedSampler

from .. import distributed
from ..config import TrainConfig
from ..data import DatasetInfo, load_dataset
from ..devices import resolve_device
from ..distill import Trainee, build_step, check_backprop, needs_teacher
from ..errors import CheckpointError, ConfigError, MethodError
from ..io.files import inside, kind_of
from ..io.output import check_out, remove_own, write_marker
from ..models import create_model, get_spec, select_backend
from ..progress import progress as progress_bar
from ..qat import training as qat
from .checkpoint import (
    atomic_write,
    load_checkpoint,
    model_from_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from .evaluate import step_correct

log = logging.getLogger(__name__)
LOSS_PARTS = ("loss", "task", "distill", "reg", "ce", "kl", "entropy")


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
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=False)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def build_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, steps: int):
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps))
    return torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0, total_iters=0)


def peak_memory(device: torch.device) -> tuple[int, str]:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "cuda_max_memory_allocated"
    # Linux reports ru_maxrss in KiB: the whole process's peak resident memory.
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024, "process_max_rss"


class Inputs:
    """Direct encoding: a static image is repeated T times; event frames come time-first.

    Shape:
        static batch `(B, C, H, W)` -> student `(T, B, C, H, W)`, teacher `(B, C, H, W)`;
        event batch `(B, T, C, H, W)` -> student `(T, B, C, H, W)`, teacher the time-mean.
    """

    def __init__(self, info: DatasetInfo, timesteps: int, spiking: bool) -> None:
        self.event = info.frames is not None
        self.timesteps = info.frames if self.event else (timesteps if spiking else 1)
        self.spiking = spiking

    def student(self, x: torch.Tensor, timesteps: int | None = None) -> torch.Tensor:
        """The network input, at `timesteps` steps (default: T). Event frames are held for
        `timesteps / frames` steps each when more steps are asked for (a whole multiple)."""
        if not self.spiking:
            return x.mean(1) if self.event else x
        T = timesteps or self.timesteps
        if self.event:
            frames = x.transpose(0, 1)
            return (frames if T == self.timesteps else frames.repeat_interleave(T // self.timesteps, 0)).contiguous()
        return x.unsqueeze(0).repeat(T, *([1] * x.dim()))

    def teacher(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(1) if self.event else x


def _loader(ds, cfg: TrainConfig, d: distributed.Dist, train: bool, epoch: int = 0) -> DataLoader:
    if not train:
        # Shard the test set without padding so reduced accuracies count each sample once.
        ds = Subset(ds, range(d.rank, len(ds), d.world)) if d.enabled else ds
        return DataLoader(ds, batch_size=cfg.batch_size, shuffle=False, num_workers=cfg.workers)
    if d.enabled:
        sampler = DistributedSampler(ds, num_replicas=d.world, rank=d.rank, shuffle=True, seed=cfg.seed, drop_last=True)
        sampler.set_epoch(epoch)
    else:
        # A generator seeded per epoch makes the order independent of how the run got here
        # (uninterrupted or resumed).
        sampler = RandomSampler(ds, generator=torch.Generator().manual_seed(cfg.seed * 100_003 + epoch))
    return DataLoader(ds, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.workers, drop_last=False)


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, inputs: Inputs, device, d: distributed.Dist) -> dict[str, Any]:
    model.eval()
    T = inputs.timesteps if inputs.spiking else 1
    sums = torch.zeros(2 + 2 * T, dtype=torch.float64)  # loss, n, alone[T], mean[T]
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        out = model(inputs.student(x))
        out = out if inputs.spiking else out.unsqueeze(0)
        alone, mean = step_correct(out.float(), y)
        sums[0] += torch.nn.functional.cross_entropy(out.float().mean(0), y, reduction="sum").item()
        sums[1] += len(y)
        sums[2 : 2 + T] += alone.double().cpu()
        sums[2 + T :] += mean.double().cpu()
    sums = distributed.reduce_sum(d, sums)
    n = max(sums[1].item(), 1.0)
    alone, mean = (sums[2 : 2 + T] / n).tolist(), (sums[2 + T :] / n).tolist()
    return {
        "loss": sums[0].item() / n,
        "acc": mean[-1],
        "per_timestep": [{"t": t + 1, "alone": a, "running_mean": m} for t, (a, m) in enumerate(zip(alone, mean, strict=True))],
    }


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    atomic_write(path, lambda tmp: Path(tmp).write_text(buf.getvalue()))


def write_json(path: Path, obj: Any) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=2) + "\n"))


TRAIN_FILES = ("last.pt", "best.pt", "config.yaml", "metrics.csv", "summary.json")  # what train writes


def check_out_dir(out: Path, resume: bool, overwrite: bool) -> Path:
    """The run directory after the output rule (neurodistill.io.output), checked with no side
    effect: --resume needs its last.pt; a new run needs a missing or empty directory, or --overwrite."""
    if resume:
        kind = kind_of(out)
        if kind not in ("missing", "a directory"):
            raise ConfigError(f"--out {str(out)!r} is {kind}, not a run directory")
        last = inside(out, "last.pt", "--resume: run file")
        if not last.is_file():
            raise CheckpointError(f"--resume: there is no {str(last)!r} to resume from; run without --resume first")
        return out.resolve() if out.is_symlink() else out
    if (out / "last.pt").exists() and not overwrite:
        raise ConfigError(
            f"--out {str(out)!r} already holds a run (last.pt); pass --resume to continue it, "
            "--overwrite to replace it, or choose another --out"
        )
    return check_out(out, overwrite, "the run")


def create_out_dir(out: Path, resume: bool, overwrite: bool) -> None:
    """Make the run directory, once everything the run needs has loaded: with --overwrite the
    files an earlier run wrote there are removed first (a user's other files stay)."""
    if not resume:
        check_out(out, overwrite, "the run")
        if out.is_dir():
            remove_own(out, TRAIN_FILES)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(".*.tmp"):
        stale.unlink()  # left by a process killed while writing; the real file is intact
    if not resume:
        write_marker(out, "train", list(TRAIN_FILES))


def train(cfg: TrainConfig, *, resume: bool = False, overwrite: bool = False, progress: bool = False) -> dict[str, Any]:
    """Train `cfg.model` on `cfg.dataset` with `cfg.method`; write the run directory; return the summary."""
    with_teacher = needs_teacher(cfg.method)
    spec = get_spec(cfg.model)
    check_backprop(cfg.method, cfg.backprop, spec.spiking, cfg.model)
    if with_teacher and not cfg.teacher:
        raise MethodError(f"method {cfg.method!r} needs --teacher CKPT (an ANN trained with 'neurodistill train --model ann_...')")
    if cfg.teacher and not with_teacher:
        raise MethodError(f"a teacher is given (teacher = {cfg.teacher!r}, from --teacher or the config) but method "
                          f"{cfg.method!r} does not use one; use kd or tser, or leave the teacher out")
    out = Path(cfg.out)
    device = resolve_device(cfg.device)
    d = distributed.setup(device.type)
    if not d.main:
        # Under torchrun only rank 0 reports progress; the others still say what goes wrong.
        logging.getLogger("neurodistill").setLevel(logging.WARNING)
    if d.enabled and device.type == "cuda":
        device = torch.device("cuda", d.local_rank)
        torch.cuda.set_device(device)
    out = check_out_dir(out, resume, overwrite)
    try:
        return _train(cfg, spec, out, device, d, resume, overwrite, progress)
    finally:
        distributed.teardown(d)


def _train(cfg, spec, out: Path, device, d, resume: bool, overwrite: bool, progress: bool) -> dict[str, Any]:
    seed_everything(cfg.seed)
    select_backend(cfg.backend)
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
    meta = model_meta(cfg.model, info, cfg)
    model = create_model(cfg.model, info.num_classes, info.input_shape[0], cfg.neuron if spec.spiking else None).to(device)
    qat.check_deploy(cfg.deploy, spec.spiking, info.frames, cfg.model)
    if cfg.init and not resume:
        qat.load_init(cfg.init, model, cfg.model)
    teacher = load_teacher(cfg.teacher, info, device) if cfg.teacher else None
    inputs = Inputs(info, cfg.timesteps, spec.spiking)
    if info.frames and spec.spiking and cfg.timesteps != info.frames:
        log.info("event data: using its %d frames per sample as the time steps (timesteps=%d ignored)", info.frames, cfg.timesteps)

    step = build_step(cfg, model, inputs, tuple(info.input_shape), info.num_classes, teacher)

    batches = math.ceil(len(train_ds) / (cfg.batch_size * d.world))
    if cfg.limit_train_batches:
        batches = min(batches, cfg.limit_train_batches)
    trainee = Trainee(model, step)  # the model and the method's auxiliary modules, trained together
    optimizer = build_optimizer(trainee, cfg)
    scheduler = build_scheduler(optimizer, cfg, batches * cfg.epochs)
    use_amp = cfg.amp and device.type == "cuda"
    step.use_amp = use_amp
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    start_epoch, history, best, train_seconds = 0, [], {"acc": -1.0, "epoch": 0}, 0.0
    qat_entry = None
    if resume:
        ckpt = _resume(inside(out, "last.pt", "--resume: run file"), cfg, model, step, optimizer, scheduler, scaler)
        start_epoch, history, best, train_seconds = ckpt["epoch"], ckpt["history"], ckpt["best"], ckpt["train_seconds"]
        qat_entry = ckpt.get("qat")
        log.info("resuming %s at epoch %d of %d", out / "last.pt", start_epoch + 1, cfg.epochs)
    # --deploy: the training forward is the exported fixed-point network (neurodistill/qat)
    dep = qat.setup(cfg, model, tuple(info.input_shape), qat_entry) if cfg.deploy else None

    if d.main:  # everything the run needs has loaded: only now is anything written
        create_out_dir(out, resume, overwrite)
        atomic_write(out / "config.yaml", lambda tmp: Path(tmp).write_text(_yaml(_run_config(cfg))))
    distributed.barrier(d)

    net: nn.Module = trainee  # net(x, y): the method's step; net(x): the plain model (evaluation)
    if d.enabled:
        net = nn.parallel.DistributedDataParallel(trainee, device_ids=[device.index] if device.type == "cuda" else None)
    test_loader = _loader(test_ds, cfg, d, train=False)
    val_loader = _loader(val_ds, cfg, d, train=False) if val_ds is not None else None
    selection = ({"split": "validation", "samples": len(val_ds), "fraction": cfg.val_split, "of": "the training split"}
                 if val_ds is not None else
                 {"split": "test", "samples": len(test_ds), "note": "--val-split 0: best.pt chosen on the test split"})
    writer = _tensorboard(out) if cfg.tensorboard and d.main else None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    warned_negative = False

    def payload(epoch: int, test: dict) -> dict:
        p = {
            "model": meta, "state_dict": model.state_dict(), "method": step.checkpoint_entry(cfg.method),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "rng": rng_state(),
            "epoch": epoch, "history": history, "best": best, "train_seconds": train_seconds,
            "test": test, "config": _run_config(cfg), "start": start,
            "dataset": {"name": info.name, "num_classes": info.num_classes,
                        "input_shape": list(info.input_shape), "frames": info.frames},
        }
        if dep:
            p["qat"] = qat.checkpoint_entry(dep, model)
        return p

    start = ckpt.get("start") if resume else None
    if cfg.init and not resume:
        # A fine-tune's starting point competes for best.pt (as epoch 0, winning ties): on the
        # selection split best.pt is never worse than the --init model, deployed (with --deploy,
        # that is post-training quantization of it) or float.
        s_test = _evaluate(net, model, dep, test_loader, inputs, device, d)
        s_val = _evaluate(net, model, dep, val_loader, inputs, device, d) if val_loader is not None else None
        chosen = s_val if s_val is not None else s_test
        best = {"acc": chosen["acc"], "epoch": 0, "test_acc": s_test["acc"]}
        start = {"init": cfg.init, "test_acc": s_test["acc"], "val_acc": s_val["acc"] if s_val else None}
        if dep:
            start["test_acc_float"] = s_test["acc_float"]
        log.info("start (--init): %s accuracy %.4f, test_acc %.4f", selection["split"], chosen["acc"], s_test["acc"])
        if d.main:
            save_checkpoint(out / "best.pt", payload(0, s_test))

    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        net.train()
        parts_sum: dict[str, float] = {}  # loss parts x samples; the method decides which parts beyond LOSS_PARTS
        correct = seen = 0
        loader = _loader(train_ds, cfg, d, train=True, epoch=epoch)
        bar = progress_bar(loader, batches, f"epoch {epoch + 1}/{cfg.epochs}", progress and d.main)
        # Training time per batch (TSER's Table 4 column): the optimisation steps alone, data loading
        # included, evaluation and checkpointing excluded. Each step calls .item(), which waits for
        # the device, so wall time here is the device's time too.
        t_steps, n_batches = time.perf_counter(), 0
        for i, (x, y) in enumerate(bar):
            if cfg.limit_train_batches and i >= cfg.limit_train_batches:
                break
            n_batches += 1
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with dep.active(model) if dep else _nothing():
                parts, z = net(x, y)
            if parts["loss"].item() < 0 and not warned_negative:
                log.warning("total loss is negative (%.4f): the entropy weight lam=%g is too large (TSER says avoid this)",
                            parts["loss"].item(), cfg.loss.lam)
                warned_negative = True
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(parts["loss"]).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            with torch.no_grad():
                for k, v in parts.items():
                    parts_sum[k] = parts_sum.get(k, 0.0) + v.item() * len(y)
                correct += (z.mean(0).argmax(-1) == y).sum().item()
                seen += len(y)
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{parts['loss'].item():.3f}")
        step_seconds = time.perf_counter() - t_steps
        names = [*LOSS_PARTS, *sorted(set(parts_sum) - set(LOSS_PARTS))]
        sums = torch.tensor([parts_sum.get(k, 0.0) for k in names] + [correct, seen], dtype=torch.float64)
        sums = distributed.reduce_sum(d, sums)
        test = _evaluate(net, model, dep, test_loader, inputs, device, d)
        val = _evaluate(net, model, dep, val_loader, inputs, device, d) if val_loader is not None else None
        train_seconds += time.perf_counter() - t0
        n = max(sums[-1].item(), 1.0)
        row = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"]}
        row |= {f"train_{k}": sums[j].item() / n for j, k in enumerate(names)}
        row |= {"train_acc": sums[-2].item() / n, "test_loss": test["loss"], "test_acc": test["acc"]}
        row |= {f"test_acc_t{p['t']}": p["alone"] for p in test["per_timestep"]}
        if dep:
            row |= {"test_acc_float": test["acc_float"], "test_acc_qat_forward": test["acc_qat_forward"]}
        if val is not None:
            row["val_acc"] = val["acc"]
        row["seconds"] = train_seconds
        row["train_batches"], row["train_step_seconds"] = n_batches, step_seconds
        history.append(row)
        chosen = val if val is not None else test  # model selection never looks at test unless asked to
        is_best = chosen["acc"] > best["acc"]
        if is_best:
            best = {"acc": chosen["acc"], "epoch": epoch + 1, "test_acc": test["acc"]}
        log.info("epoch %d/%d  loss %.4f  train_acc %.4f  test_acc %.4f  (%.1fs)", epoch + 1, cfg.epochs,
                 row["train_loss"], row["train_acc"], test["acc"], train_seconds)
        if d.main:
            saved = payload(epoch + 1, test)
            save_checkpoint(out / "last.pt", saved)
            if is_best:
                save_checkpoint(out / "best.pt", saved)
            _write_csv(out / "metrics.csv", history)
            if writer is not None:
                for k, v in row.items():
                    if k != "epoch":
                        writer.add_scalar(k, v, epoch + 1)
        distributed.barrier(d)

    if writer is not None:
        writer.close()
    final = _evaluate(net, model, dep, test_loader, inputs, device, d) if not history or start_epoch == cfg.epochs else test
    peak, peak_kind = peak_memory(device)
    summary = {
        "dataset": cfg.dataset, "model": cfg.model, "method": cfg.method, "backprop": cfg.backprop,
        "timesteps": inputs.timesteps if spec.spiking else 1, "epochs": cfg.epochs, "seed": cfg.seed,
        "test_acc": final["acc"], "test_acc_per_timestep": final["per_timestep"],
        # best.pt: chosen on `selection`; its test accuracy was measured at its epoch, on its weights
        "best_test_acc": best.get("test_acc", best["acc"]), "best_epoch": best["epoch"],
        "best_selection_acc": best["acc"], "selection": selection, "start": start,
        "val_acc": history[-1].get("val_acc") if history else None,
        "train_seconds": train_seconds, **_per_batch(history, cfg.batch_size),
        "peak_memory_bytes": peak, "peak_memory_kind": peak_kind, "device": str(device), "world_size": d.world, "teacher": cfg.teacher, "method_info": step.info(),
        "checkpoint": str(out / "last.pt"), "best_checkpoint": str(out / "best.pt"),
    }
    if dep:
        # test_acc is the deployed network's (run_fxp); calibration_acc is what export's manifest reports
        summary["deploy"] = {"target": cfg.deploy, "weight_bits": dep.weight_bits, "test_acc_float": final["acc_float"],
                             "test_acc_qat_forward": final["acc_qat_forward"],
                             "calibration_acc": qat.calibration_accuracy(dep, model, inputs.timesteps),
                             "calibration_samples": cfg.qat.calib, "scales": dep.scales(model),
                             "encoding_scale": dep.encoding_scale, "init": cfg.init}
    if d.main:
        write_json(out / "summary.json", summary)
    step.close()
    return summary


def _evaluate(net: nn.Module, model: nn.Module, dep, loader: DataLoader, inputs: Inputs, device, d) -> dict[str, Any]:
    """The test evaluation; with --deploy, `acc` is the deployed network's accuracy in `run_fxp`
    (what `simulate --backend fxp` of the exported bundle gives), beside the float model's and
    the QAT forward's (the same predictions as run_fxp, up to float rounding of the encoding)."""
    if dep is None:
        return evaluate(net, loader, inputs, device, d)
    qat.recalibrate(dep, model)  # export's encoding scale for these weights; the next epoch trains with it
    flt = evaluate(net, loader, inputs, device, d)
    with dep.active(model):
        test = evaluate(net, loader, inputs, device, d)
    fxp = qat.evaluate_fxp(dep, model, loader, inputs.timesteps, device, d)
    return {**test, "acc": fxp["acc"], "acc_float": flt["acc"], "acc_qat_forward": test["acc"]}


@contextlib.contextmanager
def _nothing():
    yield


def _resume(last: Path, cfg, model, step, optimizer, scheduler, scaler) -> dict[str, Any]:
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
        scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):  # a run saved without AMP (CPU, amp: false) has an empty scaler state
            scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"])
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError, AttributeError) as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        reason = (lines[1] if len(lines) > 1 else lines[0] if lines else type(e).__name__)[:200]
        raise CheckpointError(f"{where} does not fit this run ({reason})") from None
    return ckpt


def _run_config(cfg) -> dict[str, Any]:
    """The resolved config as config.yaml records it: paths absolute, so --resume works from anywhere."""
    d = cfg.to_dict()
    for key in ("teacher", "init", "data_dir", "out"):
        if d.get(key):
            d[key] = str(Path(d[key]).absolute())
    return d


def _per_batch(history: list[dict], batch_size: int) -> dict[str, Any]:
    """Mean seconds per training batch over the run's epochs (resumed epochs included: the rows
    travel in the checkpoint). Runs from before this was recorded have no such rows."""
    rows = [r for r in history if r.get("train_batches")]
    batches = sum(r["train_batches"] for r in rows)
    return {"train_seconds_per_batch": sum(r["train_step_seconds"] for r in rows) / batches if batches else None,
            "train_batches": batches, "batch_size": batch_size}


def _yaml(d: dict) -> str:
    import yaml

    return yaml.safe_dump(d, sort_keys=False)


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("tensorboard = true needs the tensorboard package: pip install 'neurodistill[tensorboard]'") from None
    return SummaryWriter(log_dir=str(out / "tb"))
