"""Fast render tests over the answer matrix: the generated tree and its metadata, no tools run."""

from __future__ import annotations

import itertools
import re
import tomllib
from pathlib import Path

import pytest
import yaml
from conftest import run

LAYOUTS = ["shared", "independent"]
TARGET_SETS = [["ecs"], ["lambda"], ["ecs", "lambda"]]
PYTHONS = ["3.11", "3.12", "3.13", "3.14"]


def load_toml(path: Path) -> dict:
    return tomllib.loads(path.read_text())


def package_dirs(repo: Path) -> set[str]:
    return {path.name for path in (repo / "src").iterdir() if path.is_dir()}


@pytest.mark.parametrize(
    ("layout", "targets"),
    list(itertools.product(LAYOUTS, TARGET_SETS)),
    ids=lambda value: "+".join(value) if isinstance(value, list) else value,
)
@pytest.mark.parametrize("python", PYTHONS)
def test_answer_matrix_renders_a_consistent_tree(render, layout, targets, python) -> None:
    repo = render(workspace_layout=layout, deploy_targets=targets, python_version=python)

    expected = {"nt_common"}
    expected |= {"nt_api"} if "ecs" in targets else set()
    expected |= {"nt_ingestion"} if "lambda" in targets else set()
    assert package_dirs(repo) == expected
    assert (repo / ".python-version").read_text().strip() == python

    root = load_toml(repo / "pyproject.toml")
    assert root["project"]["requires-python"] == f">={python}"
    assert root["tool"]["uv"]["package"] is False
    if layout == "shared":
        assert root["tool"]["uv"]["workspace"]["members"] == ["src/*"]
    else:
        assert "workspace" not in root["tool"]["uv"]

    for name in expected:
        package = repo / "src" / name
        meta = load_toml(package / "pyproject.toml")
        assert meta["project"]["name"] == name.replace("_", "-")
        assert meta["project"]["requires-python"] == f">={python}"
        assert meta["tool"]["uv"]["build-backend"]["module-name"] == name
        assert "pytest>=8" in meta["dependency-groups"]["dev"]
        assert (package / name / "__init__.py").is_file()
        imports_test = package / "tests" / "test_imports.py"
        assert imports_test.is_file() and not imports_test.is_symlink()
        if name != "nt_common":
            source = meta["tool"]["uv"]["sources"]["nt-common"]
            assert "nt-common" in meta["project"]["dependencies"]
            if layout == "shared":
                assert source == {"workspace": True}
            else:
                assert source == {"path": "../nt_common"}


def test_answers_file_records_every_answer(render) -> None:
    repo = render(package_prefix="acme", deploy_targets=["lambda"], lambda_architecture="x86_64")
    answers = yaml.safe_load((repo / ".copier-answers.yml").read_text())
    assert answers["package_prefix"] == "acme"
    assert answers["deploy_targets"] == ["lambda"]
    assert answers["lambda_architecture"] == "x86_64"
    assert "artifact_naming" not in answers, "questions for ECS are not asked without ECS"
    assert {"_commit", "_src_path"} <= answers.keys()


def test_prefix_names_every_package_module_and_dist(render) -> None:
    repo = render(package_prefix="acme_data")
    assert package_dirs(repo) == {"acme_data_common", "acme_data_api", "acme_data_ingestion"}
    settings = repo / "src/acme_data_ingestion/acme_data_ingestion/settings.py"
    assert "from acme_data_common import" in settings.read_text()
    api = load_toml(repo / "src/acme_data_api/pyproject.toml")
    assert api["project"]["scripts"] == {"acme-data-api": "acme_data_api.job:main"}
    defaults = repo / "src/acme_data_common/acme_data_common/defaults.yaml"
    assert "ACME_DATA_<KEY>" in defaults.read_text()


def test_no_template_syntax_leaks_into_the_output(render) -> None:
    repo = render()
    for path in repo.rglob("*"):
        if path.is_file():
            # GitHub workflow expressions, ${{ ... }}, are meant to be there.
            text = re.sub(r"\$\{\{.*?\}\}", "", path.read_text())
            assert "{{" not in text and "{%" not in text, path
            assert not path.name.endswith(".jinja"), path


def test_locks_are_never_templated(render) -> None:
    # Locks come from `uv lock` in the copy tasks; a rendered one would go stale on every update.
    assert not list(render(workspace_layout="independent").rglob("uv.lock"))


def test_dockerignore_keeps_vcs_and_secrets_out_of_build_contexts(render) -> None:
    ignored = (render() / ".dockerignore").read_text().split()
    assert {".git", "**/.venv", "**/.env", "dist"} <= set(ignored)


def test_git_ignores_the_secrets_build_contexts_ignore(render) -> None:
    """Every secret-shaped name .dockerignore keeps out of images is one git will not commit
    either (asked of git itself, on files created in a generated repo)."""
    repo = render()
    run(["git", "init", "--quiet"], cwd=repo)
    secrets = [".env", ".env.local", ".envrc", "deploy/key.pem", "src/x/id.key"]
    secrets += [".aws/credentials", ".netrc", ".pypirc"]
    for name in secrets:
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text("secret\n")
    ignored = run(["git", "check-ignore", "--no-index", *secrets], cwd=repo, check=False)
    assert sorted(ignored.stdout.split()) == sorted(secrets), ignored.stdout


@pytest.mark.parametrize("layout", LAYOUTS)
def test_generated_readme_describes_this_repo(render, layout) -> None:
    readme = (render(workspace_layout=layout, deploy_targets=["lambda"]) / "README.md").read_text()
    assert readme.startswith("# My Monorepo")
    assert "src/nt_ingestion/" in readme and "src/nt_api/" not in readme
    assert ("one shared uv workspace" in readme) == (layout == "shared")
    assert ("independent uv projects" in readme) == (layout == "independent")
