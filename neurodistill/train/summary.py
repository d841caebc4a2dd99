"""What a finished run reports (summary.json): accuracies, the best epoch, time, memory, the deployment."""

from __future__ import annotations

import resource
from typing import Any

import torch

from ..qat import training as qat
from .state import Run


def peak_memory(device: torch.device) -> tuple[int, str]:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "cuda_max_memory_allocated"
    # Linux reports ru_maxrss in KiB: the whole process's peak resident memory.
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024, "process_max_rss"


def summarize(run: Run, final: dict[str, Any]) -> dict[str, Any]:
    """summary.json's content; `final` is the test evaluation of the last weights."""
    cfg, inputs, best, history, dep = run.cfg, run.inputs, run.best, run.history, run.dep
    peak, peak_kind = peak_memory(run.device)
    summary = {
        "dataset": cfg.dataset, "model": cfg.model, "method": cfg.method, "backprop": cfg.backprop,
        "timesteps": inputs.timesteps if inputs.spiking else 1, "epochs": cfg.epochs, "seed": cfg.seed,
        "test_acc": final["acc"], "test_acc_per_timestep": final["per_timestep"],
        # best.pt: chosen on `selection`; its test accuracy was measured at its epoch, on its weights
        "best_test_acc": best.get("test_acc", best["acc"]), "best_epoch": best["epoch"],
        "best_selection_acc": best["acc"], "selection": run.selection, "start": run.start,
        "val_acc": history[-1].get("val_acc") if history else None,
        "train_seconds": run.train_seconds, **per_batch(history, cfg.batch_size),
        "peak_memory_bytes": peak, "peak_memory_kind": peak_kind, "device": str(run.device), "world_size": run.d.world,
        "teacher": cfg.teacher, "method_info": run.step.info(),
        "checkpoint": str(run.out / "last.pt"), "best_checkpoint": str(run.out / "best.pt"),
    }
    if "acc_top5" in final:  # >= 100 classes
        summary["test_acc_top5"] = final["acc_top5"]
    if dep:
        # test_acc is the deployed network's (run_fxp); calibration_acc is what export's manifest reports
        summary["deploy"] = {"target": cfg.deploy, "weight_bits": dep.weight_bits, "test_acc_float": final["acc_float"],
                             "test_acc_qat_forward": final["acc_qat_forward"],
                             "calibration_acc": qat.calibration_accuracy(dep, run.model, inputs.timesteps),
                             "calibration_samples": cfg.qat.calib, "scales": dep.scales(run.model),
                             "encoding_scale": dep.encoding_scale, "init": cfg.init}
    return summary


def per_batch(history: list[dict], batch_size: int) -> dict[str, Any]:
    """Mean seconds per training batch over the run's epochs (resumed epochs included: the rows
    travel in the checkpoint). Runs from before this was recorded have no such rows."""
    rows = [r for r in history if r.get("train_batches")]
    batches = sum(r["train_batches"] for r in rows)
    return {"train_seconds_per_batch": sum(r["train_step_seconds"] for r in rows) / batches if batches else None,
            "train_batches": batches, "batch_size": batch_size}
