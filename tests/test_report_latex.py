"""report.tex is valid booktabs LaTeX: its structure always, and a real pdflatex run where TeX is installed
(CI installs texlive-latex-base; without it under CI=true the test fails rather than skip)."""

from __future__ import annotations

import re

import pytest

from .conftest import run_cli
from .latex import compile_input

PROFILES = ("cmos45-fp32", "cmos45-int8", "loihi", "loihi2", "truenorth", "spinnaker2")


@pytest.fixture(scope="module")
def report_dir(sim_bundle, tmp_path_factory):
    d = tmp_path_factory.mktemp("latex")
    for backend in ("fxp", "float"):
        res = run_cli("simulate", str(sim_bundle), "--backend", backend, "--samples", "24", "--out", str(d / backend))
        assert res.returncode == 0, res.stderr
    args = [x for p in PROFILES for x in ("--profile", p)]
    res = run_cli("report", str(d / "fxp"), str(d / "float"), *args, "--out", str(d / "rep"))
    assert res.returncode == 0, res.stderr
    return d / "rep"


def test_tables_are_well_formed(report_dir):
    tex = (report_dir / "report.tex").read_text()
    assert tex.count(r"\begin{table}") == tex.count(r"\end{table}") == 2 + 2 + 1  # summary, energy, one per model, NeuroBench
    tables = re.findall(r"\\begin\{tabular\}\{([lr]+)\}(.*?)\\end\{tabular\}", tex, re.S)
    assert len(tables) == tex.count(r"\begin{tabular}") == 5, tex  # every tabular parsed: none skipped by the loop
    # column specs: summary (model + 7 numbers), energy (model + one per profile), layers (6 + one share per profile)
    assert [spec for spec, _ in tables] == ["l" + "r" * 7, "l" + "r" * len(PROFILES)] + ["l" + "r" * (5 + len(PROFILES))] * 2 + ["l" + "r" * 7]
    n_rows = []
    for env in tables:
        spec, body = env
        assert body.count(r"\toprule") == body.count(r"\midrule") == body.count(r"\bottomrule") == 1
        rows = [r for r in body.split("\n") if r.endswith(r"\\")]
        n_rows.append(len(rows))
        for r in rows:  # every row has one cell per column; '&' inside cells is escaped
            assert len(re.findall(r"(?<!\\)&", r)) == len(spec) - 1, r
    assert n_rows == [1 + 2, 1 + 2, 1 + 3, 1 + 3, 1 + 2]  # header + 2 models (summary, energy, NeuroBench); header + 3 layers each
    energy = tex[tex.index("tab:neurodistill-energy"):]
    assert all(p in energy.split(r"\midrule")[0] for p in PROFILES)
    # no unescaped '_' outside file names and labels (those are not typeset)
    body = re.sub(r"\\(includegraphics\[[^]]*\]|label)\{[^}]*\}", "", tex.split("\n", 1)[1])
    assert "_" not in re.sub(r"\\_", "", body.replace(r"\linewidth", ""))
    # one figure environment per PDF the report wrote, each including a file that exists
    pdfs = re.findall(r"\\includegraphics\[[^]]*\]\{([^}]*)\}", tex)
    assert pdfs and sorted(pdfs) == sorted(f.name for f in report_dir.glob("*.pdf"))


def test_report_compiles_with_pdflatex(report_dir, tmp_path):
    log = compile_input(report_dir, "report.tex", tmp_path)
    assert (tmp_path / "paper.pdf").stat().st_size > 1000
    assert "Overfull \\hbox" not in log and "Undefined control sequence" not in log
