"""The layering, stated and checked: which folder may import which, a core that is only NumPy, no circles.

Every import counts, including those inside functions (a lazy import is still a dependency).

    common   < core  <  models, tasks  <  tracking  <  runner  <  sweeps  <  entry points
    (errors,   (NumPy     (the model       (MLflow)     (one job)   (many jobs)  (python -m lstm_exp[.report|.sync|
     files,     only)      seam; data)                                            .gradcheck], the package's face,
     signals)                                                                      hydra_plugins)
"""

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("common", "core", "models", "tasks", "tracking", "runner", "sweeps")
MAY_IMPORT = {  # folder -> the folders its modules may import (besides their own)
    "common": set(),
    "core": set(),  # nothing of ours, not even common: the maths stands alone
    "models": {"common", "core"},
    "tasks": set(),  # NumPy only: the runner turns their errors into the user's and samples their text
    "tracking": {"common", "core", "tasks"},
    "runner": {"common", "core", "models", "tasks", "tracking"},
    "sweeps": {"common", "core", "models", "tasks", "tracking", "runner"},
}
THIRD_PARTY = {"core": {"numpy"}, "tasks": {"numpy"}}  # folders held to a list of outside packages


def room(module: str) -> str:
    """The folder a module lives in: lstm_exp.core.lstm -> core, tasks.char -> tasks, lstm_exp.report -> entry."""
    parts = module.split(".")
    if parts[0] == "tasks":
        return "tasks"
    if parts[0] == "lstm_exp" and len(parts) > 1 and parts[1] in FOLDERS:
        return parts[1]
    return "entry"


def module_files() -> dict:
    files = {}
    for top in ("lstm_exp", "tasks", "hydra_plugins"):
        for path in (ROOT / top).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


MODULES = module_files()


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports (anywhere in it); ``from lstm_exp.core import optim`` counts as the module."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names if f"{node.module}.{alias.name}" in MODULES}
    return found


def ours(names: set[str]) -> set[str]:
    return {n for n in names if n in MODULES}


def third_party(names: set[str]) -> set[str]:
    tops = {n.split(".")[0] for n in names}
    return {t for t in tops if t not in sys.stdlib_module_names and t not in ("lstm_exp", "tasks", "__future__")}


GRAPH = {name: ours(imports_of(path)) - {name} for name, path in MODULES.items()}


def test_every_module_lives_in_a_folder_of_the_layering():
    loose = [m for m in MODULES if room(m) not in (*FOLDERS, "entry")]
    assert not loose
    assert {"lstm_exp.core.lstm", "lstm_exp.runner.train", "lstm_exp.tracking.run", "tasks.char"} <= set(MODULES)
    top = sorted(p.name for p in (ROOT / "lstm_exp").glob("*.py"))
    assert top == ["__init__.py", "__main__.py", "gradcheck.py", "report.py", "sync.py"]  # entry points only


@pytest.mark.parametrize("name", sorted(n for n in MODULES if room(n) in MAY_IMPORT))
def test_a_module_imports_only_from_its_own_folder_and_the_folders_below(name):
    own = room(name)
    above = sorted(m for m in GRAPH[name] if room(m) not in MAY_IMPORT[own] | {own})
    assert not above, f"{name} ({own}) imports {above}"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if room(n) in THIRD_PARTY))
def test_the_core_and_the_tasks_need_only_numpy(name):
    assert third_party(imports_of(MODULES[name])) <= THIRD_PARTY[room(name)]


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
