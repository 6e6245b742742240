"""What CI and CD decide, run for real: which commits are tested, which may be released.

The workflows' own steps run verbatim (tests/gha.py) in real git repos generated from the
template; a ref GitHub's checkout would create (`origin/main`) is made with git itself.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import gha
import pytest
from conftest import copy_template, run
from gitrepo import commit_all, git

TARGETS = {"ecs": ["ecs"], "lambda": ["lambda"], "both": ["ecs", "lambda"]}


@pytest.fixture(scope="module")
def renders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("semantics")
    return {
        f"{layout}-{targets}": copy_template(
            root / f"{layout}-{targets}",
            tasks=False,
            workspace_layout=layout,
            deploy_targets=TARGETS[targets],
        )
        for layout, targets in itertools.product(["shared", "independent"], TARGETS)
    }


def test_every_job_has_a_timeout(renders: dict[str, Path]) -> None:
    for repo in renders.values():
        for path in (repo / ".github" / "workflows").glob("*.yml"):
            for name, job in gha.load(path)["jobs"].items():
                minutes = job.get("timeout-minutes")
                assert isinstance(minutes, int) and 0 < minutes <= 60, f"{path.name}:{name}"


def test_no_run_on_main_is_replaced_and_merge_queues_are_tested(renders) -> None:
    """GitHub drops a pending run when a newer one joins its concurrency group, even with
    cancel-in-progress off: only pull requests may share a group (and cancel)."""
    ci = gha.load(renders["shared-both"] / ".github" / "workflows" / "ci.yml")
    assert "merge_group" in ci["on"]
    group = ci["concurrency"]["group"]
    assert "github.run_id" in group and "github.sha" not in group
    resolved = {
        gha._resolve(
            group,
            {
                "github.event_name == 'pull_request' && github.ref || github.run_id": value,
            },
        )
        for value in ("1001", "1002")  # two pushes to main
    }
    assert len(resolved) == 2
    assert ci["concurrency"]["cancel-in-progress"] == "${{ github.event_name == 'pull_request' }}"
    base = ci["jobs"]["affected"]["steps"][1]["env"]["BASE"]
    assert "github.event.merge_group.base_sha" in base


def test_ci_passed_waits_for_every_job(renders: dict[str, Path]) -> None:
    """The one required check: a job left out of its `needs` could fail and still merge."""
    for name, repo in renders.items():
        jobs = gha.load(repo / ".github" / "workflows" / "ci.yml")["jobs"]
        assert set(jobs["ci-passed"]["needs"]) == set(jobs) - {"ci-passed"}, name
        assert jobs["ci-passed"]["if"] == "always()", name


def release_check(repo: Path) -> dict:
    cd = gha.load(repo / ".github" / "workflows" / "cd.yml")
    (step,) = [s for s in cd["jobs"]["plan"]["steps"] if s.get("name") == "Releases come from main"]
    return step


@pytest.fixture
def repo_with_branches(tmp_path: Path) -> tuple[Path, str, str]:
    """A generated repo: one commit on main (as origin/main), one on a side branch."""
    repo = copy_template(tmp_path / "repo", tasks=False)
    run(["git", "init", "--quiet", "--initial-branch=main"], cwd=repo)
    on_main = commit_all(repo, "release 1.0")
    git(repo, "update-ref", "refs/remotes/origin/main", on_main)
    git(repo, "checkout", "--quiet", "-b", "side")
    off_main = commit_all(repo, "not reviewed")
    return repo, on_main, off_main


def test_cd_releases_only_commits_on_main(repo_with_branches) -> None:
    repo, on_main, off_main = repo_with_branches
    step = release_check(repo)
    for sha, expected in ((on_main, 0), (off_main, 1)):
        git(repo, "checkout", "--quiet", sha)
        workflow = {
            "env": {"GITHUB_SHA": sha, "GITHUB_REF_NAME": "v1.0.0"},
            "jobs": {"plan": {"steps": [step]}},
        }
        (result,), _ = gha.run_job(repo, workflow, "plan")
        assert result.returncode == expected, result.output
    assert "is not a commit on main" in result.output
    # Every job that builds or holds credentials waits for this check (deploy: for the
    # artifact jobs too), and runs only if it passed.
    cd = gha.load(repo / ".github" / "workflows" / "cd.yml")
    for name, job in cd["jobs"].items():
        if name == "plan":
            continue
        needs = job.get("needs")
        assert needs == "plan" or "plan" in needs, name
        if needs != "plan":
            assert "needs.plan.result == 'success'" in job["if"], name
