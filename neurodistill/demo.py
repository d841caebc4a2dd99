"""`neurodistill demo`: the whole chain on the built-in digits dataset, no download.

The whole chain: an ANN teacher, a spiking student (T=4) distilled with TSER, the student
exported to a Loihi 2 bundle, the bundle replayed in Loihi 2 fixed point on the test set
(spikes, synaptic events, ACs and MACs per layer), and a report priced for several hardware
profiles (JSON, CSV, Markdown, LaTeX, figures). Each stage writes its usual files into a subdirectory of
the demo directory.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .config import resolve
from .export.bundle import export_loihi2
from .io.output import owned_dir
from .report.report import build, read_simulation, write
from .sim.run import simulate
from .train import train

log = logging.getLogger(__name__)

# Settings measured on digits (docs/results.md): both nets reach >= 99% in ~15 s on 2 CPU cores.
TEACHER = {"model": "ann_digits", "dataset": "digits", "epochs": 30, "lr": 0.1}
EXPORT_CALIB = 512
SIM_SAMPLES = 360  # the whole digits test split
REPORT_PROFILES = ("cmos45-fp32", "cmos45-int8", "loihi", "loihi2", "truenorth")
STUDENT = {"model": "snn_digits", "dataset": "digits", "method": "tser", "timesteps": 4, "epochs": 30, "lr": 0.1}


def run_demo(out: Path, seed: int = 0, progress: bool = False) -> str:
    """Run every stage into `out`. An earlier demo's files there are replaced; any other non-empty
    directory is refused (a user's files are never deleted); a failure removes what this run made."""
    with owned_dir(out, "demo", "the demo", replace_own="demo") as out:
        return _stages(out, seed, progress)


def _stages(out: Path, seed: int, progress: bool) -> str:
    log.info("[1/5] teacher: %s on digits", TEACHER["model"])
    teacher = train(resolve({**TEACHER, "seed": seed, "out": str(out / "teacher")}, {}), progress=progress)
    log.info("[2/5] student: %s, %s, T=%d", STUDENT["model"], STUDENT["method"], STUDENT["timesteps"])
    student_cfg = {**STUDENT, "seed": seed, "teacher": str(out / "teacher" / "best.pt"), "out": str(out / "student")}
    student = train(resolve(student_cfg, {}), progress=progress)
    log.info("[3/5] export: student to a Loihi 2 bundle")
    bundle = export_loihi2(out / "student" / "best.pt", out / "loihi2", calib=EXPORT_CALIB)
    log.info("[4/5] simulate: the bundle in Loihi 2 fixed point on the test set")
    sim = simulate(out / "loihi2", out / "simulation", backend="fxp", samples=SIM_SAMPLES)
    log.info("[5/5] report: energy for %s", ", ".join(REPORT_PROFILES))
    rep = build([read_simulation(out / "simulation")], list(REPORT_PROFILES))
    write(rep, out / "report")
    e = rep["models"][0]["energy"]
    return (
        # best.pt is what distills and what is exported: its accuracy, not last.pt's, is the one the
        # chip's is compared with (a last.pt number here read as a deployment loss that does not exist)
        f"teacher {TEACHER['model']}: test accuracy {teacher['best_test_acc']:.4f} (best.pt, the teacher)\n"
        f"student {STUDENT['model']} (tser, T={STUDENT['timesteps']}): test accuracy {student['best_test_acc']:.4f} "
        f"(best.pt, epoch {student['best_epoch']}, exported; last.pt {student['test_acc']:.4f})\n"
        f"loihi2 bundle: accuracy float {bundle['accuracy_float']:.4f}, quantized {bundle['accuracy_quantized']:.4f} "
        f"on {bundle['calibration_samples']} training samples; {bundle['resources']['cores']} cores\n"
        f"simulation (Loihi 2 fixed point, {sim['samples']} test images): accuracy {sim['accuracy']:.4f}, firing rate "
        f"{sim['firing_rate_neuron_weighted']:.4f}, {sim['totals']['synaptic_events']:.3g} synaptic events, "
        f"{sim['totals']['acs']:.3g} ACs, {sim['totals']['macs']:.3g} MACs\n"
        + "energy per inference: " + ", ".join(f"{p} {e[p]['per_inference_j'] * 1e9:.3g} nJ"
                                               + (" (estimate)" if e[p]["estimate"] else "") for p in REPORT_PROFILES) + "\n"
        f"files in {out}/teacher, {out}/student, {out}/loihi2, {out}/simulation; report: {out}/report/report.md"
    )
