"""Figures for papers: PNG and PDF, each with the CSV of its data next to it (matplotlib, Agg)."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only; no display is needed or wanted
import matplotlib.pyplot as plt  # noqa: E402


def legend(ax, **kw) -> None:
    """The legend outside the plotting area, to the right: inside it would cover bars or lines
    (the first layer's bars, a curve's last points) in some figure or other. Kept out of
    tight_layout, which would squeeze the plot to a sliver beside long labels; savefig's
    bbox_inches="tight" widens the canvas to hold it instead."""
    leg = ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, fontsize=kw.pop("fontsize", 7), **kw)
    leg.set_in_layout(False)


def hidden_by_legends(fig) -> list[str]:
    """What a legend box covers in `fig`: bars (rectangles of non-zero size) and points along the
    plotted lines, in display coordinates. Empty when every legend leaves the data visible."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    hidden = []
    for ax in fig.axes:
        leg = ax.get_legend()
        if leg is None:
            continue
        box = leg.get_window_extent(renderer)
        for bar in ax.patches:
            r = bar.get_window_extent(renderer)
            if r.width > 0 and r.height > 0 and box.overlaps(r):
                hidden.append(f"{ax.get_title()!r}: bar at x={bar.get_x():.2f} under the legend")
        for line in ax.get_lines():
            xy = line.get_xydata()
            if len(xy) == 0:
                continue
            # points along each segment, so a legend over the middle of a line counts too
            dense = np.concatenate([np.linspace(a, b, 25) for a, b in zip(xy[:-1], xy[1:], strict=True)] or [xy])
            pts = ax.transData.transform(dense)
            if any(box.contains(x, y) for x, y in pts):
                hidden.append(f"{ax.get_title()!r}: line {line.get_label()!r} under the legend")
    return hidden


def save_figure(fig, out: Path, stem: str, header: list[str], rows: list[list]) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    # named here because legend() keeps them out of the layout, which bbox_inches="tight" also skips
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    for ext in ("png", "pdf"):
        # bbox_inches="tight" grows the canvas to hold legends placed outside the axes
        fig.savefig(out / f"{stem}.{ext}", dpi=160, bbox_inches="tight", bbox_extra_artists=legends)
    plt.close(fig)
    with open(out / f"{stem}.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return [f"{stem}.png", f"{stem}.pdf", f"{stem}.csv"]


def _grouped_bars(ax, groups: list[str], series: dict[str, list[float]]) -> None:
    """One bar per series in each group, the group's name under its middle."""
    width = 0.8 / max(len(series), 1)
    for i, (label, values) in enumerate(series.items()):
        ax.bar([j + i * width for j in range(len(groups))], values, width, label=label)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(groups))], groups, rotation=45, ha="right")
    if len(series) > 1:
        legend(ax)


STEMS = ("firing_rate_by_layer", "firing_rate_by_step", "accuracy_by_step", "energy_by_layer", "energy_by_profile")
ALL_FILES = tuple(f"{stem}.{ext}" for stem in STEMS for ext in ("png", "pdf", "csv"))


def firing_rate_by_layer(models: list[dict], out: Path) -> list[str]:
    """Grouped bars when every model has the same layers (methods on one network); otherwise, one
    panel per model with its own layer names (different networks side by side)."""
    layers = {m["label"]: [x for x in m["layers"] if x["firing_rate"] is not None] for m in models}
    rows = [[label, x["name"], x["firing_rate"]] for label, ls in layers.items() for x in ls]
    name_lists = {tuple(x["name"] for x in ls) for ls in layers.values()}
    if len(name_lists) == 1:
        fig, ax = plt.subplots(figsize=(7, 3.2))
        _grouped_bars(ax, [layer_label(x) for x in next(iter(layers.values()))],
                      {label: [x["firing_rate"] for x in ls] for label, ls in layers.items()})
        ax.set_ylabel("firing rate (spikes / neuron / step)")
        ax.set_title("Firing rate per layer")
    else:
        fig, axes = plt.subplots(len(layers), 1, figsize=(7, 2.6 * len(layers)), sharey=True, squeeze=False)
        for ax, (label, ls) in zip(axes[:, 0], layers.items(), strict=True):
            _grouped_bars(ax, [layer_label(x) for x in ls], {label: [x["firing_rate"] for x in ls]})
            ax.set_ylabel("firing rate")
            ax.set_title(f"Firing rate per layer: {label}", fontsize=9)
    return save_figure(fig, out, "firing_rate_by_layer", ["model", "layer", "firing_rate"], rows)


