"""The training loop: ANN teachers and spiking students, BPTT or rate-based backprop, one process or torchrun.

One function, `train(cfg)`, does everything; the CLI only parses options and calls it. Every
epoch (or every `--eval-every`/`--save-every` epochs, and the last) ends with an evaluation and
an atomic `last.pt`, so a run killed at any moment resumes from its last saved epoch and ends
with the same weights as an uninterrupted run.

What a batch's loss is belongs to the method: `distill.build_step` gives a `MethodStep`
(`step(model, x, y) -> (parts, z)`), which may own auxiliary trainable modules (tssd's weak
classifier, esd's branches) and decides how the gradients are formed (`--backprop rate`:
none/kd's `RateLogitStep` and `EsdStep` run rate-based backprop's two passes). The loop trains
the model and those modules together and checkpoints them apart (`state_dict` and `method`),
so export still builds the plain model.

The steps live beside it: `setup` builds the run, `epoch` trains one epoch, `evaluate` measures,
`state` holds the run and its checkpoints, `run_dir` and `summary` write the other files.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch

from .. import distributed
from ..config import TrainConfig
from ..devices import resolve_device
from ..distill import check_backprop, needs_teacher
from ..errors import MethodError
from ..models import get_spec
from . import gpu
from .checkpoint import (
    atomic_write,
    load_checkpoint,
    model_from_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from .epoch import LOSS_PARTS, epoch_row, train_epoch
from .evaluate import evaluate
from .inputs import Inputs
from .run_dir import TRAIN_FILES, check_out_dir, create_out_dir, write_csv, write_json
from .setup import (
    build_optimizer,
    build_scheduler,
    load_teacher,
    model_meta,
    param_groups,
    seed_everything,
    setup_run,
)
from .state import Run, payload
from .summary import peak_memory, summarize
from .tally import Clock

# Names callers import from here, where they lived before the loop was split into its steps.
__all__ = [
    "LOSS_PARTS", "TRAIN_FILES", "Inputs", "atomic_write", "build_optimizer", "build_scheduler", "check_out_dir",
    "create_out_dir", "evaluate", "load_checkpoint", "load_teacher", "model_from_checkpoint", "model_meta",
    "param_groups", "peak_memory", "rng_state", "save_checkpoint", "seed_everything", "set_rng_state", "train",
    "write_json",
]  # fmt: skip

log = logging.getLogger(__name__)


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
    gpu.check(cfg, device)
    gpu.configure(device)
    out = check_out_dir(out, resume, overwrite)
    try:
        return _train(cfg, spec, out, device, d, resume, overwrite, progress)
    finally:
        distributed.teardown(d)


def _train(cfg, spec, out: Path, device, d, resume: bool, overwrite: bool, progress: bool) -> dict[str, Any]:
    run = setup_run(cfg, spec, out, device, d, resume, overwrite)
    gpu.compile_model(run.model, cfg, device)
    if cfg.init and not resume:
        _start_from_init(run)
    clock = Clock(run.start_epoch * run.batches)
    for epoch in range(run.start_epoch, cfg.epochs):
        test = _epoch(run, epoch, progress, clock)
    if run.writer is not None:
        run.writer.close()
    final = run.evaluate(run.test_loader) if not run.history or run.start_epoch == cfg.epochs else test
    summary = summarize(run, final)
    if d.main:
        write_json(out / "summary.json", summary)
    run.step.close()
    run.train_ds.close()
    return summary


def _start_from_init(run: Run) -> None:
    """A fine-tune's starting point competes for best.pt (as epoch 0, winning ties): on the
    selection split best.pt is never worse than the --init model, deployed (with --deploy,
    that is post-training quantization of it) or float."""
    cfg = run.cfg
    s_test = run.evaluate(run.test_loader)
    s_val = run.evaluate(run.val_loader) if run.val_loader is not None else None
    chosen = s_val if s_val is not None else s_test
    run.best = {"acc": chosen["acc"], "epoch": 0, "test_acc": s_test["acc"]}
    run.start = {"init": cfg.init, "test_acc": s_test["acc"], "val_acc": s_val["acc"] if s_val else None}
    if run.dep:
        run.start["test_acc_float"] = s_test["acc_float"]
    log.info("start (--init): %s accuracy %.4f, test_acc %.4f", run.selection["split"], chosen["acc"], s_test["acc"])
    if run.d.main:
        save_checkpoint(run.out / "best.pt", payload(run, 0, s_test))


def _epoch(run: Run, epoch: int, progress: bool, clock: Clock) -> dict[str, Any] | None:
    """Train one epoch; evaluate (every --eval-every epochs and after the last), keep the best,
    checkpoint (last.pt every --save-every epochs and after the last); the test evaluation, if any."""
    cfg = run.cfg
    t0 = time.perf_counter()
    totals = train_epoch(run, epoch, progress, clock)
    last = epoch + 1 == cfg.epochs
    evaluated = last or (epoch + 1) % cfg.eval_every == 0
    test = run.evaluate(run.test_loader) if evaluated else None
    val = run.evaluate(run.val_loader) if evaluated and run.val_loader is not None else None
    run.train_seconds += time.perf_counter() - t0
    row = epoch_row(run, epoch, totals, test, val)
    run.history.append(row)
    is_best = False
    if test is not None:
        chosen = val if val is not None else test  # model selection never looks at test unless asked to
        is_best = chosen["acc"] > run.best["acc"]
        if is_best:
            run.best = {"acc": chosen["acc"], "epoch": epoch + 1, "test_acc": test["acc"]}
    log.info("epoch %d/%d  loss %.4f  train_acc %.4f%s  test_acc %s  (%.1fs)", epoch + 1, cfg.epochs, row["train_loss"],
             row["train_acc"], _top5(row, "train"), _acc(row["test_acc"]) + _top5(row, "test"), run.train_seconds)
    if run.d.main:
        _save(run, epoch + 1, test, row, is_best, last or (epoch + 1) % cfg.save_every == 0)
    distributed.barrier(run.d)
    return test


def _acc(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"


def _top5(row: dict[str, Any], split: str) -> str:
    key = f"{split}_acc_top5"
    return f"  {key} {_acc(row[key])}" if key in row else ""


def _save(run: Run, epoch: int, test: dict | None, row: dict[str, Any], is_best: bool, last: bool) -> None:
    """last.pt (with `last`), best.pt (when this epoch is the best), metrics.csv and TensorBoard's
    scalars (every epoch: a resume rewrites metrics.csv from last.pt's history)."""
    if last or is_best:
        saved = payload(run, epoch, test)
        if last:
            save_checkpoint(run.out / "last.pt", saved)
        if is_best:
            save_checkpoint(run.out / "best.pt", saved)
    write_csv(run.out / "metrics.csv", run.history)
    if run.writer is not None:
        for k, v in row.items():
            if k != "epoch" and v is not None:
                run.writer.add_scalar(k, v, epoch)
