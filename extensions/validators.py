"""Answer checks shared by copier.yml validators.

Each filter returns an empty string for a good value and a message saying what is allowed
otherwise, which is what a Copier validator expects.
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path
from typing import Any

from jinja2 import Environment
from jinja2.ext import Extension

IDENTIFIER_RE = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")
BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
REGION_RE = re.compile(r"[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d")


def _identifier_problem(value: str, what: str, examples: str) -> str:
    if not IDENTIFIER_RE.fullmatch(value or ""):
        return (
            f"'{value}' is not a valid {what}: use lowercase letters and digits, starting with a "
            f"letter, words joined by single underscores (no capitals, dashes or leading digits), "
            f"e.g. {examples}."
        )
    if keyword.iskeyword(value) or keyword.issoftkeyword(value):
        return f"'{value}' is a Python keyword; choose another {what}."
    return ""


# The prefix is also the settings loader's environment namespace (`<PREFIX>_*`, see the common
# package's settings.py). These namespaces belong to AWS, the CI runner or the tools, and carry
# credentials (AWS_SECRET_ACCESS_KEY, ACTIONS_ID_TOKEN_REQUEST_TOKEN) or change how the tools
# behave: a prefix starting with one would collect them as settings. settings.py skips them too.
RESERVED_ENV_NAMESPACES = {
    "aws": "AWS credentials and configuration (AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN)",
    "amazon": "AWS runtime variables",
    "ecs": "variables the ECS agent sets (ECS_CONTAINER_METADATA_URI)",
    "lambda": "variables the Lambda runtime sets (LAMBDA_TASK_ROOT)",
    "github": "GitHub Actions variables and tokens (GITHUB_TOKEN)",
    "actions": "GitHub Actions tokens (ACTIONS_ID_TOKEN_REQUEST_TOKEN)",
    "runner": "GitHub Actions runner variables",
    "uv": "uv's configuration",
    "pip": "pip's configuration",
    "python": "the interpreter's configuration",
    "pytest": "pytest's configuration",
    "docker": "Docker's configuration",
    "git": "git's configuration",
    "ssh": "the SSH agent",
    "ld": "the dynamic loader (LD_PRELOAD)",
    "lc": "the locale",
    "xdg": "standard directories",
}


def prefix_problem(value: str) -> str:
    problem = _identifier_problem(value, "prefix", "'nt' or 'acme_data'")
    first_word = (value or "").split("_")[0]
    if not problem and first_word in RESERVED_ENV_NAMESPACES:
        problem = (
            f"'{value}' is not allowed as a prefix: settings are read from "
            f"{value.upper()}_* environment variables, and {first_word.upper()}_* belongs to "
            f"{RESERVED_ENV_NAMESPACES[first_word]}. Choose another prefix, e.g. "
            f"'{first_word}x' or 'acme'."
        )
    return problem


# The longest package name. Every file name the package kind writes is built from it, and each
# path component must fit the filesystem's NAME_MAX (255 on ext4, APFS and NTFS). The longest
# are `src/<prefix>_<name>/` (folder and module), `.copier/package-<name>.yml` and the files uv
# and CD name after `<prefix>_<name>`: the wheel `<prefix>_<name>-<version>-py3-none-any.whl`
# (19 characters besides prefix, name and version), its `.dist-info` folder, the venv tarball
# `<prefix>_<name>__venv_<version>.tar.gz`. 40 leaves prefix and version together about 190
# characters, and a 40-character import name is already a lot to type. Without a cap, a
# 250-character name wrote half a package, then failed on package-<name>.yml (ENAMETOOLONG).
# The generated repo's `make new-package` checks the same rules before Copier starts, with its
# own copy (template/project/scripts/new_package.py, NAME_MAX_LENGTH); tests/test_validation.py
# checks that the two agree.
PACKAGE_NAME_MAX_LENGTH = 40


def package_name_problem(value: str, prefix: str) -> str:
    """A name that is no identifier, a keyword, the prefix typed again or too long.

    The last two rules came after packages may have been added with such names: they refuse a
    new package only, so `copier update` still replays an existing one's answers.
    """
    problem = _identifier_problem(value, "package name", "'billing' or 'etl_jobs'")
    if problem or copier_operation() != "copy":
        return problem
    if value.startswith(f"{prefix}_"):
        return (
            f"'{value}' would create {prefix}_{value}: the prefix '{prefix}_' is added for you; "
            f"use '{value.removeprefix(prefix + '_')}'."
        )
    if len(value) > PACKAGE_NAME_MAX_LENGTH:
        return (
            f"A package name has at most {PACKAGE_NAME_MAX_LENGTH} characters, and this one has "
            f"{len(value)}: file names such as .copier/package-<name>.yml are built from it."
        )
    return ""


def targets_problem(value: list[str]) -> str:
    # Copier's own choice check rejects unknown targets; only "none at all" is left to say.
    if not value:
        return "Choose at least one deploy target: 'ecs', 'lambda' or both."
    return ""


def bucket_problem(value: str) -> str:
    if not BUCKET_RE.fullmatch(value or "") or ".." in value:
        return (
            f"'{value}' is not a valid S3 bucket name: 3 to 63 lowercase letters, digits, dots "
            "or dashes, starting and ending with a letter or digit."
        )
    return ""


def region_problem(value: str) -> str:
    if not REGION_RE.fullmatch(value or ""):
        return f"'{value}' does not look like an AWS region name, e.g. 'eu-west-1' or 'us-east-1'."
    return ""


def copier_operation() -> str:
    """`copy` or `update`; during an update's replay of the old version too.

    A destination check must not fire while updating the very package it would find, and
    Copier has no public way to tell validators which run they are in (checked in Copier's
    source at 9.19.1): `_copier_operation` reaches tasks, migrations and exclusions only;
    questions render with `Worker._render_context()`, whose `_copier_conf` names no operation
    (an update's last render is a copy into the real destination). So this reads Copier's
    private contextvar, which `run_copy`/`run_update` set; tests/test_validation.py fails by
    name if Copier drops it.
    """
    try:
        from copier._main import _operation
    except ImportError as error:
        # Loud: guessing "copy" would refuse every package update with a wrong message.
        raise RuntimeError(
            "copier-uv-monorepo tells a copy from an update by Copier's private "
            "copier._main._operation (checked with Copier 9.19.1), and this Copier has none: "
            "run the Copier version that README.md and the generated Makefile pin"
        ) from error
    return _operation.get("copy")


def from_repo(external_data: Any, key: str, kind: str) -> Any:
    """An answer of the repo a package is added to; "" for the project kind.

    Only the package kind's copy reads the repo's answers file: Copier warns when it is
    missing, as it always is when a project is first generated, and while an update replays a
    package alone in a scratch folder (where the stored answers apply anyway).
    """
    if kind != "package" or copier_operation() != "copy":
        return ""
    return (external_data["repo"] or {}).get(key, "")


def generated_repo_problem(kind: str, external_data: Any) -> str:
    if kind != "package" or copier_operation() != "copy":
        return ""
    if not from_repo(external_data, "package_prefix", kind):
        return (
            "Adding a package needs a repo generated by copier-uv-monorepo: run this at the root "
            "of such a repo (where its .copier-answers.yml is)."
        )
    return ""


def package_target_problem(package_type: str, external_data: Any, kind: str) -> str:
    """An ecs or lambda package needs its target's Dockerfile and CD path in the repo."""
    if kind != "package" or package_type not in ("ecs", "lambda") or copier_operation() != "copy":
        return ""
    targets = list(from_repo(external_data, "deploy_targets", kind) or [])
    if not targets or package_type in targets:
        return ""
    wanted = ",".join(sorted({*targets, package_type}))
    return (
        f"This repo was generated without the '{package_type}' deploy target, so it has no "
        f"Dockerfile or CD path for a {package_type} package; nothing was written. Add the "
        f'target first with `make update DATA="-d deploy_targets=[{wanted}]"` (commit your '
        "work before), then add the package again."
    )


def package_exists_problem(name: str, prefix: str, destination: Any) -> str:
    """A package folder or answers file of that name; checked after package_name_problem, so
    the name is short enough to look up."""
    if copier_operation() != "copy":
        return ""
    for path in (f"src/{prefix}_{name}", f".copier/package-{name}.yml"):
        if (Path(str(destination)) / path).exists():
            return f"{path} already exists; choose another package name."
    return ""


class AnswerValidators(Extension):
    """Register the checks above as Jinja filters; the reserved namespaces (for settings.py) and
    the package name cap (for README.md) as globals."""

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        # The generated settings loader skips the very namespaces a prefix may not use.
        environment.globals["reserved_env_namespaces"] = list(RESERVED_ENV_NAMESPACES)
        # The generated README states the cap.
        environment.globals["package_name_max_length"] = PACKAGE_NAME_MAX_LENGTH
        environment.filters.update(
            prefix_problem=prefix_problem,
            package_name_problem=package_name_problem,
            package_exists_problem=package_exists_problem,
            package_target_problem=package_target_problem,
            generated_repo_problem=generated_repo_problem,
            from_repo=from_repo,
            targets_problem=targets_problem,
            bucket_problem=bucket_problem,
            region_problem=region_problem,
        )