def firing_rate_by_step(models: list[dict], out: Path) -> list[str]:
    fig, ax = plt.subplots(figsize=(5, 3.2))
    rows = []
    for m in models:
        T, B = m["timesteps"], m["samples"]
        firing = [x for x in m["layers"] if x["firing_rate"] is not None]
        n = sum(x["neurons"] for x in firing)
        rate = [sum(x["spikes_per_step"][t] for x in firing) / (n * B) for t in range(T)]
        ax.plot(range(1, T + 1), rate, marker="o", label=m["label"])
        rows += [[m["label"], t + 1, r] for t, r in enumerate(rate)]
    ax.set_xlabel("time step")
    ax.set_xticks(range(1, max(m["timesteps"] for m in models) + 1))
    ax.set_ylabel("firing rate (neuron-weighted)")
    ax.set_title("Firing rate per time step")
    if len(models) > 1:
        legend(ax)
    return save_figure(fig, out, "firing_rate_by_step", ["model", "t", "firing_rate"], rows)


def accuracy_by_step(models: list[dict], out: Path) -> list[str]:
    with_acc = [m for m in models if m.get("accuracy_per_timestep")]
    if not with_acc:
        return []
    fig, ax = plt.subplots(figsize=(5, 3.2))
    rows = []
    for m in with_acc:
        per = m["accuracy_per_timestep"]
        ts = [p["t"] for p in per]
        # the label says whose numbers these are: the simulation's (backend, samples) or training's float
        src = m.get("accuracy_per_timestep_source") or m["backend"]
        name = m.get("model_name") or m["label"].rsplit(" (", 1)[0]
        ax.plot(ts, [p["alone"] for p in per], marker="o", linestyle="--", label=f"{name} ({src}): step t alone")
        ax.plot(ts, [p["running_mean"] for p in per], marker="s", label=f"{name} ({src}): mean of steps 1..t")
        rows += [[m["label"], src, p["t"], p["alone"], p["running_mean"]] for p in per]
    ax.set_xlabel("time step")
    ax.set_xticks(sorted({p["t"] for m in with_acc for p in m["accuracy_per_timestep"]}))
    ax.set_ylabel("test accuracy")
    ax.set_title("Accuracy per time step")
    legend(ax)
    return save_figure(fig, out, "accuracy_by_step", ["model", "source", "t", "alone", "running_mean"], rows)


def _log_bars(ax, series: dict[str, list[float]]) -> None:
    """Log scale whose floor sits a decade below the smallest bar, so every bar shows its size; a
    bar of zero energy (a layer a profile does not price) cannot be drawn on it, so it is marked "0"."""
    ax.set_yscale("log")
    positive = [v for vs in series.values() for v in vs if v > 0]
    if positive:
        ax.set_ylim(bottom=10 ** (np.floor(np.log10(min(positive))) - 1))
    floor = ax.get_ylim()[0]
    for bar in ax.patches:
        if bar.get_height() == 0:
            ax.annotate("0", (bar.get_x() + bar.get_width() / 2, floor), xytext=(0, 2), textcoords="offset points",
                        ha="center", va="bottom", fontsize=6)


def layer_label(x: dict) -> str:
    """A tick label a reader can place: the module path, its neuron kind and size."""
    return f"{x['name']}\n{x.get('kind', '')} {x['neurons']}".strip()


def energy_by_layer(models: list[dict], profiles: list[str], out: Path, estimates: set[str] = frozenset()) -> list[str]:
    """Energy per inference of each layer, a bar per profile: one panel per model."""
    fig, axes = plt.subplots(len(models), 1, figsize=(7, 3.2 if len(models) == 1 else 2.8 * len(models)), squeeze=False)
    rows = []
    for ax, m in zip(axes[:, 0], models, strict=True):
        names = [x["name"] for x in m["layers"]]
        series = {p: [x["energy_j"][p] * 1e6 / m["samples"] for x in m["layers"]] for p in profiles}
        _grouped_bars(ax, [layer_label(x) for x in m["layers"]],
                      {f"{p} (estimate)" if p in estimates else p: v for p, v in series.items()})
        rows += [[m["label"], p, n, v] for p, vs in series.items() for n, v in zip(names, vs, strict=True)]
        ax.set_ylabel("energy per inference (µJ)", fontsize=8 if len(models) > 1 else None)
        _log_bars(ax, series)
        ax.set_title(f"Energy by layer ({m['label']})", fontsize=9 if len(models) > 1 else None)
    return save_figure(fig, out, "energy_by_layer", ["model", "profile", "layer", "energy_uj_per_inference"], rows)


def energy_by_profile(models: list[dict], profiles: list[str], out: Path, estimates: set[str] = frozenset()) -> list[str]:
    fig, ax = plt.subplots(figsize=(6, 3.2))
    series = {m["label"]: [m["energy"][p]["per_inference_j"] * 1e6 for p in profiles] for m in models}
    _grouped_bars(ax, [f"{p} (estimate)" if p in estimates else p for p in profiles], series)
    rows = [[label, p, v] for label, vs in series.items() for p, v in zip(profiles, vs, strict=True)]
    ax.set_ylabel("energy per inference (µJ)")
    _log_bars(ax, series)
    ax.set_title("Energy by hardware profile")
    return save_figure(fig, out, "energy_by_profile", ["model", "profile", "energy_uj_per_inference"], rows)
