# /// script
# requires-python = ">=3.11"
# ///
"""Decide what a release builds: JSON ``{"ecs": [...], "lambda": [...]}`` for CD's matrices.

Each entry is ``{"package": <folder under src/>, "version": <its pyproject version>}``.

    uv run scripts/release_plan.py --tag nt_api/v0.3.1   one package; the tag must match
                                                         its pyproject.toml version
    uv run scripts/release_plan.py --tag v2026.11.0      every deployable package
    uv run scripts/release_plan.py --packages "nt_api"   a manual run (blank: all)
"""

from __future__ import annotations

import argparse
import json
import sys

import monorepo


def plan(packages: dict[str, monorepo.Package], selected: list[str]) -> dict[str, list]:
    result: dict[str, list] = {"ecs": [], "lambda": []}
    for name in selected:
        pkg = packages[name]
        if pkg.deploy in result:
            result[pkg.deploy].append({"package": pkg.dir_name, "version": pkg.version})
    return result


def select(packages: dict[str, monorepo.Package], tag: str | None, names: str | None) -> list[str]:
    if tag and "/" in tag:
        name, _, version = tag.partition("/")
        if name not in packages:
            sys.exit(f"release: tag {tag!r} names no package under src/")
        if version.removeprefix("v") != packages[name].version:
            sys.exit(
                f"release: tag {tag!r} does not match {name} version "
                f"{packages[name].version!r} in its pyproject.toml"
            )
        return [name]
    chosen = (names or "").split()
    unknown = sorted(set(chosen) - set(packages))
    if unknown:
        sys.exit(f"release: no such package: {', '.join(unknown)}")
    return chosen or sorted(packages)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", help="the pushed tag (GITHUB_REF_NAME)")
    parser.add_argument("--packages", help="space-separated package folders; blank for all")
    args = parser.parse_args(argv)
    packages = monorepo.discover()
    print(json.dumps(plan(packages, select(packages, args.tag, args.packages))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
