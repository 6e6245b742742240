"""Bad answers are refused with a message saying what is allowed, before anything is written."""

from __future__ import annotations

import shutil
from contextvars import ContextVar
from pathlib import Path

import pytest
from by_path import import_file, template_validators
from conftest import TEMPLATE, copy_template, tree_snapshot
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
    pytest.param({"infrastructure": "terraform"}, "Invalid choice", id="bad-infrastructure"),
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
    template = one_question_template(
        tmp_path,
        "default: billing",
        "validator: \"{{ name | package_exists_problem('nt', _copier_conf.dst_path) }}\"",
    )

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


# --------------------------------------------------------------------------- package names


VALIDATORS = template_validators()
PACKAGE_NAME_MAX_LENGTH = VALIDATORS.PACKAGE_NAME_MAX_LENGTH


@pytest.fixture(scope="module")
def rendered_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A rendered repo (no tasks: the package kind needs only its .copier-answers.yml)."""
    repo = copy_template(tmp_path_factory.mktemp("names") / "repo", tasks=False)
    (repo / ".copier").mkdir()
    # An answers file left behind by a package whose folder is gone still holds the name.
    (repo / ".copier" / "package-orphan.yml").write_text("package_name: orphan\n")
    return repo


def add(repo: Path, name: str) -> Path:
    return copy_template(
        repo, tasks=False, template_kind="package", package_name=name, package_type="library"
    )


@pytest.mark.parametrize(
    ("name", "message"),
    [
        pytest.param("nt_billing", "'nt_billing' would create nt_nt_billing", id="prefix-again"),
        pytest.param("a" * 250, "has 250", id="250-characters"),
        pytest.param("a" * (PACKAGE_NAME_MAX_LENGTH + 1), "at most 40", id="cap-plus-one"),
        pytest.param("orphan", ".copier/package-orphan.yml already exists", id="answers-exist"),
        pytest.param("x;echo hi >f;:", "not a valid package name", id="shell"),
    ],
)
def test_bad_package_name_is_refused_by_copier(rendered_repo: Path, name: str, message: str) -> None:
    """A `copier copy --data template_kind=package` typed by hand gets the rules that
    `make new-package` checks first."""
    before = tree_snapshot(rendered_repo)
    with pytest.raises(ValueError) as refused:
        add(rendered_repo, name)
    assert message in str(refused.value)
    assert tree_snapshot(rendered_repo) == before


def test_package_name_of_the_cap_length_is_accepted(rendered_repo: Path) -> None:
    name = "b" * PACKAGE_NAME_MAX_LENGTH
    add(rendered_repo, name)
    assert (rendered_repo / f"src/nt_{name}/nt_{name}/core.py").is_file()
    assert (rendered_repo / f".copier/package-{name}.yml").is_file()


def test_both_sides_hold_the_same_package_name_rules(render) -> None:
    """The cap and the rules live once in extensions/validators.py (Copier) and once in the
    generated scripts/new_package.py (make, before Copier starts): they must agree."""
    validators = VALIDATORS
    repo = render()
    check = import_file(repo / "scripts/new_package.py", "new_package", repo / "scripts")
    assert check.NAME_MAX_LENGTH == validators.PACKAGE_NAME_MAX_LENGTH
    assert check.IDENTIFIER_RE.pattern == validators.IDENTIFIER_RE.pattern
    cap = validators.PACKAGE_NAME_MAX_LENGTH
    names = ["billing", "nt_billing", "nt", "Billing", "1abc", "class", "match", "a" * cap,
             "a" * (cap + 1), "x;echo hi >f;:", "etl__jobs", ""]
    for name in names:
        refused_by_copier = bool(validators.package_name_problem(name, "nt"))
        refused_by_make = bool(check.name_problem(name, "nt"))
        assert refused_by_copier == refused_by_make, name
    assert f"at most {cap} characters" in (repo / "README.md").read_text()


def test_names_refused_today_still_update(tmp_path: Path) -> None:
    """A package added before the prefix and length rules keeps updating: Copier replays its
    stored answers through the same validator, which refuses such names on copy only."""
    template = one_question_template(
        tmp_path, "validator: \"{{ name | package_name_problem('nt') }}\""
    )

    options = {"defaults": True, "unsafe": True, "quiet": True}
    repo = tmp_path / "repo"
    with pytest.raises(ValueError, match="would create nt_nt_billing"):
        run_copy(str(template), repo, data={"name": "nt_billing"}, **options)
    run_copy(str(template), repo, data={"name": "billing"}, **options)
    # As a repo from before the rule records it.
    answers = repo / ".copier-answers.yml"
    answers.write_text(answers.read_text().replace("name: billing", "name: nt_billing"))
    git(repo, "init", "--quiet", "--initial-branch=main")
    commit_all(repo, "generated before the rule")

    (template / "version.txt").write_text("2\n")
    commit_all(template, "2.0.0")
    git(template, "tag", "2.0.0")
    run_update(repo, overwrite=True, **options)
    assert (repo / "version.txt").read_text() == "2\n", "the update went through"
    assert "name: nt_billing" in answers.read_text()


def one_question_template(tmp_path: Path, *question: str) -> Path:
    """A template tagged 1.0.0 with this repo's validators and one question, `name`, whose
    settings are the given YAML lines: Copier replays it on update like the real one."""
    template = tmp_path / "template"
    (template / "extensions").mkdir(parents=True)
    shutil.copy(TEMPLATE / "extensions" / "validators.py", template / "extensions")
    settings = "".join(f"\n  {line}" for line in question)
    (template / "copier.yml").write_text(
        "_jinja_extensions:\n"
        "  - copier_template_extensions.TemplateExtensionLoader\n"
        "  - extensions/validators.py:AnswerValidators\n"
        "_exclude: [extensions, copier.yml, .git]\n"
        f"name:\n  type: str{settings}\n"
    )
    (template / "{{ _copier_conf.answers_file }}.jinja").write_text(
        "{{ _copier_answers|to_nice_yaml }}"
    )
    (template / "version.txt").write_text("1\n")
    git(template, "init", "--quiet", "--initial-branch=main")
    commit_all(template, "1.0.0")
    git(template, "tag", "1.0.0")
    return template
