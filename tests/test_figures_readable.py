"""Figures a reader can read, and the tour's outputs kept out of git (through the real commands)."""

from __future__ import annotations

import subprocess

from neurodistill.report import figures

from .conftest import ROOT
from .test_report import invoke, sims  # noqa: F401 (fixture)


def _figures(sims_dir, tmp_path, monkeypatch, *profiles):  # noqa: F811
    seen = {}
    save = figures.save_figure

    def keep(fig, out, stem, header, rows):
        fig.canvas.draw()
        seen[stem] = [([t.get_text() for t in ax.get_xticklabels()], [t.get_text() for t in ax.texts]) for ax in fig.axes]
        return save(fig, out, stem, header, rows)

    monkeypatch.setattr(figures, "save_figure", keep)
    res = invoke("report", sims_dir / "fxp", *[x for p in profiles for x in ("--profile", p)], "--out", tmp_path)
    assert res.exit_code == 0, res.output
    return seen


def test_zero_energy_bars_are_marked(sims, tmp_path, monkeypatch):  # noqa: F811
    # loihi2 prices synaptic events only: the host encoding layer's bar is zero, invisible on a log axis
    seen = _figures(sims, tmp_path, monkeypatch, "loihi2", "cmos45-fp32")
    (_ticks, texts), = seen["energy_by_layer"]
    assert "0" in texts


def test_layer_ticks_name_kind_and_size(sims, tmp_path, monkeypatch):  # noqa: F811
    seen = _figures(sims, tmp_path, monkeypatch, "loihi")
    (ticks, _), = seen["energy_by_layer"]
    assert ticks and all("\n" in t for t in ticks) and any("lif" in t for t in ticks) and any("readout" in t for t in ticks)


def test_the_tours_output_folders_are_ignored_by_git():
    paths = ["bundles/digits/manifest.json", "sims/digits/simulation.json", "reports/digits/report.md",
             "runs/student/last.pt", "frames.npz"]
    res = subprocess.run(["git", "check-ignore", *paths], cwd=ROOT, capture_output=True, text=True)
    assert res.stdout.split() == paths


def test_plots_keep_their_width_beside_the_legend(sims, tmp_path, monkeypatch):  # noqa: F811
    """tight_layout once made room for a long outside legend by squeezing the plot to a sliver
    (accuracy per step: about a fifth of the figure); the legend now widens the canvas instead."""
    import matplotlib.image

    widths, cut = {}, []
    save = figures.save_figure

    def keep(fig, out, stem, header, rows):
        files = save(fig, out, stem, header, rows)  # after tight_layout and the saving
        widths[stem] = min(ax.get_position().width * fig.get_figwidth() for ax in fig.axes)
        # the saved image holds every plot and its legend side by side (none cut at the edge)
        png_inches = matplotlib.image.imread(out / f"{stem}.png").shape[1] / 160
        for ax in fig.axes:
            if ax.get_legend() is not None:
                need = (ax.get_position().width * fig.get_figwidth()
                        + ax.get_legend().get_window_extent().width / fig.dpi)
                if png_inches < need:
                    cut.append((stem, png_inches, need))
        return files

    monkeypatch.setattr(figures, "save_figure", keep)
    res = invoke("report", sims / "fxp", "--profile", "loihi", "--out", tmp_path)
    assert res.exit_code == 0, res.output
    assert "accuracy_by_step" in widths
    for stem, inches in widths.items():
        assert inches >= 3.5, (stem, inches)
    assert cut == []
