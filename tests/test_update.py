"""Update paths: a repo generated from an older release takes `copier update` to the newest.

The older release is this checkout with a few lines changed back (see `as_release_0_1_0`), so
each test knows exactly what the update must bring in and what the team's edits must survive.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import copy_template, run, tree_snapshot
from copier import run_update
from gitrepo import commit_all

pytestmark = pytest.mark.slow

SETTINGS = "template/project/src/{{ common_pkg }}/{{ common_pkg }}/settings.py.jinja"
CORE = (
    "template/package/src/{{ package_pkg }}/{{ package_pkg }}/"
    "{% if package_type == 'library' %}core.py{% endif %}.jinja"
)
NEW_SETTINGS_DOC = (
    '"""Typed settings for every service: environment, then .env, then packaged defaults."""'
)
OLD_SETTINGS_DOC = '"""Settings helpers."""'
NEW_CORE_DOC = '"""The library\'s first function; replace it with the real thing."""'
OLD_CORE_DOC = '"""A first function."""'


def replace_in(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{path} no longer holds {old!r}: update this test's release edit"
    path.write_text(text.replace(old, new))


def as_release_0_1_0(root: Path) -> None:
    """What 0.1.0 looked like: no .editorconfig, older docstrings in common and library code."""
    (root / "template/project/.editorconfig").unlink()
    replace_in(root / SETTINGS, NEW_SETTINGS_DOC, OLD_SETTINGS_DOC)
    replace_in(root / CORE, NEW_CORE_DOC, OLD_CORE_DOC)


def update(repo: Path, answers_file: str = ".copier-answers.yml") -> None:
    run_update(
        repo,
        answers_file=answers_file,
        defaults=True,
        overwrite=True,
        unsafe=True,
        quiet=True,
    )


def add_package(repo: Path, release: str, name: str, package_type: str) -> None:
    copy_template(
        repo,
        tasks=True,
        src=repo_template(repo),
        vcs_ref=release,
        template_kind="package",
        package_name=name,
        package_type=package_type,
    )


def repo_template(repo: Path) -> Path:
    return Path(yaml.safe_load((repo / ".copier-answers.yml").read_text())["_src_path"])


@pytest.fixture
def old_repo(request, template_releases, tmp_path: Path) -> Path:
    """A repo generated from 0.1.0 and committed; 0.2.0 (this checkout) is released after."""
    template_releases.release("0.1.0", as_release_0_1_0)
    repo = copy_template(
        tmp_path / "repo",
        tasks=True,
        src=template_releases.path,
        vcs_ref="0.1.0",
        workspace_layout=request.param,
    )
    commit_all(repo, "generated from 0.1.0")
    return repo


@pytest.mark.parametrize("old_repo", ["shared", "independent"], indirect=True)
def test_update_brings_template_changes_and_keeps_team_work(old_repo: Path, template_releases):
    repo = old_repo
    # The team's months of work: a feature, a new dependency, packages of each type.
    job = repo / "src/nt_api/nt_api/job.py"
    job.write_text(job.read_text() + "\n\ndef team_feature() -> int:\n    return 42\n")
    run(["uv", "add", "--quiet", "--directory", "src/nt_api", "six>=1.16"], cwd=repo)
    for package_type in ("library", "ecs", "lambda"):
        add_package(repo, "0.1.0", f"team_{package_type}", package_type)
    commit_all(repo, "team work")
    team_lib_core = repo / "src/nt_team_library/nt_team_library/core.py"
    assert OLD_CORE_DOC in team_lib_core.read_text()

    template_releases.release("0.2.0")
    run(["make", "update"], cwd=repo)

    # New template content arrived...
    assert (repo / ".editorconfig").is_file()
    assert NEW_SETTINGS_DOC in (repo / "src/nt_common/nt_common/settings.py").read_text()
    assert yaml.safe_load((repo / ".copier-answers.yml").read_text())["_commit"] == "0.2.0"
    # ...the team's work survived, and nothing conflicted.
    assert "def team_feature()" in job.read_text()
    assert "six>=1.16" in (repo / "src/nt_api/pyproject.toml").read_text()
    assert OLD_CORE_DOC in team_lib_core.read_text(), "a root update leaves packages alone"
    run(["make", "check-conflicts"], cwd=repo)
    assert not list(repo.rglob("*.rej"))
    run(["uv", "sync", "--locked"], cwd=repo)
    run(["make", "sync"], cwd=repo)
    tests = run(["make", "test"], cwd=repo).stdout
    assert "== nt_team_lambda" in tests and " failed" not in tests
    run(["make", "lock-check"], cwd=repo)
    commit_all(repo, "update to 0.2.0")

    # One package updated alone; the root answers stay byte-for-byte as they were.
    root_answers = (repo / ".copier-answers.yml").read_bytes()
    run(["make", "update-package", "NAME=team_library"], cwd=repo)
    assert NEW_CORE_DOC in team_lib_core.read_text()
    assert (repo / ".copier-answers.yml").read_bytes() == root_answers
    package_answers = yaml.safe_load((repo / ".copier/package-team_library.yml").read_text())
    assert package_answers["_commit"] == "0.2.0"
    other = yaml.safe_load((repo / ".copier/package-team_ecs.yml").read_text())
    assert other["_commit"] == "0.1.0", "only the named package moves"
    run(["make", "test"], cwd=repo)


@pytest.mark.parametrize("old_repo", ["shared"], indirect=True)
def test_make_update_packages_updates_every_package(old_repo: Path, template_releases) -> None:
    repo = old_repo
    add_package(repo, "0.1.0", "one", "library")
    add_package(repo, "0.1.0", "two", "library")
    commit_all(repo, "packages")
    template_releases.release("0.2.0")
    run(["make", "update-packages"], cwd=repo)
    for name in ("one", "two"):
        assert NEW_CORE_DOC in (repo / f"src/nt_{name}/nt_{name}/core.py").read_text()
        answers = yaml.safe_load((repo / f".copier/package-{name}.yml").read_text())
        assert answers["_commit"] == "0.2.0"
    assert yaml.safe_load((repo / ".copier-answers.yml").read_text())["_commit"] == "0.1.0"


@pytest.mark.parametrize("old_repo", ["shared"], indirect=True)
def test_conflicting_edit_leaves_inline_markers(old_repo: Path, template_releases) -> None:
    module = old_repo / "src/nt_common/nt_common/settings.py"
    replace_in(module, OLD_SETTINGS_DOC, '"""Team-specific settings, tuned for our dashboards."""')
    commit_all(old_repo, "team edits the same line as the template")
    template_releases.release("0.2.0")
    update(old_repo)
    text = module.read_text()
    assert "<<<<<<<" in text and ">>>>>>>" in text, "a conflict is shown, never resolved silently"
    assert "Team-specific settings" in text and NEW_SETTINGS_DOC in text
    # The generated CI's check (run in its lint job) reports it before it can be merged.
    check = run(["make", "check-conflicts"], cwd=old_repo, check=False)
    assert check.returncode != 0
    # Copier leaves the file unmerged in git's index (three stages): still listed once.
    assert check.stdout.count("src/nt_common/nt_common/settings.py:1: conflict marker\n") == 1


@pytest.mark.parametrize("old_repo", ["shared"], indirect=True)
def test_dirty_tree_is_refused_before_anything_changes(old_repo: Path, template_releases) -> None:
    template_releases.release("0.2.0")
    (old_repo / "src/nt_api/nt_api/job.py").write_text("# work in progress\n")
    before = tree_snapshot(old_repo)
    with pytest.raises(Exception, match="(?i)dirty"):
        update(old_repo)
    assert tree_snapshot(old_repo) == before
