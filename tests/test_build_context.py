"""Secrets lying around a working copy never reach a venv tarball or an image build context.

A team's checkout holds files the generated .dockerignore must keep out (env files, keys,
cloud and index credentials, Terraform state). They are planted at the root, in src/ and
inside a package's module directory (where a wheel build would pick them up as package data),
then the real Dockerfile.venv is built and a build context is listed by a real builder.
"""

from __future__ import annotations

import tarfile
from pathlib import Path
from types import ModuleType

from conftest import run

import builder
import pytest

container_builder = builder.container_builder

pytestmark = [pytest.mark.slow, pytest.mark.containers]

API = "nt_api"
SECRETS = [
    ".env",
    ".env.local",
    ".env.production",
    ".envrc",
    "deploy.key",
    ".aws/credentials",
    ".netrc",
    ".pypirc",
    "terraform.tfstate",
    "terraform.tfstate.backup",
    ".terraform/providers/lock",
]
PLACES = ["", "src/", f"src/{API}/{API}/"]
CANARY = "SECRET-CANARY-do-not-ship"


@pytest.fixture(scope="module")
def repo_with_secrets(make_project) -> Path:
    repo = make_project(fresh=True, python_version="3.11", deploy_targets=["ecs"])
    for place in PLACES:
        for name in SECRETS:
            path = repo / place / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"{CANARY} {place}{name}\n")
    return repo


def test_no_secret_reaches_the_venv_tarball(
    repo_with_secrets: Path, container_builder: ModuleType, tmp_path: Path
) -> None:
    dist = tmp_path / "dist"
    container_builder.build(
        repo_with_secrets,
        "docker/Dockerfile.venv",
        build_args={"PACKAGE_NAME": API, "PACKAGE_VERSION": "0.0.1"},
        output=dist,
    )
    (tarball,) = dist.rglob("*.tar.gz")
    with tarfile.open(tarball) as tf:
        members = tf.getmembers()
        leaked = [
            m.name for m in members if Path(m.name).name in {Path(s).parts[0] for s in SECRETS}
        ]
        contents = b"".join(tf.extractfile(m).read() for m in members if m.isfile())
    assert f"{API}/job.py" in " ".join(m.name for m in members), "the package itself is there"
    assert not leaked
    assert CANARY.encode() not in contents


def test_no_secret_reaches_an_image_build_context(
    repo_with_secrets: Path, container_builder: ModuleType, tmp_path: Path
) -> None:
    """Whatever a Dockerfile copies, the context it can copy from holds no secret."""
    probe = tmp_path / "Dockerfile.probe"
    probe.write_text(
        f"FROM {container_builder.slim_image('3.11')}\nCOPY . /context\n"
        "RUN grep -rl SECRET-CANARY /context || echo NO-SECRETS\n"
    )
    build = container_builder.build(repo_with_secrets, probe, tag="localhost/cumt-context-probe")
    assert "NO-SECRETS" in build.output, build.output[-3000:]
    listing = container_builder.run(
        "localhost/cumt-context-probe", "-c", "cd /context && find . -type f", entrypoint="/bin/sh"
    ).stdout.split()
    assert "./src/nt_api/nt_api/job.py" in listing and "./uv.lock" in listing
    container_builder.remove_image("localhost/cumt-context-probe")
    # The planted files are really in the working copy: only the build context skips them.
    assert (repo_with_secrets / "src/nt_api/nt_api/.aws/credentials").read_text().startswith(CANARY)


def test_git_never_tracks_an_env_file(repo_with_secrets: Path) -> None:
    """`make run` reads .env (settings, secrets among them): git ignores every env file, at the
    root and in the packages, so `git add -A` cannot commit one."""
    status = run(
        ["git", "status", "--porcelain", "--ignored", "--untracked-files=all"],
        cwd=repo_with_secrets,
    ).stdout.splitlines()
    for place in PLACES:
        for name in (".env", ".env.local", ".env.production"):
            assert f"!! {place}{name}" in status, status
