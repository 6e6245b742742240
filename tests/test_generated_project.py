"""Generated repos work as they come: the template's own tasks, then the repo's own commands."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import run

pytestmark = pytest.mark.slow

LAYOUTS = ["shared", "independent"]


@pytest.fixture(scope="module", params=LAYOUTS)
def project(request, make_project) -> Path:
    return make_project(workspace_layout=request.param)


def test_copy_leaves_a_git_repo_with_locks(project: Path) -> None:
    assert run(["git", "rev-parse", "--is-inside-work-tree"], cwd=project).stdout.strip() == "true"
    layout = "independent" if (project / "src/nt_common/uv.lock").exists() else "shared"
    locks = sorted(str(path.relative_to(project)) for path in project.rglob("uv.lock"))
    # infra/ (infrastructure=cdk, the default) is a uv project of its own, in both layouts.
    if layout == "shared":
        assert locks == ["infra/uv.lock", "uv.lock"]
    else:
        expected = ["src/nt_api/uv.lock", "src/nt_common/uv.lock", "src/nt_ingestion/uv.lock"]
        assert locks == sorted(["infra/uv.lock", "uv.lock", *expected])


def test_uv_sync_locked_succeeds(project: Path) -> None:
    run(["uv", "sync", "--locked"], cwd=project)
    run(["make", "sync"], cwd=project)


def test_every_package_test_suite_passes(project: Path) -> None:
    output = run(["make", "test"], cwd=project).stdout
    for package in ("nt_common", "nt_api", "nt_ingestion"):
        assert f"== {package}" in output
    # Three packages, then the deploy scripts' tests (tests/deploy/, make test-deploy).
    assert "== tests/deploy" in output
    assert output.count(" passed") == 4 and " failed" not in output


def test_lint_and_lock_check_pass(project: Path) -> None:
    run(["make", "lint"], cwd=project)
    run(["make", "lock-check"], cwd=project)


def test_the_ecs_job_runs_as_a_module(project: Path) -> None:
    result = run(["uv", "run", "--locked", "--directory", "src/nt_api", "python", "-m", "nt_api"], cwd=project)
    assert json.loads(result.stdout) == {"job": "nt_api", "environment": "dev", "processed": 3}


def test_lock_check_fails_on_a_stale_lock(make_project) -> None:
    repo = make_project(fresh=True, workspace_layout="independent", deploy_targets=["ecs"])
    pyproject = repo / "src/nt_api/pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"nt-common",', '"nt-common",\n    "six",'))
    result = run(["make", "lock-check"], cwd=repo, check=False)
    assert result.returncode != 0
    assert "To update the lockfile, run `uv lock`" in result.stderr


def test_import_test_catches_a_broken_module(make_project) -> None:
    repo = make_project(fresh=True, deploy_targets=["lambda"])
    (repo / "src/nt_common/nt_common/broken.py").write_text("import not_a_declared_dependency\n")
    result = run(["make", "test"], cwd=repo, check=False)
    assert result.returncode != 0
    assert "test_module_imports[nt_common.broken]" in result.stdout


def test_import_test_reaches_folders_without_init(make_project) -> None:
    """A module in a folder without __init__.py (which pkgutil's walk skips) is imported too:
    one that imports a package nobody declared fails the import test, and hidden folders and
    __pycache__ stay out."""
    repo = make_project(fresh=True, deploy_targets=["lambda"])
    package = repo / "src/nt_common/nt_common"
    (package / "plugins/deep").mkdir(parents=True)
    (package / "plugins/deep/fine.py").write_text("VALUE = 1\n")
    (package / ".scratch").mkdir()
    (package / ".scratch/notes.py").write_text("import not_a_declared_dependency\n")
    (package / "__pycache__").mkdir(exist_ok=True)
    (package / "__pycache__/stale.py").write_text("import not_a_declared_dependency\n")
    run(["make", "test"], cwd=repo)
    collected = run(
        ["uv", "run", "--locked", "--directory", "src/nt_common", "pytest", "--collect-only", "-q"],
        cwd=repo,
    ).stdout
    assert "test_module_imports[nt_common.plugins.deep.fine]" in collected
    assert "scratch" not in collected and "stale" not in collected

    (package / "plugins/deep/broken.py").write_text("import not_a_declared_dependency\n")
    result = run(["make", "test"], cwd=repo, check=False)
    assert result.returncode != 0
    assert "test_module_imports[nt_common.plugins.deep.broken]" in result.stdout
    assert "No module named 'not_a_declared_dependency'" in result.stdout


# Every supported Python this machine has an interpreter for. 3.14 is offered too, but has no
# interpreter here: test_rendering and test_versions cover its rendering and linting.
@pytest.mark.parametrize("python", ["3.11", "3.12", "3.13"])
def test_every_available_python_works(make_project, python: str) -> None:
    repo = make_project(python_version=python, deploy_targets=["ecs"])
    run(["make", "sync"], cwd=repo)
    run(["make", "test"], cwd=repo)
    version = run(["uv", "run", "--locked", "python", "--version"], cwd=repo).stdout
    assert version.startswith(f"Python {python}.")


def test_skip_tasks_leaves_locks_to_the_user(tmp_path: Path) -> None:
    # The documented way to generate without running anything: no git repo, no lock yet.
    dst = tmp_path / "repo"
    subprocess.run(
        ["copier", "copy", "--trust", "--defaults", "--skip-tasks", "--vcs-ref", "HEAD",
         str(Path(__file__).resolve().parents[1]), str(dst)],
        check=True, capture_output=True,
    )
    assert (dst / "pyproject.toml").is_file()
    assert not (dst / "uv.lock").exists() and not (dst / ".git").exists()


def test_pytest_copie_renders_the_defaults(copie) -> None:
    # pytest-copie's own fixture, as template users would test a fork: defaults, tasks run.
    result = copie.copy(extra_answers={"package_prefix": "acme"})
    assert result.exit_code == 0, result.exception
    assert result.answers["package_prefix"] == "acme"
    assert (result.project_dir / "uv.lock").is_file()
    assert (result.project_dir / "src/acme_common/acme_common/settings.py").is_file()
