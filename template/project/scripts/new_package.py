# /// script
# requires-python = ">=3.11"
# dependencies = ["pyyaml==6.0.3"]
# ///
"""Check a new package's NAME and TYPE before Copier starts (`make new-package`).

    uv run scripts/new_package.py billing library

Prints `ok`, or the one line that refuses them, and writes nothing. The refusal is this
script's answer, so it goes to stdout: the Makefile captures it and stops make with it as its
only line (exit code 2). Copier's own validators hold the same rules for a `copier copy` typed
by hand, but a refusal from Copier comes as a traceback after seconds of start-up, and a name
too long for the filesystem used to fail halfway through writing the package.
"""

from __future__ import annotations

import keyword
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import answers
import monorepo

# The template's copy of these rules is extensions/validators.py (PACKAGE_NAME_MAX_LENGTH, the
# package_name question's checks); tests/test_validation.py checks that the two agree.
IDENTIFIER_RE = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")
# Every file name the package kind writes is built from the name (src/<prefix>_<name>/,
# .copier/package-<name>.yml, the wheel and venv tarball of <prefix>_<name>), and each must stay
# under the filesystem's 255-character limit: see extensions/validators.py for the sums.
NAME_MAX_LENGTH = 40
PACKAGE_TYPES = ("library", "ecs", "lambda")
USAGE = "usage: make new-package NAME=<name> TYPE=library|ecs|lambda"


def shown(value: str) -> str:
    """A value as the user could type it again, on one line."""
    return shlex.quote(value) if value.isprintable() else ascii(value)


def name_problem(name: str, prefix: str) -> str:
    """Why NAME cannot name a package, or "" (the rules need nothing but the prefix)."""
    if not IDENTIFIER_RE.fullmatch(name):
        return (
            f"NAME={shown(name)} is not a lowercase identifier: use lowercase letters, digits "
            "and single underscores, starting with a letter (e.g. NAME=billing)"
        )
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        return f"NAME={name} is a Python keyword; choose another name"
    if name.startswith(f"{prefix}_"):
        return (
            f"NAME={name} would create {prefix}_{name}; use NAME={name.removeprefix(prefix + '_')}"
        )
    if len(name) > NAME_MAX_LENGTH:
        return (
            f"NAME has {len(name)} characters; at most {NAME_MAX_LENGTH} are allowed (file names "
            "such as .copier/package-<name>.yml are built from it)"
        )
    return ""


def exists_problem(name: str, prefix: str, root: Path) -> str:
    for path in (f"src/{prefix}_{name}", f".copier/package-{name}.yml"):
        if (root / path).exists():
            return f"{path} already exists; choose another NAME"
    return ""


def type_problem(package_type: str, repo: dict[str, Any]) -> str:
    if package_type not in PACKAGE_TYPES:
        return f"TYPE={shown(package_type)} is not a package type; use TYPE=library, ecs or lambda"
    targets = list(repo.get("deploy_targets") or [])
    if package_type == "library" or not targets or package_type in targets:
        return ""
    wanted = ",".join(sorted({*targets, package_type}))
    return (
        f"This repo was generated without the '{package_type}' deploy target, so it has no "
        f"Dockerfile or CD path for {package_type} packages; add the target first with "
        f'`make update DATA="-d deploy_targets=[{wanted}]"` (commit your work before), then '
        "add the package again"
    )


def problem(name: str, package_type: str, root: Path) -> str:
    """The first reason to refuse, or "": usage, the repo, the name, then the type."""
    if not name:
        return USAGE
    path = root / answers.ANSWERS_FILE
    try:
        repo = answers.load(path)
        prefix = answers.answer(path, "package_prefix", repo)
        # Copier runs from these two next: a relative source is refused here, on one line.
        answers.answer(path, "_src_path", repo)
        answers.answer(path, "_commit", repo)
    except answers.Refused as refusal:
        return str(refusal)
    return (
        name_problem(name, prefix)
        or exists_problem(name, prefix, root)
        or type_problem(package_type, repo)
    )


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(USAGE)
        return 2
    refusal = problem(argv[0], argv[1], monorepo.ROOT)
    print(refusal or "ok")
    return 2 if refusal else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
