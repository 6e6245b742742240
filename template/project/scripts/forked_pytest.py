"""Run pytest for many packages, each in its own environment, from one process.

    src/<pkg>/.venv/bin/python scripts/forked_pytest.py      (started by every_package.py)

Starting Python and importing pytest, pytest-cov and coverage costs about 0.3 s of CPU, more
than a small package's tests take. This process pays it once: it imports them from the
environment it was started in, then reads requests, one JSON line each on stdin:

    {"venv": ".../src/<pkg>/.venv", "folder": ".../src/<pkg>", "args": [...], "output": FILE}

and forks a child per request that becomes that package's pytest run, as
`cd <folder> && . <venv>/bin/activate && pytest <args>` would start it: sys.path is the
environment's bin folder, the standard library and the environment's site-packages (its .pth
files run); sys.prefix and sys.executable name that environment; VIRTUAL_ENV and PATH are
set as activate sets them. Its output goes to FILE. The answer is one JSON line,
{"exit": <pytest's exit code>}, or {"refused": <why>} when the child could not be that run,
and the caller then starts pytest as a process of its own. It refuses when the environment's
interpreter is not this one, or when a distribution this process loaded a module from is
not installed there with the same files (RECORD): the modules loaded here are then exactly
the ones the package's own pytest would load. Each child starts from this clean process, so
nothing one package's tests import or change reaches another's.
"""

from __future__ import annotations

import gc
import importlib
import importlib.metadata
import inspect
import json
import linecache
import os
import re
import site
import sys
import sysconfig
import traceback
from pathlib import Path

import _pytest.config
import coverage  # noqa: F401  (pytest-cov loads these in every run: imported once here)
import pytest
import pytest_cov.plugin  # noqa: F401

# What every run does the same way, done once here: import pytest's own plugins (getattr: a
# private name, which a later pytest may change), and read the source of the modules loaded
# (coverage reads its caller's stack, with each frame's source line, whenever it starts).
for plugin in getattr(_pytest.config, "default_plugins", ()):
    importlib.import_module(f"_pytest.{plugin}")
for module in list(sys.modules.values()):
    if getattr(module, "__file__", None):
        linecache.getlines(module.__file__)
inspect.stack()  # fills inspect's cache of which module each file is

HERE = Path(sys.prefix)
SITE_PACKAGES = sysconfig.get_path("purelib")
# What python puts before site-packages: PYTHONPATH and the standard library. A child keeps
# these, so a module loaded from them here is the one it would load.
BEFORE_SITE = sys.path[1 : sys.path.index(SITE_PACKAGES)]
SHARED = tuple(os.path.join(os.path.abspath(p), "") for p in BEFORE_SITE if p)


def normalize(name: str) -> str:
    """A distribution name as its .dist-info folder spells it."""
    return re.sub(r"[-_.]+", "_", name).lower()


def record(dist_info: Path | None) -> list[str] | None:
    """A distribution's installed files and their hashes, without the scripts in bin/
    (their first line names the environment)."""
    if dist_info is None:
        return None
    lines = (dist_info / "RECORD").read_text().splitlines()
    return sorted(line for line in lines if not line.startswith("../"))


def dist_infos(site_packages: str | Path) -> dict[str, Path]:
    return {normalize(p.name.split("-")[0]): p for p in Path(site_packages).glob("*.dist-info")}


def loaded_distributions() -> dict[str, list[str] | None]:
    """Every distribution this process loaded a module from: its name -> RECORD; None for a
    module that is neither the standard library's nor an installed distribution's, and for an
    import hook (a .pth file may install one): no child can be equivalent then."""
    owners = importlib.metadata.packages_distributions()
    found = dist_infos(SITE_PACKAGES)
    loaded: dict[str, list[str] | None] = {}
    for finder in sys.meta_path:
        if not getattr(finder, "__module__", "").startswith("_frozen_importlib"):
            loaded[f"(import hook {finder!r})"] = None
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if not file or module is sys.modules["__main__"] or file.startswith(SHARED):
            continue
        inside = file.startswith(SITE_PACKAGES + os.sep)
        top = Path(file).relative_to(SITE_PACKAGES).parts[0] if inside else ""
        dists = owners.get(top.removesuffix(".py"), []) if top else []
        for dist in dists:
            loaded[dist] = record(found.get(normalize(dist)))
        if not dists:
            loaded[f"(module {name})"] = None
    return loaded


def interpreter(venv: Path) -> tuple[str, str]:
    config = dict(
        line.split("=", 1) for line in (venv / "pyvenv.cfg").read_text().splitlines() if "=" in line
    )
    return config.get("home", "").strip(), config.get("version_info", "").strip()


LOADED = loaded_distributions()
THIS_INTERPRETER = interpreter(HERE)


def refusal(venv: Path) -> str | None:
    """Why a child could not be the package's own pytest run in `venv`, or None."""
    shown = os.path.relpath(venv)
    if interpreter(venv) != THIS_INTERPRETER:
        return f"{shown} has another interpreter"
    (site_packages,) = venv.glob("lib/python*/site-packages")
    theirs = dist_infos(site_packages)
    for name, files in LOADED.items():
        if files is None or record(theirs.get(normalize(name))) != files:
            return f"{shown} does not hold the {name} this process loaded"
    return None


def become(venv: Path, folder: str, args: list[str], output: str) -> int:
    """In the forked child: turn into `pytest <args>` of `venv`, started in `folder`."""
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    (site_packages,) = venv.glob("lib/python*/site-packages")
    sys.path[:] = [str(venv / "bin"), *BEFORE_SITE]
    sys.path_importer_cache.clear()
    site.addsitedir(str(site_packages))
    importlib.invalidate_caches()
    sys.prefix = sys.exec_prefix = str(venv)
    sys.executable = str(venv / "bin" / "python")
    sys.argv = [str(venv / "bin" / "pytest"), *args]
    # As `. .venv/bin/activate` (ci.activated) sets them.
    os.environ["VIRTUAL_ENV"] = str(venv)
    os.environ["PATH"] = f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    os.chdir(folder)
    return int(pytest.main(args))


def serve() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        venv = Path(request["venv"])
        why = refusal(venv)
        if why:
            answer: dict[str, object] = {"refused": why}
        else:
            sys.stdout.flush()
            # What this process holds is never freed: the child's collections skip it.
            gc.freeze()
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    code = become(venv, request["folder"], request["args"], request["output"])
                except BaseException:
                    traceback.print_exc()
                finally:
                    sys.stdout.flush()
                    sys.stderr.flush()
                    os._exit(code)
            answer = {"exit": os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    try:
        serve()
    except KeyboardInterrupt:  # Ctrl-C reached the running child too; it reports.
        sys.exit(130)
