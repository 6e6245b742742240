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
import re
import sys

import monorepo

# PEP 440's canonical public versions (its appendix, without local versions: ECR tags and S3
# keys are named by the version, and `+` is not a tag character). upload_all.py and the
# runtime compare versions in this form, so a release in any other spelling (`1.0-rc1`,
# `v1.0`, `1.0+local`) would be published under a name they do not find.
CANONICAL = re.compile(
    r"([1-9][0-9]*!)?(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*"
    r"((a|b|rc)(0|[1-9][0-9]*))?(\.post(0|[1-9][0-9]*))?(\.dev(0|[1-9][0-9]*))?"
)


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


def check_versions(packages: dict[str, monorepo.Package], selected: list[str]) -> None:
    """Stop, before anything is built, on a deployable package whose version is not canonical.

    Raises SystemExit naming every such package and its pyproject.toml version.
    """
    bad = [
        f"{name} has version {packages[name].version!r}"
        for name in selected
        if packages[name].deploy in ("ecs", "lambda")
        and not CANONICAL.fullmatch(packages[name].version or "")
    ]
    if bad:
        sys.exit(
            "release: not a canonical PEP 440 version (like 1.2.0, 1.2.0rc1, 1.2.0.post1): "
            + "; ".join(bad)
            + ". Write it that way in the package's pyproject.toml."
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", help="the pushed tag (GITHUB_REF_NAME)")
    parser.add_argument("--packages", help="space-separated package folders; blank for all")
    args = parser.parse_args(argv)
    packages = monorepo.discover()
    selected = select(packages, args.tag, args.packages)
    check_versions(packages, selected)
    print(json.dumps(plan(packages, selected)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
