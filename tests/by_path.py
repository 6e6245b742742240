"""Import a Python file by its path: the template's extensions and a generated repo's scripts
are no installed packages."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

TEMPLATE = Path(__file__).resolve().parents[1]


def import_file(path: Path, name: str, imports_from: Path | None = None) -> ModuleType:
    """The module in `path`. `imports_from` is the folder its own imports come from (a
    generated script imports its sibling modules); those are forgotten afterwards, so the next
    rendered repo's scripts are imported afresh."""
    before = set(sys.modules)
    if imports_from:
        sys.path.insert(0, str(imports_from))
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec and spec.loader, path
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        if imports_from:
            sys.path.remove(str(imports_from))
            for loaded in set(sys.modules) - before:
                if str(getattr(sys.modules[loaded], "__file__", "")).startswith(str(imports_from)):
                    del sys.modules[loaded]
    return module


def template_validators() -> ModuleType:
    """extensions/validators.py, the answer checks Copier runs."""
    return import_file(TEMPLATE / "extensions/validators.py", "template_validators")
