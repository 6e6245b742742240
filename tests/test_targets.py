"""Package types and deploy targets: an ecs or lambda package needs its target in the repo.

Run through the generated Makefile as a team would (`make new-package`, `make update DATA=`),
with Copier from the template's own environment standing in for the pinned `uvx` one.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml
from conftest import copy_template, run, tree_snapshot
from gitrepo import commit_all

pytestmark = pytest.mark.slow

COPIER = f"COPIER={Path(sys.executable).with_name('copier')}"


@pytest.fixture
def lambda_only_repo(template_releases, tmp_path: Path) -> Path:
    template_releases.release("1.0.0")
    repo = tmp_path / "repo"
    copy_template(
        repo, tasks=True, src=template_releases.path, vcs_ref="1.0.0", deploy_targets=["lambda"]
    )
    commit_all(repo, "generated")
    return repo


def test_missing_target_is_refused_then_added_with_make_update(lambda_only_repo: Path) -> None:
    repo = lambda_only_repo
    before = tree_snapshot(repo)
    refused = run(["make", "new-package", "NAME=jobs", "TYPE=ecs", COPIER], cwd=repo, check=False)
    assert refused.returncode != 0
    output = refused.stdout + refused.stderr
    assert "without the 'ecs' deploy target" in output
    assert 'make update DATA="-d deploy_targets=[ecs,lambda]"' in output
    assert tree_snapshot(repo) == before, "a refused package must write nothing"

    # The command the message gives, verbatim.
    run(["make", "update", COPIER, "DATA=-d deploy_targets=[ecs,lambda]"], cwd=repo)
    answers = yaml.safe_load((repo / ".copier-answers.yml").read_text())
    assert sorted(answers["deploy_targets"]) == ["ecs", "lambda"]
    for path in (
        "docker/Dockerfile.venv",
        "docker/Dockerfile.runtime",
        "scripts/upload_all.py",
        "deploy/iam/artifacts-bucket-policy.json",
        "scripts/iam_policy.py",
        "src/nt_api/nt_api/job.py",
    ):
        assert (repo / path).is_file(), path
    run(["make", "lock-check"], cwd=repo)
    commit_all(repo, "add the ecs target")

    run(["make", "new-package", "NAME=jobs", "TYPE=ecs", COPIER], cwd=repo)
    assert (repo / "src/nt_jobs/nt_jobs/job.py").is_file()


def test_lambda_package_in_an_ecs_only_repo_is_refused(tmp_path: Path) -> None:
    repo = copy_template(tmp_path / "repo", tasks=True, deploy_targets=["ecs"])
    commit_all(repo, "generated")
    before = tree_snapshot(repo)
    data = {"template_kind": "package", "package_name": "hook", "package_type": "lambda"}
    with pytest.raises(ValueError, match="without the 'lambda' deploy target") as refused:
        copy_template(repo, tasks=True, **data)
    assert "deploy_targets=[ecs,lambda]" in str(refused.value)
    assert tree_snapshot(repo) == before
