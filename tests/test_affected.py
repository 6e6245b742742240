"""scripts/affected.py on real git repositories made from rendered projects, both layouts."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import run
from gitrepo import append, commit_all, git

pytestmark = pytest.mark.slow

API, COMMON, INGESTION = "acme_api", "acme_common", "acme_ingestion"
EVERYTHING = [API, COMMON, INGESTION]


@pytest.fixture(scope="module", params=["shared", "independent"])
def project(request: pytest.FixtureRequest, make_project: Callable[..., Path]) -> tuple[Path, str]:
    """A generated repo with everything committed, and that commit as the base."""
    repo = make_project(fresh=True, workspace_layout=request.param, package_prefix="acme")
    return repo, commit_all(repo, "Generated")


def affected(repo: Path, base: str) -> list[str]:
    result = run([sys.executable, "scripts/affected.py", "--base", base], cwd=repo)
    return json.loads(result.stdout)


def change(repo: Path, base: str, *paths: str) -> list[str]:
    """Branch off `base`, append a line to each path (a new file if missing), commit, ask."""
    git(repo, "checkout", "--quiet", "-B", "change", base)
    for relative in paths:
        path = repo / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        append(path, "\n# changed\n")
    commit_all(repo, f"Change {', '.join(paths)}")
    return affected(repo, base)


def test_a_change_inside_api_affects_only_api(project: tuple[Path, str]) -> None:
    repo, base = project
    assert change(repo, base, f"src/{API}/{API}/job.py") == [API]


def test_a_change_in_common_affects_it_and_every_dependent(project: tuple[Path, str]) -> None:
    repo, base = project
    assert change(repo, base, f"src/{COMMON}/{COMMON}/settings.py") == EVERYTHING


@pytest.mark.parametrize(
    "path",
    [
        "uv.lock",
        "pyproject.toml",
        "docker/Dockerfile.venv",
        ".github/workflows/ci.yml",
        ".github/uv/requirements.txt",
    ],
)
def test_a_repository_wide_change_affects_everything(project: tuple[Path, str], path: str) -> None:
    repo, base = project
    assert change(repo, base, path) == EVERYTHING


def test_a_docs_only_change_affects_nothing(project: tuple[Path, str]) -> None:
    repo, base = project
    assert change(repo, base, "README.md", "docs/deploying.md") == []


def test_everything_when_the_base_is_unknown(project: tuple[Path, str]) -> None:
    # A branch's first push reports an all-zero "before" commit.
    repo, base = project
    git(repo, "checkout", "--quiet", "-B", "change", base)
    assert affected(repo, "0" * 40) == EVERYTHING


def test_a_new_package_joins_the_graph_without_edits(project: tuple[Path, str]) -> None:
    """A package added under src/ (here one that uses api) is found and ordered in."""
    repo, base = project
    git(repo, "checkout", "--quiet", "-B", "new-package", base)
    report = repo / "src" / "acme_report"
    (report / "acme_report").mkdir(parents=True)
    (report / "acme_report" / "__init__.py").write_text("")
    api_source = (repo / "src" / API / "pyproject.toml").read_text()
    lines = api_source.splitlines()
    # The report package points at api the way api points at common, in either layout.
    source = next(line for line in lines if line.startswith("acme-common"))
    source = source.replace("acme-common", "acme-api").replace("_common", "_api")
    python_line = next(line for line in lines if line.startswith("requires-python"))
    (report / "pyproject.toml").write_text(
        '[project]\nname = "acme-report"\nversion = "0.1.0"\n'
        f'{python_line}\ndependencies = ["acme-api"]\n\n'
        f"[tool.uv.sources]\n{source}\n\n"
        '[build-system]\nrequires = ["uv_build>=0.8,<0.14"]\nbuild-backend = "uv_build"\n\n'
        '[tool.uv.build-backend]\nmodule-root = ""\n'
    )
    independent = (repo / "src" / COMMON / "uv.lock").exists()
    run(["uv", "lock", "--quiet", *(["--project", str(report)] if independent else [])], cwd=repo)
    with_report = commit_all(repo, "Add acme_report")
    assert change(repo, with_report, f"src/{API}/{API}/job.py") == [API, "acme_report"]
    assert change(repo, with_report, f"src/{COMMON}/{COMMON}/settings.py") == [
        *EVERYTHING,
        "acme_report",
    ]


def test_the_script_needs_only_the_standard_library(project: tuple[Path, str]) -> None:
    """CI runs it with the runner's python3 before anything is installed."""
    repo, base = project
    git(repo, "checkout", "--quiet", "-B", "change", base)
    result = subprocess.run(
        [sys.executable, "-S", "-E", "scripts/affected.py", "--all"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == EVERYTHING


def test_a_package_using_another_only_in_its_tests_is_affected(project: tuple[Path, str]) -> None:
    """A local dependency of the dev group (added as each layout's docs say) is in the graph:
    the dependent's tests import it, so a change to it must rerun them."""
    repo, base = project
    git(repo, "checkout", "--quiet", "-B", "dev-dependency", base)
    independent = (repo / "src" / COMMON / "uv.lock").exists()
    target = f"../{API}" if independent else "acme-api"
    run(["uv", "add", "--quiet", "--dev", "--directory", f"src/{INGESTION}", target], cwd=repo)
    pyproject = (repo / "src" / INGESTION / "pyproject.toml").read_text()
    assert "acme-api" in pyproject.split("[dependency-groups]")[1], pyproject
    with_dev = commit_all(repo, "ingestion tests use api")
    assert change(repo, with_dev, f"src/{API}/{API}/job.py") == [API, INGESTION]
    assert change(repo, with_dev, f"src/{INGESTION}/{INGESTION}/handler.py") == [INGESTION]
