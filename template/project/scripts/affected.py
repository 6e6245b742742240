# /// script
# requires-python = ">=3.11"
# ///
"""Print, as a JSON list, the packages a change since a git base ref affects.

A package is affected when a file under its own ``src/<pkg>/`` folder changed, or when it
depends (transitively) on an affected package. A change to a repository-wide file (see
``monorepo.GLOBAL_PATHS``) affects every package; any other change (docs, say) affects
none. CI feeds the list to a job matrix, which the workflow skips when it is ``[]``.

With ``--deploy`` it prints ``true`` or ``false`` instead: whether the change can affect the
deploy scripts' own tests (``tests/deploy/``, see ``DEPLOY_PATHS``); CI runs them only then.

    uv run scripts/affected.py --base origin/main
    uv run scripts/affected.py --all
    uv run scripts/affected.py --base origin/main --deploy
    uv run scripts/affected.py --base origin/main --deploy-kind lambda

``--deploy-kind ecs|lambda|library`` keeps only the affected packages of that kind (as
``monorepo.discover`` tells them apart): CI invokes the affected Lambda functions' images.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import monorepo

# What the deploy tests (tests/deploy/) test and run with: the scripts and docker/ (run_venv.py
# and the runtime's requirements), the tests, the workflow that runs them, and the root
# project and lock that give them pytest.
DEPLOY_PATHS = (
    "docker/",
    "scripts/",
    "tests/deploy/",
    ".github/workflows/",
    "pyproject.toml",
    "uv.lock",
    ".python-version",
)


def changed_files(base: str, root: Path) -> list[str] | None:
    """Files changed between the merge base of ``base`` and HEAD, or None if unknown."""

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)

    merge_base = git("merge-base", base, "HEAD")
    if merge_base.returncode != 0:
        return None
    # --no-renames: a moved file counts at its old place and its new one.
    # -z: paths come unquoted, whatever characters they hold.
    diff = git("diff", "--name-only", "-z", "--no-renames", merge_base.stdout.strip(), "HEAD")
    if diff.returncode != 0:
        return None
    return [name for name in diff.stdout.split("\0") if name]


def affected(files: list[str], packages: dict[str, monorepo.Package]) -> set[str]:
    for path in files:
        for entry in monorepo.GLOBAL_PATHS:
            if path == entry or (entry.endswith("/") and path.startswith(entry)):
                return set(packages)
    touched = {
        parts[1]
        for parts in (path.split("/") for path in files)
        if len(parts) > 2 and parts[0] == "src" and parts[1] in packages
    }
    return monorepo.dependents(packages, touched)


def deploy_affected(files: list[str]) -> bool:
    return any(
        path == entry or (entry.endswith("/") and path.startswith(entry))
        for path in files
        for entry in DEPLOY_PATHS
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--base", help="git ref to compare HEAD with (e.g. origin/main)")
    group.add_argument("--all", action="store_true", help="list every package")
    parser.add_argument(
        "--deploy",
        action="store_true",
        help="print true or false: whether the deploy scripts' tests (tests/deploy/) must run",
    )
    parser.add_argument(
        "--deploy-kind",
        choices=["ecs", "lambda", "library"],
        help="list only the affected packages of this kind",
    )
    args = parser.parse_args(argv)

    root = monorepo.ROOT
    if args.deploy:
        files = None if args.all else changed_files(args.base, root)
        # No usable base (a first push, a shallow clone): run them rather than not.
        print("true" if files is None or deploy_affected(files) else "false")
        return 0
    packages = monorepo.discover(root)
    if args.all:
        result = set(packages)
    else:
        files = changed_files(args.base, root)
        if files is None:
            # A first push or a shallow clone has no usable base: test everything rather
            # than nothing.
            print(
                f"affected: cannot diff against {args.base!r}; listing every package",
                file=sys.stderr,
            )
            result = set(packages)
        else:
            result = affected(files, packages)
    if args.deploy_kind:
        result = {name for name in result if packages[name].deploy == args.deploy_kind}
    print(json.dumps(sorted(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
