"""The layout stays readable: small modules, short functions, and flows/ for flows only.

The import direction between the stages is checked by import-linter
(``[tool.importlinter]`` in pyproject.toml, run by ``make lint``); these are
the rules it cannot express.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Every folder of Python the project keeps (the stage packages, tests, benchmarks).
PYTHON_DIRS = sorted(
    {p.parent.name for p in ROOT.glob("*/__init__.py")} | {"tests", "bench", "feature_repo"}
)
#: A module past this many lines holds more than one concept: split it.
MAX_MODULE_LINES = 450
#: A function whose body (its docstring left out) runs past this does too much.
MAX_FUNCTION_LINES = 80


def python_files() -> list[Path]:
    return sorted(p for d in PYTHON_DIRS for p in (ROOT / d).rglob("*.py") if "data" not in p.parts)


def test_the_python_folders_are_the_stages() -> None:
    stages = {"core", "events", "folds", "feature_repo", "features", "stores", "models"}
    stages |= {"monitoring", "experiments", "serving", "flows", "simulation", "cli"}
    stages |= {"tests", "bench"}
    assert set(PYTHON_DIRS) == stages, "a new package: add it to the layers in pyproject.toml"


@pytest.mark.parametrize("path", python_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_are_small(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{lines} lines: split it along the concepts it holds"


def _body_lines(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    first = fn.body[0]
    docstring = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
    start = fn.body[1].lineno if docstring and len(fn.body) > 1 else first.lineno
    return int(fn.end_lineno or start) - start + 1


def test_functions_are_short() -> None:
    long = []
    for path in python_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = _body_lines(node)
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)")
    assert long == [], "split these functions"


def test_flows_holds_only_flows_and_their_wiring() -> None:
    """Every module of flows/ defines a Prefect flow, or is named as wiring below."""
    wiring = {
        "__init__.py",
        "context.py",  # which settings a flow run uses
        "server.py",  # the Prefect server of a home
        "deploy.py",  # deployments and the worker
        "locks.py",  # one writer per store
        "retry.py",  # the tasks' retry policies
    }
    for path in sorted((ROOT / "flows").glob("*.py")):
        if path.name in wiring:
            continue
        tree = ast.parse(path.read_text())
        decorators = [
            d
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef)
            for d in node.decorator_list
        ]
        flows = [
            d for d in decorators if isinstance(d, ast.Call) and getattr(d.func, "id", "") == "flow"
        ]
        assert flows, f"flows/{path.name} defines no @flow: move it to the stage it belongs to"
