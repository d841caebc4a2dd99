"""Every path the shipped files cite exists in this repository (issue: the repository carries its
own knowledge). A maintainer who clones the project must be able to open whatever the code,
profiles, docs and generated reports point to; references to design notes that live outside
the repository are defects.

Checked over every tracked text file except tests/fixtures (other projects' files, verbatim):
- no reference to the outside notes (`spec/*.md`, `DESIGN.md`, `STYLE.md`, `shared/`);
- every repository path (`docs/...`, `neurodistill/...`, `tests/...`, ...) exists;
- every `file.md#anchor` and Markdown link `[..](file.md#anchor)` names a file and a heading
  that exist (GitHub's anchor rules).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEXT = {".py", ".md", ".toml", ".yaml", ".yml", ".txt", ".sh", ".cfg", ".ini", ""}
TOP = ("docs", "neurodistill", "tests", "benchmarks", "scripts", "hw_profiles", "requirements", "examples", ".ci")
OUTSIDE = re.compile(r"(?<![\w/.-])(spec/[\w-]+\.md|DESIGN\.md|STYLE\.md|shared/[\w./-]+|\.\./shared)")
_TOPS = "|".join(re.escape(t) for t in TOP)
REPO_PATH = re.compile(r"(?<![\w/.-])((?:" + _TOPS + r")/[\w./*-]*[\w/*])(#[\w-]+)?")
MD_LINK = re.compile(r"\]\(([^)\s#]*\.md)?(#[\w-]+)?\)")
OUTPUTS = "benchmarks/results/"
# Paths that name where something lands outside the source tree, not a file of it.
NOT_IN_TREE = {
    "neurodistill/hw_profiles",  # where the wheel installs hw_profiles/ (tests/test_packaging.py)
}


def shipped_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    files = [ROOT / f for f in out.split()]
    return [f for f in files if f.suffix in TEXT and f.is_file() and "tests/fixtures" not in f.as_posix()
            and f.name != "test_references.py" and not f.name.endswith(".lock")]


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces to '-'."""
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def anchors(md: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", md.read_text(), flags=re.S)
    return {slug(m.group(1)) for m in re.finditer(r"^#+\s+(.*)$", text, flags=re.M)}


def problems_in(path: Path) -> list[str]:
    text = path.read_text(errors="replace")
    rel = path.relative_to(ROOT).as_posix()
    found = []
    for n, line in enumerate(text.splitlines(), 1):
        where = f"{rel}:{n}"
        for m in OUTSIDE.finditer(line):
            found.append(f"{where}: cites {m.group(1)!r}, which is not in this repository")
        for m in REPO_PATH.finditer(line):
            target, anchor = m.group(1).rstrip(".").rstrip("/"), m.group(2)
            if target in NOT_IN_TREE:
                continue
            if target.startswith(OUTPUTS):  # written by a script: its folder must exist, the file may not yet
                target = OUTPUTS.rstrip("/")
            if "*" in target:  # a pattern: at least one file must match
                if not list(ROOT.glob(target)):
                    found.append(f"{where}: nothing matches {target}")
                continue
            found += _check(where, ROOT / target, anchor)
        if path.suffix == ".md":
            for m in MD_LINK.finditer(line):
                target, anchor = m.group(1), m.group(2)
                if target is None and anchor is None or (target or "").startswith(("http", "/")):
                    continue
                found += _check(where, (path.parent / target) if target else path, anchor)
    return found


def _check(where: str, target: Path, anchor: str | None) -> list[str]:
    if not target.exists():
        return [f"{where}: {target.relative_to(ROOT).as_posix() if ROOT in target.parents else target} does not exist"]
    if anchor and target.suffix == ".md" and anchor[1:] not in anchors(target):
        return [f"{where}: {target.name} has no section {anchor}"]
    return []


def test_every_cited_path_and_section_exists():
    problems = [p for f in shipped_files() for p in problems_in(f)]
    assert not problems, "\n".join(problems)


def test_the_checker_catches_what_it_should(tmp_path, monkeypatch):
    """The checker itself: an outside note, a missing file and a missing section are each found."""
    doc = ROOT / "docs" / "_reference_check_probe.md"
    doc.write_text("# Probe\nsee spec/loihi2.md and docs/nowhere.md and [x](export.md#no-such-section) "
                   "and [y](export.md#the-bundle) and docs/loihi2.md#fixed-point-neuron-update\n")
    try:
        found = problems_in(doc)
    finally:
        doc.unlink()
    assert len(found) == 3, found
    assert "spec/loihi2.md" in found[0] and "docs/nowhere.md does not exist" in found[1]
    assert "no section #no-such-section" in found[2]


@pytest.mark.parametrize("heading, expected", [("`simulation.json`", "simulationjson"),
                                               ("Counting conventions", "counting-conventions"),
                                               ("spikingjelly LIF to CUBA LIF", "spikingjelly-lif-to-cuba-lif")])
def test_slug_follows_github(heading, expected):
    assert slug(heading) == expected
