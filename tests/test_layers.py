"""The package's import graph: no cycles anywhere, and the layers of pyproject's import-linter
contract hold (CI runs ``lint-imports`` too; this test makes a broken layer fail locally)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "classicnets"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``path`` imports, at any depth in the file (function-local
    imports count: a cycle hidden inside a function is still a cycle)."""
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                found.add(candidate if candidate in known else target)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name in known and name != module_name(path)}


def import_graph() -> dict[str, set[str]]:
    files = [p for p in PACKAGE.rglob("*.py")]
    known = {module_name(p) for p in files}
    return {module_name(p): imported_modules(p, known) for p in files}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for other in sorted(graph.get(node, ())):
            if other.rsplit(".", 1)[0] == node or node.startswith(other + "."):
                continue  # a package and its own modules (re-exports in __init__) are one unit
            if state.get(other) == 1:
                return path[path.index(other):] + [other] if other in path else [node, other]
            if other not in state:
                cycle = visit(other, path + [other])
                if cycle:
                    return cycle
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start, [start])
            if cycle:
                return cycle
    return None


def test_no_import_cycles_between_modules():
    graph = {name: {o for o in deps if not o.endswith("__init__")} for name, deps in import_graph().items()
             if not name.endswith("__init__")}
    modules_only = {n: {o for o in d if o in graph and not (PACKAGE / Path(*o.split(".")[1:]) / "__init__.py").exists()}
                    for n, d in graph.items() if not (PACKAGE / Path(*n.split(".")[1:]) / "__init__.py").exists()}
    cycle = find_cycle(modules_only)
    assert cycle is None, f"import cycle: {' -> '.join(cycle)}"


def test_the_layering_contract_holds():
    linter = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if linter is None:
        pytest.skip("import-linter is not installed (pip install -e '.[dev]' installs it)")
    result = subprocess.run([linter], capture_output=True, text=True, cwd=PACKAGE.parents[1], timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "broken" not in result.stdout.split("Contracts:")[-1].replace("0 broken", "")
