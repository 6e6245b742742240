"""The generated template-update workflow: a newer template release becomes one pull request.

Its `run:` steps run verbatim (tests/gha.py) in a generated repo whose `origin` is a local bare
repository standing in for GitHub. The step that calls GitHub's API (`gh pr create` / `gh pr
edit`, "Open or refresh the pull request") cannot reach GitHub here and is left out by name;
what it sends is the body file the update step writes, checked below.
"""

from __future__ import annotations

from pathlib import Path

import gha
import pytest
from conftest import copy_template, run
from gitrepo import commit_all, git
from test_update import SETTINGS, NEW_SETTINGS_DOC, OLD_SETTINGS_DOC, replace_in

pytestmark = pytest.mark.slow

PR_STEP = "Open or refresh the pull request"


def workflow(project: Path) -> dict:
    return gha.load(project / ".github" / "workflows" / "template-update.yml")


def with_origin(project: Path, tmp_path: Path) -> Path:
    """A bare repository as `origin`, holding main: GitHub as far as git push is concerned."""
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "--quiet", "--bare", str(origin))
    git(project, "remote", "add", "origin", str(origin))
    git(project, "push", "--quiet", "origin", "main")
    return origin


def run_check(project: Path) -> tuple[list[gha.StepRun], dict[str, str], str]:
    results, outputs = gha.run_job(project, workflow(project), "check")
    summary = (project.parent / ".github-summary-check").read_text()
    return results, outputs, summary


def test_a_newer_release_becomes_a_branch_and_a_pull_request_body(
    tmp_path: Path, template_releases, monkeypatch
) -> None:
    """Current: the check says so and the update job is skipped. A release later (the team
    edited a line it changes, in the root, and has a package of its own): the update job
    commits the update on `template-update` with the conflict kept as markers, pushes it to
    origin, and the pull request body lists the conflict and what to do."""
    template_releases.release("v1.0.0", lambda root: replace_in(root / SETTINGS, NEW_SETTINGS_DOC, OLD_SETTINGS_DOC))
    project = copy_template(
        tmp_path / "project", tasks=True, src=template_releases.path, vcs_ref="v1.0.0"
    )
    copy_template(
        project,
        tasks=True,
        src=template_releases.path,
        vcs_ref="v1.0.0",
        template_kind="package",
        package_name="billing",
        package_type="library",
    )
    module = project / "src/nt_common/nt_common/settings.py"
    replace_in(module, OLD_SETTINGS_DOC, '"""Team-specific settings."""')
    commit_all(project, "Generated, with a package and team edits")
    origin = with_origin(project, tmp_path)
    flow = workflow(project)
    assert flow["jobs"]["update"]["if"] == "needs.check.outputs.outdated == 'true'"

    results, outputs, summary = run_check(project)
    assert [r.returncode for r in results] == [0], gha.describe(results)
    assert outputs["outdated"] == "false" and "up to date" in summary

    template_releases.release("v1.1.0")
    results, outputs, summary = run_check(project)
    assert [r.returncode for r in results] == [0], gha.describe(results)
    assert outputs["outdated"] == "true"
    assert ".copier-answers.yml, .copier/package-billing.yml" in summary

    runner_temp = tmp_path / "runner-temp"
    runner_temp.mkdir()
    monkeypatch.setenv("RUNNER_TEMP", str(runner_temp))
    expressions = {"github.token": "unused-here"}
    results, _ = gha.run_job(project, flow, "update", expressions, skip=(PR_STEP,))
    assert [r.name for r in results] == ["Update on a branch", "Push the branch"]
    assert [r.returncode for r in results] == [0, 0], gha.describe(results)
    assert "Traceback" not in results[0].output

    pushed = git(project, "rev-parse", "HEAD")
    assert git(origin, "rev-parse", "refs/heads/template-update") == pushed
    assert git(origin, "rev-parse", "refs/heads/main") != pushed
    committed = git(project, "show", f"{pushed}:src/nt_common/nt_common/settings.py")
    assert "<<<<<<<" in committed and "Team-specific settings." in committed
    assert git(project, "status", "--porcelain") == ""
    body = (runner_temp / "pull-request.md").read_text()
    conflicts = [line for line in body.splitlines() if "conflict marker" in line]
    assert conflicts and all("src/nt_common/nt_common/settings.py:" in c for c in conflicts)
    assert len(conflicts) == len(set(conflicts))
    assert "`.copier-answers.yml`: v1.0.0 -> v1.1.0" in body
    assert "`.copier/package-billing.yml`: v1.0.0 -> v1.1.0" in body
    assert "`make lock`" in body

    # A second run rebuilds the branch from main and pushes it again: still one branch.
    git(project, "switch", "--quiet", "main")
    results, _ = gha.run_job(project, flow, "update", expressions, skip=(PR_STEP,))
    assert [r.returncode for r in results] == [0, 0], gha.describe(results)
    assert git(origin, "for-each-ref", "--format=%(refname)", "refs/heads") == (
        "refs/heads/main\nrefs/heads/template-update"
    )


