"""scripts/image_inputs.py: the sum CD records with each Lambda image (a tag
`inputs-<sha256>`) and compares when a version is released again.

Run in generated repos of both layouts, with their real locks and git: the sum follows what
the image is built from (the function's files, the local packages it installs, its locked
third-party requirements, the Dockerfile, the build arguments) and nothing else, so
releasing every package at its version ("v*" tags) after a change to another package is a
no-op for this one, not a failure.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from conftest import run
from gitrepo import append, commit_all

FUNCTION = "nt_ingestion"
ARGS = ["SERVICE_NAME=nt_ingestion", "UV_VERSION=0.13.8", "PYTHON_VERSION=3.12", "PLATFORM=linux/arm64"]


@pytest.fixture(params=["shared", "independent"])
def repo(request, make_project, tmp_path: Path) -> Path:
    generated = make_project(workspace_layout=request.param, python_version="3.12")
    copy = tmp_path / "repo"
    run(["cp", "-a", str(generated), str(copy)], cwd=tmp_path)
    commit_all(copy, "generated")
    return copy


def inputs(repo: Path, *args: str) -> str:
    cmd = [sys.executable, "scripts/image_inputs.py", FUNCTION, *(args or ARGS)]
    out = run(cmd, cwd=repo).stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", out), out
    return out


def relock(repo: Path) -> None:
    run(["make", "lock"], cwd=repo)


def test_the_sum_follows_the_image_inputs_only(repo: Path) -> None:
    first = inputs(repo)
    assert inputs(repo) == first, "the same tree must give the same sum"

    # Another package's code and dependencies: not in this image.
    append(repo / "src/nt_api/nt_api/job.py", "\n# a change elsewhere\n")
    run(["uv", "add", "--quiet", "--directory", "src/nt_api", "six>=1.16"], cwd=repo)
    relock(repo)
    commit_all(repo, "nt_api changes")
    assert inputs(repo) == first

    changed = {}
    append(repo / f"src/{FUNCTION}/{FUNCTION}/handler.py", "\n# new behaviour\n")
    changed["code"] = inputs(repo)
    append(repo / "src/nt_common/nt_common/settings.py", "\n# a shared change\n")
    changed["local package"] = inputs(repo)
    # The lock alone: the function's pyproject.toml allows either PyYAML.
    project = f"src/{FUNCTION}" if (repo / f"src/{FUNCTION}/uv.lock").exists() else "."
    lock = ["uv", "lock", "--quiet", "--project", project, "--upgrade-package", "pyyaml==6.0.1"]
    run(lock, cwd=repo)
    changed["requirements"] = inputs(repo)
    append(repo / "docker/Dockerfile.lambda", "\n# a build change\n")
    changed["Dockerfile"] = inputs(repo)
    changed["build argument"] = inputs(repo, *ARGS[:-1], "PLATFORM=linux/amd64")
    sums = [first, *changed.values()]
    assert len(set(sums)) == len(sums), changed


def test_only_lambda_packages_have_image_inputs(repo: Path) -> None:
    refused = run([sys.executable, "scripts/image_inputs.py", "nt_api"], cwd=repo, check=False)
    assert refused.returncode == 2 and not refused.stdout
    assert refused.stderr.strip() == (
        "image_inputs: 'nt_api' is not a Lambda package under src/; "
        f"the Lambda packages are: {FUNCTION}"
    )
