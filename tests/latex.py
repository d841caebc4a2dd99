"""Compiling a report's LaTeX the way a paper would: `\\input` beside its figures, real pdflatex."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


def compile_input(src: Path, tex: str, work: Path) -> str:
    """Copy `src` (the .tex and the PDFs it includes) into `work`, `\\input{tex}` it from an article
    with booktabs and graphicx, run pdflatex; return the log. Skips without TeX (fails under CI)."""
    pdflatex = shutil.which("pdflatex")
    if pdflatex is None:
        if os.environ.get("CI"):
            pytest.fail("CI=true but pdflatex is missing (.ci/run installs texlive-latex-base)")
        pytest.skip("no TeX engine installed (apt-get install texlive-latex-base texlive-latex-recommended)")
    for f in src.iterdir():
        if f.is_file():
            shutil.copy(f, work / f.name)
    (work / "paper.tex").write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\usepackage{graphicx}\n"
                                    f"\\begin{{document}}\n\\input{{{tex}}}\n\\end{{document}}\n")
    res = subprocess.run([pdflatex, "-interaction=nonstopmode", "-halt-on-error", "paper.tex"], cwd=work,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout[-3000:]
    assert (work / "paper.pdf").read_bytes()[:5] == b"%PDF-"
    return (work / "paper.log").read_text(errors="replace")
