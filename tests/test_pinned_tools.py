"""Jobs that hold AWS credentials run only pinned tools, in the `release` environment.

The generated repo's release script has its own uv lock (made by uv at generation, kept
current by `make lock`), CD runs it with `--locked`, BuildKit is a pinned image, and uv is
pinned exactly once, in `.github/uv/requirements.txt`, for setup-uv and every image build
alike (people get a floor in the root pyproject.toml instead).
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import builder
import gha
import pytest
from conftest import run

pytestmark = pytest.mark.slow

SCRIPT = "scripts/upload_all.py"
UV_PIN = ".github/uv/requirements.txt"


@pytest.fixture(scope="module")
def repo(make_project) -> Path:
    return make_project(fresh=True, deploy_targets=["ecs", "lambda"])


def credentialed_jobs(repo: Path) -> dict[str, dict]:
    workflows = sorted((repo / ".github" / "workflows").glob("*.yml"))
    return {
        f"{path.name}:{name}": job
        for path in workflows
        for name, job in gha.load(path)["jobs"].items()
        if (job.get("permissions") or {}).get("id-token") == "write"
    }


def test_credentialed_jobs_run_in_the_release_environment(repo: Path) -> None:
    jobs = credentialed_jobs(repo)
    assert set(jobs) == {"cd.yml:ecs", "cd.yml:lambda", "cd.yml:runtime", "cd.yml:deploy"}
    assert {name: job.get("environment") for name, job in jobs.items()} == dict.fromkeys(
        jobs, "release"
    )


def test_credentialed_jobs_resolve_nothing_unpinned(repo: Path) -> None:
    cd = gha.load(repo / ".github" / "workflows" / "cd.yml")
    buildkit = cd["env"]["BUILDKIT_IMAGE"]
    assert re.fullmatch(r"moby/buildkit:v\d+\.\d+\.\d+", buildkit), buildkit
    for name, job in credentialed_jobs(repo).items():
        for step in job["steps"]:
            if "setup-buildx-action" in step.get("uses", ""):
                assert step["with"]["driver-opts"] == "image=${{ env.BUILDKIT_IMAGE }}", name
            script = step.get("run", "")
            assert not re.search(r"\b(uvx|pip install|uv tool|uv pip|npx|curl|wget)\b", script)
            for command in re.findall(r"uv run [^\n]*", script):
                assert "--locked" in command, f"{name}: {command}"


def test_release_script_is_locked_and_the_lock_checked(repo: Path) -> None:
    """The lock exists right after generation, `uv run --locked` uses it, and a dependency
    changed without relocking fails the lock check CI runs (and `make lock-check`)."""
    lock = repo / f"{SCRIPT}.lock"
    assert lock.is_file() and 'name = "boto3"' in lock.read_text()
    run(["uv", "run", "--locked", SCRIPT, "--help"], cwd=repo)
    run([sys.executable, "scripts/ci.py", "lock-check"], cwd=repo)

    script = repo / SCRIPT
    script.write_text(script.read_text().replace('"boto3>=', '"botocore>=1.35", "boto3>=', 1))
    stale = run([sys.executable, "scripts/ci.py", "lock-check"], cwd=repo, check=False)
    assert stale.returncode != 0 and "--script scripts/upload_all.py" in stale.stdout + stale.stderr
    assert run(["make", "lock-check"], cwd=repo, check=False).returncode != 0
    refused = run(["uv", "run", "--locked", SCRIPT, "--help"], cwd=repo, check=False)
    assert refused.returncode != 0
    run(["make", "lock"], cwd=repo)
    run(["make", "lock-check"], cwd=repo)


def test_uv_is_pinned_in_one_place(repo: Path) -> None:
    """The template's uv pin reaches the generated repo as one exact pin, in
    `.github/uv/requirements.txt`, and as the floor people need, `[tool.uv] required-version`;
    only the Dockerfiles' ARG defaults repeat the pin (checked by scripts/pins.py) and the
    README names it. setup-uv reads that file, and every image build in CD gets the version
    from it."""
    uv = builder.template_uv_version()
    root = tomllib.loads((repo / "pyproject.toml").read_text())
    assert root["tool"]["uv"]["required-version"] == f">={uv}"
    pin = (repo / UV_PIN).read_text().splitlines()
    assert [line for line in pin if not line.startswith("#")] == [f"uv=={uv}"]
    mentions = {
        str(path.relative_to(repo))
        for path in repo.rglob("*")
        if path.is_file() and ".git" not in path.parts and ".venv" not in path.parts
        and uv in path.read_text(errors="replace")
    }
    dockerfiles = {str(p.relative_to(repo)) for p in (repo / "docker").glob("Dockerfile.*")}
    assert mentions == {"pyproject.toml", UV_PIN, "README.md", *dockerfiles}
    for name in dockerfiles:
        lines = [line for line in (repo / name).read_text().splitlines() if uv in line]
        assert lines == [f"ARG UV_VERSION={uv}"], name

    cd = gha.load(repo / ".github" / "workflows" / "cd.yml")
    assert "UV_VERSION" not in cd["env"]
    versions = next(s for s in cd["jobs"]["plan"]["steps"] if s.get("id") == "versions")
    assert "python3 scripts/pins.py github-output" in versions["run"]
    assert cd["jobs"]["plan"]["outputs"]["uv"] == "${{ steps.versions.outputs.uv }}"
    builds = 0
    for name, job in credentialed_jobs(repo).items():
        for step in job["steps"]:
            if "setup-uv" in step.get("uses", ""):
                assert step["with"] == {"version-file": UV_PIN, "enable-cache": False}
            if "docker build" in step.get("run", ""):
                builds += 1
                assert step["env"]["UV_VERSION"] == "${{ needs.plan.outputs.uv }}", name
                assert step["env"]["PYTHON_VERSION"] == "${{ needs.plan.outputs.python }}", name
                command = " ".join(step["run"].split())
                assert '--build-arg UV_VERSION="$UV_VERSION"' in command, name
                assert '--build-arg PYTHON_VERSION="$PYTHON_VERSION"' in command, name
    assert builds == 3
    result = run([sys.executable, "scripts/pins.py", "github-output"], cwd=repo)
    python = (repo / ".python-version").read_text().strip()
    assert result.stdout.split() == [f"uv={uv}", f"python={python}"]
