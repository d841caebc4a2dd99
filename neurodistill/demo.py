"""`neurodistill demo`: the whole chain on the built-in digits dataset, no download.

Stages that exist today: an ANN teacher, a spiking student (T=4) distilled with TSER, and the
student exported to a Loihi 2 bundle. Each stage writes its usual files into a subdirectory of
the demo directory.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from .config import resolve
from .export.bundle import export_loihi2
from .train import train

log = logging.getLogger(__name__)

# Settings measured on digits (docs/results.md): both nets reach >= 99% in ~15 s on 2 CPU cores.
TEACHER = {"model": "ann_digits", "dataset": "digits", "epochs": 30, "lr": 0.1}
EXPORT_CALIB = 512
STUDENT = {"model": "snn_digits", "dataset": "digits", "method": "tser", "timesteps": 4, "epochs": 30, "lr": 0.1}


def run_demo(out: Path, seed: int = 0, progress: bool = False) -> str:
    if out.exists():
        shutil.rmtree(out)  # the demo directory is ours: start clean every time
    log.info("[1/3] teacher: %s on digits", TEACHER["model"])
    teacher = train(resolve({**TEACHER, "seed": seed, "out": str(out / "teacher")}, {}), progress=progress)
    log.info("[2/3] student: %s, %s, T=%d", STUDENT["model"], STUDENT["method"], STUDENT["timesteps"])
    student_cfg = {**STUDENT, "seed": seed, "teacher": str(out / "teacher" / "best.pt"), "out": str(out / "student")}
    student = train(resolve(student_cfg, {}), progress=progress)
    log.info("[3/3] export: student to a Loihi 2 bundle")
    bundle = export_loihi2(out / "student" / "best.pt", out / "loihi2", calib=EXPORT_CALIB)
    return (
        f"teacher {TEACHER['model']}: test accuracy {teacher['test_acc']:.4f}\n"
        f"student {STUDENT['model']} (tser, T={STUDENT['timesteps']}): test accuracy {student['test_acc']:.4f}\n"
        f"loihi2 bundle: accuracy float {bundle['accuracy_float']:.4f}, quantized {bundle['accuracy_quantized']:.4f} "
        f"on {bundle['calibration_samples']} training samples; {bundle['resources']['cores']} cores\n"
        f"files in {out}/teacher, {out}/student and {out}/loihi2 (neurodistill inspect {out}/loihi2)"
    )
