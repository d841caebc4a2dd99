"""`neurodistill demo`: the whole chain on the built-in digits dataset, no download.

Stages that exist today: an ANN teacher, then a spiking student (T=4) distilled with TSER.
Each stage writes its usual files into a subdirectory of the demo directory.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from .config import resolve
from .train import train

log = logging.getLogger(__name__)

# Settings measured on digits (docs/results.md): both nets reach >= 99% in ~15 s on 2 CPU cores.
TEACHER = {"model": "ann_digits", "dataset": "digits", "epochs": 30, "lr": 0.1}
STUDENT = {"model": "snn_digits", "dataset": "digits", "method": "tser", "timesteps": 4, "epochs": 30, "lr": 0.1}


def run_demo(out: Path, seed: int = 0, progress: bool = False) -> str:
    if out.exists():
        shutil.rmtree(out)  # the demo directory is ours: start clean every time
    log.info("[1/2] teacher: %s on digits", TEACHER["model"])
    teacher = train(resolve({**TEACHER, "seed": seed, "out": str(out / "teacher")}, {}), progress=progress)
    log.info("[2/2] student: %s, %s, T=%d", STUDENT["model"], STUDENT["method"], STUDENT["timesteps"])
    student_cfg = {**STUDENT, "seed": seed, "teacher": str(out / "teacher" / "best.pt"), "out": str(out / "student")}
    student = train(resolve(student_cfg, {}), progress=progress)
    return (
        f"teacher {TEACHER['model']}: test accuracy {teacher['test_acc']:.4f}\n"
        f"student {STUDENT['model']} (tser, T={STUDENT['timesteps']}): test accuracy {student['test_acc']:.4f}\n"
        f"files in {out}/teacher and {out}/student"
    )
