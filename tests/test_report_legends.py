"""No figure `report` writes hides data under its legend (bars or lines inside the legend box)."""

from __future__ import annotations

import matplotlib.pyplot as plt

from neurodistill.report import figures

from .test_report import invoke, sims  # noqa: F401 (fixture)


def test_no_legend_covers_a_bar_or_a_line(sims, tmp_path, monkeypatch):  # noqa: F811
    seen: dict[str, list[str]] = {}
    save = figures.save_figure

    def checked(fig, out, stem, header, rows):
        fig.tight_layout()
        seen[stem] = figures.hidden_by_legends(fig) if any(ax.get_legend() for ax in fig.axes) else None
        return save(fig, out, stem, header, rows)

    monkeypatch.setattr(figures, "save_figure", checked)
    # two models and four profiles: every figure with more than one series has a legend
    res = invoke("report", sims / "fxp", sims / "float", "--profile", "cmos45-fp32", "--profile", "cmos45-int8",
                 "--profile", "loihi", "--profile", "loihi2", "--out", tmp_path)
    assert res.exit_code == 0, res.output
    with_legend = {k: v for k, v in seen.items() if v is not None}
    assert len(with_legend) >= 4, seen  # the check ran on real legends
    assert all(v == [] for v in with_legend.values()), with_legend


def test_the_check_sees_a_legend_over_bars():
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.bar([0, 1, 2], [1.0, 0.9, 0.8], label="a")
    ax.bar([0.4, 1.4, 2.4], [0.95, 0.85, 0.75], label="b")
    ax.legend(loc="upper left")  # matplotlib's own placement, inside the axes, over the first bars
    assert figures.hidden_by_legends(fig)
    figures.legend(ax)
    assert figures.hidden_by_legends(fig) == []
    plt.close(fig)
