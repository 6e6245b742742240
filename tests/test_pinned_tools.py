"""Jobs that hold AWS credentials run only pinned tools, in the `release` environment.

The generated repo's release script has its own uv lock (made by uv at generation, kept
current by `make lock`), CD runs it with `--locked`, and BuildKit is a pinned image.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import gha
import pytest
from conftest import run

pytestmark = pytest.mark.slow

SCRIPT = "scripts/upload_all.py"


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
    assert set(jobs) == {"cd.yml:ecs", "cd.yml:lambda", "cd.yml:runtime"}
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
