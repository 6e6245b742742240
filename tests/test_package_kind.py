"""The package kind: `--data template_kind=package` adds one package to a generated repo."""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml
from by_path import template_validators
from conftest import TEMPLATE, copy_template, run, tree_snapshot
from gitrepo import commit_all, git

pytestmark = pytest.mark.slow

PACKAGE_TYPES = ["library", "ecs", "lambda"]


def add_package(repo: Path, name: str, package_type: str = "library", **answers) -> Path:
    data = {"template_kind": "package", "package_name": name, "package_type": package_type}
    return copy_template(repo, tasks=True, **data, **answers)


@pytest.fixture(scope="module", params=["shared", "independent"])
def repo_with_packages(request, tmp_path_factory) -> Path:
    """A generated repo (one per layout) with a package of every type added to it."""
    repo = copy_template(
        tmp_path_factory.mktemp(request.param) / "repo",
        tasks=True,
        workspace_layout=request.param,
        python_version="3.11",
        lambda_architecture="x86_64",
    )
    commit_all(repo, "generated")
    for package_type in PACKAGE_TYPES:
        add_package(repo, f"new_{package_type}", package_type)
    add_package(repo, "standalone", "library", depends_on_common=False)
    return repo


def test_packages_land_in_src_with_their_own_answers(repo_with_packages: Path) -> None:
    repo = repo_with_packages
    root_answers = yaml.safe_load((repo / ".copier-answers.yml").read_text())
    for package_type in PACKAGE_TYPES:
        package = repo / "src" / f"nt_new_{package_type}"
        assert (package / "pyproject.toml").is_file()
        assert (package / "tests" / "test_imports.py").is_file()
        answers = yaml.safe_load((repo / f".copier/package-new_{package_type}.yml").read_text())
        assert answers["template_kind"] == "package"
        assert answers["package_type"] == package_type
        # Inherited from the repo and stored, so an update can replay them without the repo.
        for inherited in ("package_prefix", "python_version", "workspace_layout"):
            assert answers[inherited] == root_answers[inherited]
    lambda_answers = yaml.safe_load((repo / ".copier/package-new_lambda.yml").read_text())
    assert lambda_answers["lambda_architecture"] == "x86_64"
    assert root_answers["template_kind"] == "project", "the root answers are left alone"


def test_type_decides_the_code_skeleton(repo_with_packages: Path) -> None:
    src = repo_with_packages / "src"
    assert (src / "nt_new_library/nt_new_library/core.py").is_file()
    assert (src / "nt_new_ecs/nt_new_ecs/__main__.py").is_file()
    assert (src / "nt_new_lambda/nt_new_lambda/handler.py").is_file()
    assert not (src / "nt_new_library/nt_new_library/handler.py").exists()
    standalone = (src / "nt_standalone/pyproject.toml").read_text()
    assert "nt-common" not in standalone


def test_sync_tests_typecheck_lint_and_locks_pass_after_adding(repo_with_packages: Path) -> None:
    repo = repo_with_packages
    run(["make", "sync"], cwd=repo)
    output = run(["make", "test"], cwd=repo).stdout
    for name in ("nt_new_library", "nt_new_ecs", "nt_new_lambda", "nt_standalone"):
        assert f"== {name}" in output
    assert " failed" not in output
    checked = run(["make", "typecheck"], cwd=repo).stdout
    assert "== nt_new_lambda" in checked and " error" not in checked
    run(["make", "lint"], cwd=repo)
    run(["make", "lock-check"], cwd=repo)
    if (repo / "src/nt_common/uv.lock").exists():
        assert (repo / "src/nt_new_ecs/uv.lock").is_file(), "independent: the package has its own lock"
    else:
        lock = (repo / "uv.lock").read_text()
        assert 'name = "nt-new-ecs"' in lock, "shared: the root lock now holds the package"


def test_new_ecs_package_runs_as_a_module(repo_with_packages: Path) -> None:
    result = run(
        ["uv", "run", "--locked", "--directory", "src/nt_new_ecs", "python", "-m", "nt_new_ecs"],
        cwd=repo_with_packages,
    )
    assert json.loads(result.stdout) == {"job": "nt_new_ecs", "status": "ok"}


@pytest.fixture(scope="module")
def generated_repo(tmp_path_factory) -> Path:
    repo = copy_template(tmp_path_factory.mktemp("refusals") / "repo", tasks=True)
    commit_all(repo, "generated")
    add_package(repo, "billing")
    commit_all(repo, "billing")
    return repo


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("billing", "src/nt_billing already exists"),
        ("common", "src/nt_common already exists"),
        ("Billing", "not a valid package name"),
        ("etl-jobs", "not a valid package name"),
        ("2fa", "not a valid package name"),
        ("import", "Python keyword"),
    ],
)
def test_refusals_change_nothing(generated_repo: Path, name: str, message: str) -> None:
    before = tree_snapshot(generated_repo)
    with pytest.raises(ValueError) as refused:
        add_package(generated_repo, name)
    assert message in str(refused.value)
    assert tree_snapshot(generated_repo) == before


