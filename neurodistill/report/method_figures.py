"""Figures of the methods table: accuracy of each time step per run (TSER's Fig. 2), accuracy vs T."""

from __future__ import annotations

from pathlib import Path

from .figures import legend, plt, save_figure

STEMS = ("accuracy_per_step_by_run", "accuracy_vs_timesteps")
ALL_FILES = tuple(f"{stem}.{ext}" for stem in STEMS for ext in ("png", "pdf", "csv"))


def label(row: dict) -> str:
    return f"{row['method']} ({row['model']}, T={row['timesteps']})"


def accuracy_per_step(rows: list[dict], out: Path) -> list[str]:
    """The accuracy of each time step's output alone, one line per run."""
    runs = [r for r in rows if r["accuracy_per_timestep"]]
    if not runs:
        return []
    fig, ax = plt.subplots(figsize=(6, 3.4))
    data = []
    for r in runs:
        per = r["accuracy_per_timestep"]
        ax.plot(range(1, len(per) + 1), [100 * a for a in per], marker="o", label=label(r))
        data += [[label(r), r["accuracy_per_timestep_source"], t + 1, a] for t, a in enumerate(per)]
    ax.set_xlabel("time step t")
    ax.set_xticks(range(1, max(len(r["accuracy_per_timestep"]) for r in runs) + 1))
    ax.set_ylabel("accuracy of step t alone (%)")
    ax.set_title("Accuracy per time step")
    legend(ax)
    return save_figure(fig, out, "accuracy_per_step_by_run", ["run", "source", "t", "accuracy"], data)


def accuracy_vs_timesteps(rows: list[dict], out: Path) -> list[str]:
    """Float and deployed accuracy against T, one pair of lines per method: only when runs differ in T."""
    if len({r["timesteps"] for r in rows if r["timesteps"] is not None}) < 2:
        return []
    fig, ax = plt.subplots(figsize=(6, 3.4))
    data = []
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = sorted((r for r in rows if r["method"] == method and r["timesteps"] is not None), key=lambda r: r["timesteps"])
        for key, style, what in (("accuracy_float", "-", "float"), ("accuracy_deployed", "--", "deployed")):
            pts = [(r["timesteps"], r[key]) for r in mine if r[key] is not None]
            if pts:
                ax.plot([t for t, _ in pts], [100 * a for _, a in pts], style, marker="o", label=f"{method}, {what}")
                data += [[method, what, t, a] for t, a in pts]
    ax.set_xlabel("time steps T")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Accuracy vs T")
    legend(ax)
    return save_figure(fig, out, "accuracy_vs_timesteps", ["method", "network", "T", "accuracy"], data)
