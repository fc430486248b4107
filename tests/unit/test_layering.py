"""DESIGN.md rule 1: shared/ never imports azure.functions or azure.durable_functions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
FORBIDDEN = ("azure.functions", "azure.durable_functions")


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, dotted name) of every import, including `from azure import functions`."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
            "import_module",
            "__import__",
        ):
            found += [(node.lineno, arg.value) for arg in node.args[:1] if isinstance(arg, ast.Constant)]
    return found


def forbidden_imports(source: str) -> list[str]:
    return [
        f"line {line}: {name}"
        for line, name in imported_modules(ast.parse(source))
        if isinstance(name, str) and any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN)
    ]


@pytest.mark.parametrize(
    "source",
    [
        "import azure.functions as func",
        "from azure import durable_functions",
        "from azure.durable_functions import models",
        "def f():\n    import azure.functions\n",
        "importlib.import_module('azure.durable_functions')",
    ],
)
def test_detector_finds_forbidden_imports(source):
    assert forbidden_imports(source)


def test_detector_allows_other_azure_packages():
    assert forbidden_imports("import azure.storage.blob\nfrom azure.identity import DefaultAzureCredential") == []


def test_shared_never_imports_functions_or_durable():
    modules = sorted(SHARED.rglob("*.py"))
    assert modules, "no modules found under shared/"
    offenders = {
        str(path.relative_to(SHARED.parent)): problems
        for path in modules
        if (problems := forbidden_imports(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}
