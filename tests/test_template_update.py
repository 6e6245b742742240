"""The generated template-update workflow reports a newer template release, and only then."""

from __future__ import annotations

from pathlib import Path

import gha
import pytest
from conftest import copy_template
from gitrepo import commit_all, git

pytestmark = pytest.mark.slow


def test_template_update_job_reports_a_newer_release(tmp_path: Path, template_releases) -> None:
    template = template_releases.path
    template_releases.release("v1.0.0")

    project = copy_template(tmp_path / "project", tasks=False, src=template, vcs_ref="v1.0.0")
    git(project, "init", "--quiet", "--initial-branch=main")
    commit_all(project, "Generated")
    # A package added later keeps its own answers file, checked as well.
    copy_template(
        project,
        tasks=False,
        src=template,
        vcs_ref="v1.0.0",
        template_kind="package",
        package_name="billing",
        package_type="library",
    )
    assert (project / ".copier" / "package-billing.yml").is_file()
    commit_all(project, "Add billing")
    workflow = gha.load(project / ".github" / "workflows" / "template-update.yml")

    results, _ = gha.run_job(project, workflow, "check-update")
    assert [r.returncode for r in results] == [0], gha.describe(results)
    summary = (tmp_path / ".github-summary-check-update").read_text()
    assert "up to date" in summary

    template_releases.release("v1.1.0")
    results, _ = gha.run_job(project, workflow, "check-update")
    assert [r.returncode for r in results] == [0], gha.describe(results)
    assert "::warning::A newer template version is out" in results[0].output
    summary = (tmp_path / ".github-summary-check-update").read_text()
    assert ".copier-answers.yml .copier/package-billing.yml" in summary
    assert "make update" in summary


def test_template_update_job_names_a_local_source_it_cannot_reach(
    tmp_path: Path, template_releases
) -> None:
    """A repo generated from a local checkout records that folder; on a runner without it the
    job fails with what to write instead, not with Copier's traceback."""
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
    workflow = gha.load(project / ".github" / "workflows" / "template-update.yml")

    results, _ = gha.run_job(project, workflow, "check-update")
    assert [r.returncode for r in results] == [1], gha.describe(results)
    output = results[0].output
    assert f"::error::.copier-answers.yml records the template source {missing}" in output
    assert "git URL" in output and "Traceback" not in output
