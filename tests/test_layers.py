"""The import structure, stated and checked: a core that is only NumPy, tasks on the core, no circles.

Every import counts, including those inside functions (a lazy import is still a dependency).
"""

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# the numerical core: NumPy and the standard library only
CORE = {
    "lstm",
    "heads",
    "model",
    "init",
    "optim",
    "faults",
    "gradcheck",
    "layout",
    "diagnose",
    "diagnostics",
    "errors",
    "atomic",
}
TRACKING_MAY_USE = {"errors", "spool", "plots", "atomic", "owner", "blank_store"}  # tracking knows nothing of the loop


def module_files():
    files = {f"lstm_exp.{p.stem}": p for p in (ROOT / "lstm_exp").glob("*.py") if p.stem != "__init__"}
    files.update({f"tasks.{p.stem}" if p.stem != "__init__" else "tasks": p for p in (ROOT / "tasks").glob("*.py")})
    return files


def imports_of(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports (anywhere in it), project modules in full."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module in ("lstm_exp", "tasks"):  # from lstm_exp import optim
                found |= {f"{node.module}.{alias.name}" for alias in node.names}
            found.add(node.module)
    return found


def project(names: set[str]) -> set[str]:
    modules = set(module_files())
    return {n for n in names if n in modules}


def third_party(names: set[str]) -> set[str]:
    tops = {n.split(".")[0] for n in names}
    return {t for t in tops if t not in sys.stdlib_module_names and t not in ("lstm_exp", "tasks", "__future__")}


GRAPH = {name: project(imports_of(path)) - {name} for name, path in module_files().items()}
THIRD = {name: third_party(imports_of(path)) for name, path in module_files().items()}


def test_the_module_list_is_complete():
    assert {"lstm_exp.lstm", "lstm_exp.train", "lstm_exp.tracking", "tasks", "tasks.char"} <= set(GRAPH)


@pytest.mark.parametrize("name", sorted(f"lstm_exp.{m}" for m in CORE))
def test_the_core_imports_only_numpy_and_the_core(name):
    assert THIRD[name] <= {"numpy"}, THIRD[name]
    assert {m.removeprefix("lstm_exp.") for m in GRAPH[name]} <= CORE


@pytest.mark.parametrize("name", sorted(n for n in GRAPH if n.split(".")[0] == "tasks"))
def test_tasks_import_only_numpy_and_the_core(name):
    assert THIRD[name] <= {"numpy"}, THIRD[name]
    assert all(m.startswith("tasks") or m.removeprefix("lstm_exp.") in CORE for m in GRAPH[name]), GRAPH[name]


def test_tracking_knows_nothing_of_the_loop():
    assert {m.removeprefix("lstm_exp.") for m in GRAPH["lstm_exp.tracking"]} <= TRACKING_MAY_USE


def test_nothing_imports_in_a_circle():
    def cycle_from(start):
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in GRAPH.get(node, ()):
                if nxt == start:
                    return path + [nxt]
                if nxt not in path:
                    stack.append((nxt, path + [nxt]))
        return None

    cycles = [c for c in (cycle_from(n) for n in GRAPH) if c]
    assert not cycles, " -> ".join(cycles[0])
