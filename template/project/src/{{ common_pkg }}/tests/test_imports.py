"""Import every module of this package.

A module that fails to import (a dependency the package never declared, a syntax error, a
circular import) fails here, before anything is packaged or deployed. The package is found
from this file's place: src/<package>/tests/test_imports.py tests src/<package>/<package>/.

Every .py file under that folder counts, including those in folders without an __init__.py
(which pkgutil's walk would skip); hidden files and folders and __pycache__ do not.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parents[1]
PACKAGE_DIR = PROJECT_DIR / PROJECT_DIR.name


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PROJECT_DIR).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> list[str]:
    found = []
    for path in PACKAGE_DIR.rglob("*.py"):
        parts = path.relative_to(PACKAGE_DIR).parts
        if any(part.startswith(".") or part == "__pycache__" for part in parts):
            continue
        found.append(module_name(path))
    return sorted(found)


@pytest.mark.parametrize("module", all_modules())
def test_module_imports(module: str) -> None:
    if not all(part.isidentifier() for part in module.split(".")):
        pytest.fail(f"{module}: not an importable module name (rename the file or folder)")
    importlib.import_module(module)
