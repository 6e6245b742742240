"""Bad answers are refused with a message saying what is allowed, before anything is written."""

from __future__ import annotations

import shutil
import textwrap
from contextvars import ContextVar
from pathlib import Path

import pytest
from conftest import TEMPLATE, copy_template
from copier import run_copy, run_update
from gitrepo import commit_all, git

BAD_ANSWERS = [
    pytest.param({"package_prefix": "Nt"}, "no capitals", id="prefix-capitals"),
    pytest.param({"package_prefix": "my-prefix"}, "no capitals, dashes", id="prefix-dash"),
    pytest.param({"package_prefix": "1nt"}, "leading digits", id="prefix-leading-digit"),
    pytest.param({"package_prefix": "class"}, "Python keyword", id="prefix-keyword"),
    pytest.param({"package_prefix": "match"}, "Python keyword", id="prefix-soft-keyword"),
    pytest.param({"package_prefix": ""}, "not a valid prefix", id="prefix-empty"),
    pytest.param({"package_prefix": "nt__x"}, "single underscores", id="prefix-double-underscore"),
    pytest.param({"package_prefix": "aws"}, "AWS_SECRET_ACCESS_KEY", id="prefix-aws"),
    pytest.param({"package_prefix": "aws_secret"}, "AWS_* belongs to", id="prefix-aws-word"),
    pytest.param({"package_prefix": "github"}, "GITHUB_TOKEN", id="prefix-github"),
    pytest.param({"package_prefix": "uv"}, "uv's configuration", id="prefix-uv"),
    pytest.param({"package_prefix": "python"}, "PYTHON_*", id="prefix-python"),
    pytest.param({"python_version": "3.10"}, "['3.11', '3.12', '3.13', '3.14']", id="python-eol"),
    pytest.param({"python_version": "3.15"}, "['3.11', '3.12', '3.13', '3.14']", id="python-too-new"),
    pytest.param({"ecs_architecture": "amd64"}, "Invalid choice", id="bad-ecs-arch"),
    pytest.param({"lambda_architecture": "aarch64"}, "Invalid choice", id="bad-lambda-arch"),
    pytest.param({"deploy_targets": []}, "at least one deploy target", id="no-targets"),
    pytest.param({"deploy_targets": ["ecs", "k8s"]}, "'k8s' is not in", id="unknown-target"),
    pytest.param({"workspace_layout": "monolith"}, "Invalid choice", id="bad-layout"),
    pytest.param({"artifacts_bucket": "Bad_Bucket"}, "not a valid S3 bucket name", id="bad-bucket"),
    pytest.param({"aws_region": "europe"}, "AWS region", id="bad-region"),
    pytest.param({"project_name": "  "}, "cannot be empty", id="empty-name"),
]


@pytest.mark.parametrize(("answers", "message"), BAD_ANSWERS)
def test_bad_answer_is_refused_and_nothing_is_written(
    tmp_path: Path, answers: dict, message: str
) -> None:
    dst = tmp_path / "repo"
    with pytest.raises(ValueError, match=r".*") as refused:
        copy_template(dst, tasks=True, **answers)
    assert message in str(refused.value)
    assert not dst.exists(), "a refused answer must leave no destination files"


@pytest.mark.parametrize(
    "answers",
    [
        {"package_prefix": "acme_data"},
        {"package_prefix": "x1"},
        {"package_prefix": "awsx"},  # a namespace of its own: AWSX_*
        {"aws_region": "us-gov-west-1"},
        {"artifacts_bucket": "team.artifacts-01"},
    ],
)
def test_good_answers_are_accepted(render, answers: dict) -> None:
    assert (render(**answers) / ".copier-answers.yml").is_file()


def test_validators_still_tell_a_copy_from_an_update(tmp_path: Path) -> None:
    """The package-exists check refuses a copy over an existing package but lets an update of
    it through. Copier 9.19.1 gives validators no public operation, so extensions/validators.py
    reads Copier's private `copier._main._operation`: this fails by name if Copier drops it."""
    import copier._main

    assert isinstance(getattr(copier._main, "_operation", None), ContextVar), (
        "Copier no longer has the private copier._main._operation that "
        "extensions/validators.py:copier_operation reads to tell a copy from an update. "
        "Find what this Copier offers (is `_copier_operation` in the questions' context now?) "
        "and change copier_operation to it."
    )
    template = tmp_path / "template"
    (template / "extensions").mkdir(parents=True)
    shutil.copy(TEMPLATE / "extensions" / "validators.py", template / "extensions")
    (template / "copier.yml").write_text(
        textwrap.dedent(
            """\
            _jinja_extensions:
              - copier_template_extensions.TemplateExtensionLoader
              - extensions/validators.py:AnswerValidators
            _exclude: [extensions, copier.yml, .git]
            name:
              type: str
              default: billing
              validator: "{{ name | package_exists_problem('nt', _copier_conf.dst_path) }}"
            """
        )
    )
    (template / "{{ _copier_conf.answers_file }}.jinja").write_text(
        "{{ _copier_answers|to_nice_yaml }}"
    )
    (template / "version.txt").write_text("1\n")
    git(template, "init", "--quiet", "--initial-branch=main")
    commit_all(template, "1.0.0")
    git(template, "tag", "1.0.0")

    options = {"defaults": True, "unsafe": True, "quiet": True}
    repo = tmp_path / "repo"
    run_copy(str(template), repo, **options)
    (repo / "src" / "nt_billing").mkdir(parents=True)
    (repo / "src" / "nt_billing" / "code.py").write_text("")
    git(repo, "init", "--quiet", "--initial-branch=main")
    commit_all(repo, "generated, and the package written")

    with pytest.raises(ValueError, match="src/nt_billing already exists"):
        run_copy(str(template), repo, overwrite=True, **options)

    (template / "version.txt").write_text("2\n")
    commit_all(template, "2.0.0")
    git(template, "tag", "2.0.0")
    run_update(repo, overwrite=True, **options)
    assert (repo / "version.txt").read_text() == "2\n", "the update went through"