def test_outside_a_generated_repo_is_refused(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("some other project\n")
    before = tree_snapshot(tmp_path)
    with pytest.raises(ValueError, match="needs a repo generated by copier-uv-monorepo"):
        add_package(tmp_path, "billing")
    assert tree_snapshot(tmp_path) == before


def test_make_new_package_uses_the_pinned_copier(template_releases, tmp_path: Path) -> None:
    # The Makefile target as a team runs it: uvx with the pinned Copier, at the repo's template
    # version, with every answer passed (no prompts).
    template_releases.release("0.1.0")
    repo = tmp_path / "repo"
    copy_template(repo, tasks=True, src=template_releases.path, vcs_ref="0.1.0")
    commit_all(repo, "generated")
    run(["make", "new-package", "NAME=reports", "TYPE=ecs"], cwd=repo)
    assert (repo / "src/nt_reports/nt_reports/job.py").is_file()
    answers = yaml.safe_load((repo / ".copier/package-reports.yml").read_text())
    assert answers["_commit"] == "0.1.0"
    assert answers["_src_path"] == str(template_releases.path)
    usage = run(["make", "new-package"], cwd=repo, check=False)
    assert usage.returncode == 2 and "usage: make new-package NAME=" in usage.stderr


def test_copier_pin_of_generated_repos_matches_the_dev_environment() -> None:
    context = (TEMPLATE / "extensions/context.py").read_text()
    assert f'COPIER_VERSION = "{version("copier")}"' in context
    assert f'COPIER_EXTENSIONS_VERSION = "{version("copier-template-extensions")}"' in context


# --------------------------------------------------------------------------- make new-package
# What a team types: the generated Makefile checks NAME and TYPE (scripts/new_package.py)
# before Copier starts, then runs the pinned Copier at the repo's template version.

# The cap both sides hold (tests/test_validation.py checks the generated script's copy).
CAP = template_validators().PACKAGE_NAME_MAX_LENGTH


@pytest.fixture(scope="module")
def made_repo(released_template, tmp_path_factory) -> Path:
    """A repo of the released template without the ecs target (independent layout: a package
    brings its own lock and venv, the deepest paths), one package added with make, and the
    answers file of a package whose folder was deleted."""
    repo = copy_template(
        tmp_path_factory.mktemp("made") / "repo",
        tasks=True,
        src=released_template.path,
        vcs_ref="0.1.0",
        deploy_targets=["lambda"],
        workspace_layout="independent",
        python_version="3.11",
    )
    commit_all(repo, "generated")
    run(["make", "new-package", "NAME=reports"], cwd=repo)
    answers = (repo / ".copier/package-reports.yml").read_text()
    (repo / ".copier/package-orphan.yml").write_text(answers.replace("reports", "orphan"))
    commit_all(repo, "reports, and orphan's answers")
    return repo


def make_new_package(repo: Path, name: str, package_type: str = "library"):
    # No shell between the test and make: NAME reaches make exactly as typed.
    return run(["make", "new-package", f"NAME={name}", f"TYPE={package_type}"], cwd=repo, check=False)


def assert_refused_cleanly(repo: Path, result, message: str) -> None:
    assert result.returncode == 2, result
    assert result.stdout == "", result.stdout
    # The refusal is make's only line: `Makefile:<n>: *** <message>.  Stop.` (make's $(error)).
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not (repo / "f").exists() and not (repo / "pwned").exists(), "a name was run as code"
    assert git(repo, "status", "--porcelain") == "", "a refusal must write nothing"


@pytest.mark.parametrize(
    ("name", "package_type", "message"),
    [
        pytest.param(
            "nt_billing", "library", "NAME=nt_billing would create nt_nt_billing; use NAME=billing",
            id="prefix-typed-again",
        ),
        pytest.param("x;echo hi >f;:", "library", "NAME='x;echo hi >f;:' is not a lowercase", id="shell"),
        pytest.param("$(shell touch pwned)", "library", "is not a lowercase identifier", id="make-shell"),
        pytest.param("a" * 250, "library", "NAME has 250 characters; at most 40", id="250-chars"),
        pytest.param("a" * (CAP + 1), "library", f"NAME has {CAP + 1} characters", id="cap-plus-one"),
        pytest.param("Billing", "library", "NAME=Billing is not a lowercase identifier", id="capital"),
        pytest.param("class", "library", "NAME=class is a Python keyword", id="keyword"),
        pytest.param("1abc", "library", "NAME=1abc is not a lowercase identifier", id="leading-digit"),
        pytest.param("reports", "library", "src/nt_reports already exists", id="package-exists"),
        pytest.param("orphan", "library", ".copier/package-orphan.yml already exists", id="answers-exist"),
        pytest.param("jobs", "web", "TYPE=web is not a package type", id="unknown-type"),
        pytest.param("jobs", "x;echo hi >f;:", "TYPE='x;echo hi >f;:' is not a package", id="shell-type"),
        pytest.param("jobs", "ecs", "without the 'ecs' deploy target", id="missing-target"),
        pytest.param("", "library", "usage: make new-package NAME=<name>", id="no-name"),
    ],
)
def test_make_refuses_bad_names_in_one_line_and_writes_nothing(
    made_repo: Path, name: str, package_type: str, message: str
) -> None:
    assert_refused_cleanly(made_repo, make_new_package(made_repo, name, package_type), message)


def test_make_code_in_name_or_type_never_runs_in_any_target(made_repo: Path) -> None:
    """make exports command-line variables to every recipe, expanding them on the way: the
    Makefile unexports NAME and TYPE, so even `make help` leaves them as text."""
    code = "$(shell touch pwned)"
    run(["make", "help", f"NAME={code}", f"TYPE={code}"], cwd=made_repo)
    assert not (made_repo / "pwned").exists()


def test_update_package_never_runs_name_as_shell_code(made_repo: Path) -> None:
    """`make update-package NAME=...` quotes NAME like new-package: shell text is refused by
    scripts/update.py as an unknown package, and nothing runs."""
    result = run(["make", "update-package", 'NAME=x";touch f;echo "'], cwd=made_repo, check=False)
    assert result.returncode != 0
    assert "make update-package NAME=<name>" in result.stdout + result.stderr
    assert not (made_repo / "f").exists(), "NAME was run as code"
    assert git(made_repo, "status", "--porcelain") == ""


def test_missing_target_refusal_gives_the_command_that_adds_it(made_repo: Path) -> None:
    refused = make_new_package(made_repo, "jobs", "ecs")
    assert 'make update DATA="-d deploy_targets=[ecs,lambda]"' in refused.stderr


def test_outside_a_generated_repo_make_refuses_in_one_line(made_repo: Path, tmp_path: Path) -> None:
    """The Makefile and scripts copied into another project: no answers to add a package by."""
    other = tmp_path / "other"
    other.mkdir()
    git(other, "init", "--quiet", "--initial-branch=main")
    (other / "Makefile").write_bytes((made_repo / "Makefile").read_bytes())
    (other / "scripts").mkdir()
    for script in ("new_package.py", "answers.py", "monorepo.py"):
        (other / "scripts" / script).write_bytes((made_repo / "scripts" / script).read_bytes())
    commit_all(other, "tooling only")
    refused = make_new_package(other, "billing")
    assert_refused_cleanly(other, refused, "run this at the root of a repo generated by copier-uv")


def test_make_stops_when_the_check_cannot_run(made_repo: Path, tmp_path: Path) -> None:
    """No check, no Copier: a Makefile without its scripts/new_package.py writes nothing."""
    other = tmp_path / "other"
    other.mkdir()
    git(other, "init", "--quiet", "--initial-branch=main")
    for kept in ("Makefile", ".copier-answers.yml"):
        (other / kept).write_bytes((made_repo / kept).read_bytes())
    commit_all(other, "no scripts")
    stopped = make_new_package(other, "billing")
    assert stopped.returncode == 2, stopped
    assert "scripts/new_package.py did not run" in stopped.stderr.splitlines()[-1], stopped.stderr
    assert git(other, "status", "--porcelain") == ""


def package_passes_its_tests_and_lock(repo: Path, package: str) -> None:
    tests = run(["uv", "run", "scripts/ci.py", "test", "--isolated", package], cwd=repo).stdout
    assert " passed" in tests and " failed" not in tests, tests
    run(["uv", "lock", "--check", "--project", f"src/{package}"], cwd=repo)
    run(["uv", "run", "scripts/ci.py", "lock-check"], cwd=repo)


def test_retry_with_a_good_name_works(made_repo: Path) -> None:
    refused = make_new_package(made_repo, "nt_ledger")
    assert_refused_cleanly(made_repo, refused, "use NAME=ledger")
    make_new_package(made_repo, "ledger").check_returncode()
    assert (made_repo / "src/nt_ledger/nt_ledger/core.py").is_file()
    package_passes_its_tests_and_lock(made_repo, "nt_ledger")
    commit_all(made_repo, "ledger")


def test_name_of_exactly_the_cap_is_accepted(made_repo: Path) -> None:
    name = "l" * CAP
    added = make_new_package(made_repo, name, "lambda")
    assert added.returncode == 0, added.stderr
    package = f"nt_{name}"
    assert (made_repo / f"src/{package}/{package}/handler.py").is_file()
    assert (made_repo / f".copier/package-{name}.yml").is_file()
    package_passes_its_tests_and_lock(made_repo, package)
    commit_all(made_repo, "a name of the cap's length")
