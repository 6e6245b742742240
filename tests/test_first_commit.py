"""Generation ends with a first commit, so the repo's checks see its files from the start.

pre-commit checks tracked files only: on a repo with nothing committed or staged, `pre-commit
run --all-files` skips every hook and looks green. The template's last task stages everything
and commits it when git has an identity (config or GIT_AUTHOR_*/GIT_COMMITTER_*, as here and
on CI), and leaves it staged with a one-line notice otherwise. Stands in for a newcomer
running README's command 1 with and without `git config user.email` set.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import TEMPLATE, run
from gitrepo import append, git

pytestmark = pytest.mark.slow


def hook_names(repo: Path) -> list[str]:
    config = yaml.safe_load((repo / ".pre-commit-config.yaml").read_text())
    return [hook["name"] for entry in config["repos"] for hook in entry["hooks"]]


def hook_results(output: str) -> dict[str, str]:
    """pre-commit's report, `<name>.....Passed`, as {name: Passed|Failed|Skipped}."""
    return dict(re.findall(r"^(.+?)\.{3,}(?:\([^)]*\))?(Passed|Failed|Skipped)$", output, re.M))


def pre_commit(repo: Path, home: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PRE_COMMIT_HOME": str(home)}
    cmd = ["uv", "run", "--locked", "pre-commit", "run", "--all-files"]
    return run(cmd, cwd=repo, env=env, check=check)


def test_with_an_identity_the_repo_starts_committed_and_checked(
    make_project, tmp_path: Path
) -> None:
    """One commit naming the template and its commit, a clean tree, and pre-commit runs
    every hook on the committed files: all pass, and a problem planted in a tracked file
    fails its hook."""
    repo = make_project(fresh=True)
    assert git(repo, "rev-list", "--count", "HEAD") == "1"
    commit = yaml.safe_load((repo / ".copier-answers.yml").read_text())["_commit"]
    assert git(repo, "log", "-1", "--format=%s") == f"Generate from copier-uv-monorepo {commit}"
    assert git(repo, "log", "-1", "--format=%an <%ae>") == (
        f"{os.environ['GIT_AUTHOR_NAME']} <{os.environ['GIT_AUTHOR_EMAIL']}>"
    )
    assert not git(repo, "status", "--porcelain")
    tracked = git(repo, "ls-files").splitlines()
    assert {"uv.lock", "pyproject.toml", ".copier-answers.yml"} <= set(tracked)

    home = tmp_path / "pre-commit-home"
    passed = pre_commit(repo, home).stdout
    assert hook_results(passed) == dict.fromkeys(hook_names(repo), "Passed"), passed

    append(repo / "src/nt_common/nt_common/settings.py", "\nimport os\n")
    failed = pre_commit(repo, home, check=False)
    assert failed.returncode != 0
    assert hook_results(failed.stdout)["ruff check"] == "Failed", failed.stdout
    assert "F401" in failed.stdout


def test_without_an_identity_the_files_stay_staged(tmp_path: Path) -> None:
    """No user.name/user.email anywhere git looks (empty HOME and XDG config, no global or
    system config, no GIT_* identity): Copier's command line still succeeds, nothing is
    committed, everything is staged, and one line says so and how to commit."""
    home = tmp_path / "home"
    home.mkdir()
    identity = {
        f"GIT_{who}_{part}" for who in ("AUTHOR", "COMMITTER") for part in ("NAME", "EMAIL")
    }
    env = {key: value for key, value in os.environ.items() if key not in {*identity, "EMAIL"}}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        GIT_CONFIG_GLOBAL="/dev/null",
        GIT_CONFIG_NOSYSTEM="1",
        # What an empty HOME would also take away, and the test does not stand in for: the
        # machine's uv cache and pyenv (its shims find their root through HOME).
        UV_CACHE_DIR=run(["uv", "cache", "dir"], cwd=tmp_path).stdout.strip(),
        PYENV_ROOT=os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv")),
    )
    repo = tmp_path / "repo"
    copier = [sys.executable, "-m", "copier", "copy", "--trust", "--defaults", "--quiet"]
    result = run([*copier, "--vcs-ref", "HEAD", str(TEMPLATE), str(repo)], cwd=tmp_path, env=env)

    assert (repo / "uv.lock").is_file()
    head = run(["git", "rev-parse", "--quiet", "--verify", "HEAD"], cwd=repo, check=False)
    assert head.returncode != 0, "no commit without an identity"
    staged = set(git(repo, "diff", "--cached", "--name-only").splitlines())
    assert {"uv.lock", "pyproject.toml", ".copier-answers.yml", "README.md"} <= staged
    status = git(repo, "status", "--porcelain", "--untracked-files=all").splitlines()
    assert not [line for line in status if line.startswith("??")], status
    notices = [line for line in result.stderr.splitlines() if "not committed" in line]
    assert len(notices) == 1, result.stderr
    assert "git has no user.name/user.email" in notices[0]
    assert 'git commit -m "Generate from copier-uv-monorepo' in notices[0]
