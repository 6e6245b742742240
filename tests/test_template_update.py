"""The generated template-update workflow reports a newer template release, and only then."""

from __future__ import annotations

import shutil
from pathlib import Path

import gha
import pytest
from conftest import TEMPLATE, run
from copier import run_copy
from gitrepo import commit_all, git

pytestmark = pytest.mark.slow


def test_template_update_job_reports_a_newer_release(tmp_path: Path) -> None:
    # A tagged template repository made from this checkout, working tree included.
    template = tmp_path / "template"
    listed = run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=TEMPLATE)
    for relative in listed.stdout.splitlines():
        source = TEMPLATE / relative
        if source.is_file():
            (template / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, template / relative)
    git(template, "init", "--quiet", "--initial-branch=main")
    commit_all(template, "Template")
    git(template, "tag", "v1.0.0")

    project = tmp_path / "project"
    run_copy(
        str(template),
        project,
        defaults=True,
        unsafe=True,
        vcs_ref="v1.0.0",
        skip_tasks=True,
        quiet=True,
    )
    git(project, "init", "--quiet", "--initial-branch=main")
    commit_all(project, "Generated")
    # A package added later keeps its own answers file, checked as well.
    run_copy(
        str(template),
        project,
        data={"template_kind": "package", "package_name": "billing", "package_type": "library"},
        defaults=True,
        unsafe=True,
        vcs_ref="v1.0.0",
        skip_tasks=True,
        quiet=True,
    )
    assert (project / ".copier" / "package-billing.yml").is_file()
    commit_all(project, "Add billing")
    workflow = gha.load(project / ".github" / "workflows" / "template-update.yml")

    results, _ = gha.run_job(project, workflow, "check-update")
    assert [r.returncode for r in results] == [0], gha.describe(results)
    summary = (tmp_path / ".github-summary-check-update").read_text()
    assert "up to date" in summary

    commit_all(template, "A template improvement")
    git(template, "tag", "v1.1.0")
    results, _ = gha.run_job(project, workflow, "check-update")
    assert [r.returncode for r in results] == [0], gha.describe(results)
    assert "::warning::A newer template version is out" in results[0].output
    summary = (tmp_path / ".github-summary-check-update").read_text()
    assert ".copier-answers.yml .copier/package-billing.yml" in summary
    assert "make update" in summary
