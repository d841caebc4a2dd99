"""The package's structure: every import points down the layers of docs/design.md (the
import-linter contract in pyproject.toml), no import cycle, and no private name imported across
modules. Each check is shown to fail on a probe, so none of them passes vacuously."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "neurodistill"


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(exe)], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_layers_contract_is_kept():
    res = lint_imports(ROOT)
    assert res.returncode == 0 and "1 kept, 0 broken" in res.stdout, res.stdout[-2000:] + res.stderr


def test_layers_contract_covers_every_top_level_part():
    """A part left out of the contract could import anything: every module and package of
    neurodistill/ is in exactly one layer."""
    import tomllib

    layers = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0]["layers"]
    named = [x.strip().removeprefix("neurodistill.") for layer in layers for x in layer.split("|")]
    parts = {p.stem if p.suffix == ".py" else p.name for p in PACKAGE.iterdir()
             if p.name not in ("__init__.py", "__pycache__") and (p.suffix == ".py" or (p / "__init__.py").exists())}
    assert sorted(named) == sorted(parts)


def test_layers_contract_breaks_on_an_upward_import(tmp_path):
    copy = tmp_path / "repo"
    copy.mkdir()
    shutil.copy(ROOT / "pyproject.toml", copy)
    shutil.copytree(PACKAGE, copy / "neurodistill", ignore=shutil.ignore_patterns("__pycache__"))
    with open(copy / "neurodistill" / "io" / "files.py", "a") as f:
        f.write("\nfrom ..report import tables  # noqa: E402 - the probe: io may not import report\n")
    env_path = f"{copy}"
    res = subprocess.run([str(Path(sys.executable).with_name("lint-imports"))], cwd=copy, capture_output=True, text=True,
                         timeout=300, env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"})
    assert res.returncode != 0 and "neurodistill.io.files -> neurodistill.report.tables" in res.stdout, res.stdout[-2000:]


def _imports(path: Path) -> list[tuple[str, str, int]]:
    """(module imported, name, line) of every `from X import name` in a package module, X resolved."""
    mod = path.relative_to(ROOT).with_suffix("").parts
    pkg = list(mod[:-1]) if mod[-1] != "__init__" else list(mod[:-1])
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[: len(pkg) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("neurodistill"):
                out += [(target, a.name, node.lineno) for a in node.names]
    return out


def private_imports(root: Path) -> list[str]:
    bad = []
    for path in sorted(root.rglob("*.py")):
        if "lava_scripts" in path.parts:
            continue
        for target, name, line in _imports(path):
            if name.startswith("_") and not name.startswith("__"):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {target}.{name}")
    return bad


def test_no_private_name_is_imported_across_modules(tmp_path):
    assert private_imports(PACKAGE) == []
    name = "_probe_private_import"  # a module made for the probe and removed again
    probe = PACKAGE / f"{name}.py"
    try:
        probe.write_text("from .io.files import _KINDS  # noqa: F401\n")
        assert private_imports(PACKAGE) == [f"{probe.relative_to(ROOT)}:1 imports neurodistill.io.files._KINDS"]
    finally:
        probe.unlink()


def cycle_edges(graph) -> list[tuple[str, str]]:
    """Direct imports a -> b where b also leads back to a."""
    cycles = []
    for m in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(m)):
            if imported != m and graph.chain_exists(importer=imported, imported=m):
                cycles.append((m, imported))
    return cycles


def test_no_import_cycle():
    import grimp

    graph = grimp.build_graph("neurodistill", exclude_type_checking_imports=True)
    assert cycle_edges(graph) == []
    probe = grimp.ImportGraph()
    for a, b in (("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a"), ("p.c", "p.d")):
        probe.add_import(importer=a, imported=b)
    assert cycle_edges(probe) == [("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a")]


MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 80


def long_units(package: Path) -> list[str]:
    """Modules over MAX_MODULE_LINES lines and functions (methods included) over MAX_FUNCTION_LINES."""
    found = []
    for path in sorted(package.rglob("*.py")):
        text = path.read_text()
        rel = path.relative_to(package.parent)
        if len(text.splitlines()) > MAX_MODULE_LINES:
            found.append(f"{rel}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    found.append(f"{rel}:{node.lineno} {node.name}: {n} lines")
    return found


def test_no_long_module_or_function(tmp_path):
    assert long_units(ROOT / "neurodistill") == []
    # the check itself: a probe package with one long function and one long module is caught
    probe = tmp_path / "probe"
    probe.mkdir()
    (probe / "f.py").write_text("def f():\n" + "    x = 1\n" * MAX_FUNCTION_LINES)
    (probe / "m.py").write_text("x = 1\n" * (MAX_MODULE_LINES + 1))
    assert long_units(probe) == [f"probe/f.py:1 f: {MAX_FUNCTION_LINES + 1} lines",
                                 f"probe/m.py: {MAX_MODULE_LINES + 1} lines"]
