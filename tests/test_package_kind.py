"""The package kind: `--data template_kind=package` adds one package to a generated repo."""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml
from conftest import TEMPLATE, copy_template, run, tree_snapshot
from gitrepo import commit_all

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
    assert usage.returncode != 0 and "usage: make new-package NAME=" in usage.stdout


def test_copier_pin_of_generated_repos_matches_the_dev_environment() -> None:
    context = (TEMPLATE / "extensions/context.py").read_text()
    assert f'COPIER_VERSION = "{version("copier")}"' in context
    assert f'COPIER_EXTENSIONS_VERSION = "{version("copier-template-extensions")}"' in context
