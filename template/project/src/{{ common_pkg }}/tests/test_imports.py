"""Import every module of this package.

A module that fails to import (a dependency the package never declared, a syntax error, a
circular import) fails here, before anything is packaged or deployed. The package is found
from this file's place: src/<package>/tests/test_imports.py tests the <package> module.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1].name


def all_modules() -> list[str]:
    package = importlib.import_module(PACKAGE)
    found = pkgutil.walk_packages(package.__path__, prefix=f"{PACKAGE}.")
    return [PACKAGE, *sorted(info.name for info in found)]


@pytest.mark.parametrize("module", all_modules())
def test_module_imports(module: str) -> None:
    importlib.import_module(module)
