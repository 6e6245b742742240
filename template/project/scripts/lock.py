# /// script
# requires-python = ">=3.11"
# ///
"""Refresh every lock file of the repo (`make lock`), and explain a workspace conflict.

    uv run scripts/lock.py

Shared layout: one `uv lock` at the root. Independent layout: the root (dev tooling) and
every package's own project. Then the release script's own lock, where there is one. When the
shared workspace cannot be locked because members need incompatible versions of a library,
uv's error names them; this says which packages they are and that the independent layout lets
each keep its own version. Refused while an update's conflict markers are unresolved (the
files would not parse).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import check_conflicts
import monorepo

# "Because nt-api depends on six==1.17.0 and nt-billing depends on six==1.16.0, ..."
DEPENDS_ON = re.compile(
    r"([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?(?::\w+)? depends on ([^\s,]+)"
)


def local_requirements(packages: dict[str, monorepo.Package]) -> dict[str, set[str]]:
    """Distribution name -> the local distributions its pyproject.toml requires."""
    names = {monorepo.normalize(p.name) for p in packages.values()}
    graph = {}
    for pkg in packages.values():
        project = monorepo.load_toml(pkg.path / "pyproject.toml")
        requirements = monorepo.declared_requirements(project, extras=False)
        required = {monorepo.requirement_name(r) for r in requirements}
        graph[monorepo.normalize(pkg.name)] = required & names
    return graph


def reaches(graph: dict[str, set[str]], start: str, goal: str) -> bool:
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name == goal:
            return True
        if name not in seen:
            seen.add(name)
            todo.extend(graph.get(name, ()))
    return False


def explain(error: str, packages: dict[str, monorepo.Package]) -> str:
    """What a shared-workspace resolution error means for the team, or "" if not a conflict."""
    if "No solution found" not in error:
        return ""
    graph = local_requirements(packages)
    # On a terminal uv wraps and decorates its report; read it as one line.
    error = re.sub(r"[\s│╰─▶×]+", " ", error)
    members: dict[str, list[str]] = {}  # member -> the third-party requirements uv blames
    for who, what in DEPENDS_ON.findall(error):
        who = monorepo.normalize(who)
        if who in graph and monorepo.requirement_name(what) not in graph:
            members.setdefault(who, []).append(what)
    if len(members) < 2:
        return ""
    names = sorted(members)
    blamed = ", ".join(f"{name} needs {' and '.join(members[name])}" for name in names)
    lines = [f"make lock: these packages need incompatible versions: {blamed}."]
    related = [(a, b) for a in names for b in names if a != b and reaches(graph, a, b)]
    if related:
        # A package and what it depends on share an environment in any layout.
        pairs = ", ".join(f"{a} depends on {b}" for a, b in related)
        lines.append(f"They must agree in any layout ({pairs}): align their requirements.")
    else:
        lines.append(
            "One shared workspace holds one version of each library. Align the requirements, or "
            "run `make switch-layout LAYOUT=independent` to give every package its own uv.lock, "
            "so each keeps its own version."
        )
    return "\n".join(lines)


def conflicts_message(problems: list[str]) -> str:
    """Why the locks are not refreshed while an update's conflicts are unresolved."""
    listed = "\n  ".join(problems)
    return (
        f"make lock: unresolved conflicts:\n  {listed}\n"
        "Resolve them (edit each file, keep what both sides need), `git add` the files, then run "
        "`make lock` again and commit."
    )


def main() -> int:
    # A pyproject.toml holding conflict markers would fail to parse below: say what it is.
    problems = check_conflicts.problems()
    if problems:
        print(conflicts_message(problems), file=sys.stderr)
        return 1
    try:
        shared = monorepo.is_shared()
        packages = monorepo.discover()
    except monorepo.InvalidToml as error:
        print(f"make lock: {error}. Fix it, then run `make lock` again.", file=sys.stderr)
        return 1
    projects = ["."] if shared else [".", *(f"src/{name}" for name in sorted(packages))]
    commands = [["uv", "lock", "--directory", project] for project in projects]
    # The infrastructure's own project (infra/, never a workspace member).
    if (monorepo.ROOT / "infra" / "pyproject.toml").is_file():
        commands.append(["uv", "lock", "--directory", "infra"])
    # The release scripts' own locks (CD runs them with `uv run --locked`).
    for script in monorepo.LOCKED_SCRIPTS:
        if (monorepo.ROOT / script).is_file():
            commands.append(["uv", "lock", "--script", script])
    env = {key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"}
    for command in commands:
        result = subprocess.run(
            command,
            cwd=monorepo.ROOT,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
        sys.stderr.write(result.stderr)
        if result.returncode != 0:
            workspace = shared and "--script" not in command
            message = explain(result.stderr, packages) if workspace else ""
            if message:
                print(f"\n{message}", file=sys.stderr)
            return result.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