def test_a_clean_update_refreshes_the_locks_on_the_branch(
    tmp_path: Path, template_releases, monkeypatch
) -> None:
    """No conflicts: the branch carries the update and refreshed locks, green as it stands."""
    template_releases.release("v1.0.0", lambda root: replace_in(root / SETTINGS, NEW_SETTINGS_DOC, OLD_SETTINGS_DOC))
    project = copy_template(
        tmp_path / "project", tasks=True, src=template_releases.path, vcs_ref="v1.0.0"
    )
    commit_all(project, "Generated")
    origin = with_origin(project, tmp_path)
    template_releases.release("v1.1.0")
    runner_temp = tmp_path / "runner-temp"
    runner_temp.mkdir()
    monkeypatch.setenv("RUNNER_TEMP", str(runner_temp))
    expressions = {"github.token": "unused-here"}
    results, _ = gha.run_job(project, workflow(project), "update", expressions, skip=(PR_STEP,))
    assert [r.returncode for r in results] == [0, 0], gha.describe(results)
    body = (runner_temp / "pull-request.md").read_text()
    assert "No conflicts" in body and "conflict marker" not in body
    assert git(origin, "rev-parse", "refs/heads/template-update") == git(project, "rev-parse", "HEAD")
    assert NEW_SETTINGS_DOC in (project / "src/nt_common/nt_common/settings.py").read_text()
    run(["make", "lock-check"], cwd=project)
    run(["make", "check-conflicts"], cwd=project)


def test_a_local_template_source_gets_a_notice_and_the_run_succeeds(
    tmp_path: Path, template_releases
) -> None:
    """A repo generated from a local checkout records that folder, which no runner has: the
    run succeeds, with a notice and a summary saying exactly what to set (a git URL as
    `_src_path`), not Copier's traceback or a failed run every week."""
    template_releases.release("v1.0.0")
    project = copy_template(
        tmp_path / "project", tasks=False, src=template_releases.path, vcs_ref="v1.0.0"
    )
    answers = project / ".copier-answers.yml"
    missing = tmp_path / "gone" / "copier-uv-monorepo"
    answers.write_text(
        answers.read_text().replace(f"_src_path: {template_releases.path}", f"_src_path: {missing}")
    )
    assert str(missing) in answers.read_text()
    git(project, "init", "--quiet", "--initial-branch=main")
    commit_all(project, "Generated elsewhere")

    results, outputs, summary = run_check(project)
    assert [r.returncode for r in results] == [0], gha.describe(results)
    assert outputs["outdated"] == "false", "the update job must not run"
    output = results[0].output
    assert "::notice title=Template source not reachable::.copier-answers.yml records" in output
    assert str(missing) in summary
    assert "set `_src_path:` in .copier-answers.yml to the template's git URL" in summary
    assert "Traceback" not in output
