"""Answer checks shared by copier.yml validators.

Each filter returns an empty string for a good value and a message saying what is allowed
otherwise, which is what a Copier validator expects.
"""

from __future__ import annotations

import keyword
import re

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


def prefix_problem(value: str) -> str:
    return _identifier_problem(value, "prefix", "'nt' or 'acme_data'")


def package_name_problem(value: str) -> str:
    return _identifier_problem(value, "package name", "'billing' or 'etl_jobs'")


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


class AnswerValidators(Extension):
    """Register the checks above as Jinja filters."""

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        environment.filters.update(
            prefix_problem=prefix_problem,
            package_name_problem=package_name_problem,
            targets_problem=targets_problem,
            bucket_problem=bucket_problem,
            region_problem=region_problem,
        )
