"""README.md's set-up commands, run as written, give a repo that adds packages and updates.

The commands are read from README.md's text, so the tests break when README and behaviour
drift. Copier records a local template source as typed (copier#335); the template records it
absolute, and the generated Makefile reads the answers with a YAML parser.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from conftest import TEMPLATE, copy_template, run
from gitrepo import commit_all, git

pytestmark = pytest.mark.slow

README = TEMPLATE / "README.md"
CI_RUN = TEMPLATE / ".ci" / "run"


def setup_commands() -> list[str]:
    """The commands of the fenced bash block under README.md's "## Set up", comments left out."""
    section = re.search(r"^## Set up\n(.*?)(?=^## |\Z)", README.read_text(), re.S | re.M)
    assert section, "README.md has no '## Set up' section"
    blocks = re.findall(r"^```bash\n(.*?)^```", section[1], re.S | re.M)
    assert len(blocks) == 1, f"'## Set up' must hold one ```bash block, found {len(blocks)}"
    lines = blocks[0].replace("\\\n", " ").splitlines()
    commands = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    assert len(commands) == 2, (
        "'## Set up' must give exactly two commands (generate, run the suite), found "
        f"{len(commands)}: {commands}"
    )
    return commands


def answers(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


@pytest.fixture
def fresh_clone(tmp_path: Path) -> Path:
    return clone_checkout(tmp_path)


def clone_checkout(folder: Path) -> Path:
    """`git clone` of this checkout into `folder`, its uncommitted edits committed on top.

    Cloned without tags: Copier takes a checkout's newest release tag, and the tests must
    generate (and update to) this working tree, not an older release.
    """
    clone = folder / "copier-uv-monorepo"
    run(["git", "clone", "--quiet", "--no-tags", str(TEMPLATE), str(clone)], cwd=clone.parent)
    for child in clone.iterdir():
        if child.name == ".git":
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    listed = run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=TEMPLATE
    ).stdout
    for name in filter(None, listed.split("\0")):
        source, target = TEMPLATE / name, clone / name
        if not source.exists() and not source.is_symlink():
            continue  # deleted in the working tree, not yet committed
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)
    if git(clone, "status", "--porcelain"):
        commit_all(clone, "the checkout's uncommitted edits")
    return clone


def generate(clone: Path, env: dict[str, str] | None = None) -> Path:
    """README's command 1, verbatim, run in the clone (in `env`, say with another uv first on
    PATH); its destination (`../my-monorepo`) lands next to the clone, inside the test's
    temporary folder."""
    command = setup_commands()[0]
    repo = (clone / shlex.split(command)[-1]).resolve()
    assert repo.parent == clone.parent.resolve(), f"command 1 writes outside the test: {command}"
    run(["bash", "-c", command], cwd=clone, env=env)
    assert (repo / ".copier-answers.yml").is_file(), f"command 1 generated no repo at {repo}"
    return repo


def release_an_improvement(clone: Path, marker: str) -> None:
    """A newer template commit changing a root file and the library package's code."""
    with (clone / "template/project/.editorconfig").open("a") as f:
        f.write(f"# {marker}\n")
    core = next((clone / "template/package").rglob("*%}core.py{%*.jinja"))
    with core.open("a") as f:
        f.write(f"# {marker}\n")
    commit_all(clone, marker)


def test_readme_commands_give_a_repo_that_adds_packages_and_updates(fresh_clone: Path) -> None:
    """Command 1 from a fresh clone records an absolute source and commits what it generated
    (git has an identity here); then `make new-package`, `make update` and `make
    update-packages` in the generated repo work at once and do what they say (a package whose
    tests pass, template changes pulled in and committed)."""
    repo = generate(fresh_clone)
    root_answers = repo / ".copier-answers.yml"
    source = answers(root_answers)["_src_path"]
    assert Path(source).is_absolute() and Path(source).resolve() == fresh_clone.resolve(), source
    # Copier updates only a committed tree: the generation's own first commit is enough.
    assert git(repo, "rev-list", "--count", "HEAD") == "1"
    assert not git(repo, "status", "--porcelain")

    run(["make", "new-package", "NAME=billing"], cwd=repo)
    assert (repo / "src/nt_billing/nt_billing/core.py").is_file()
    package_answers = repo / ".copier/package-billing.yml"
    assert answers(package_answers)["_src_path"] == source
    tests = run(["make", "test"], cwd=repo).stdout
    assert "== nt_billing" in tests and " passed" in tests, tests
    commit_all(repo, "add billing")

    release_an_improvement(fresh_clone, "improved by the next template commit")
    run(["make", "update"], cwd=repo)
    assert "improved by the next template commit" in (repo / ".editorconfig").read_text()
    assert answers(root_answers)["_src_path"] == source, "an update must keep the absolute source"
    recorded_commit = answers(root_answers)["_commit"]
    assert git(fresh_clone, "rev-parse", recorded_commit) == git(fresh_clone, "rev-parse", "HEAD")
    commit_all(repo, "update the root")

    run(["make", "update-packages"], cwd=repo)
    core = (repo / "src/nt_billing/nt_billing/core.py").read_text()
    assert "improved by the next template commit" in core
    assert answers(package_answers)["_src_path"] == source
    assert "Update .copier/package-billing.yml" in git(repo, "log", "-1", "--format=%s")
    assert not git(repo, "status", "--porcelain"), "update-packages commits what it updates"


def test_readme_test_command_is_what_ci_runs() -> None:
    """Command 2 is the whole suite (this test among it): `.ci/run` runs it as written."""
    command = setup_commands()[1]
    assert command in CI_RUN.read_text().splitlines(), f"{CI_RUN} does not run {command!r}"


@pytest.fixture
def repo(fresh_clone: Path, tmp_path: Path) -> Path:
    """A repo generated from the clone (an absolute source) and committed."""
    repo = copy_template(tmp_path / "repo", tasks=True, src=fresh_clone)
    commit_all(repo, "generated")
    return repo


def test_quoted_answers_still_add_a_package(repo: Path, fresh_clone: Path) -> None:
    """`_commit` and `_src_path` quoted in the answers file (valid YAML, as a YAML tool or a
    person may write them) are read as the same values by `make new-package`."""
    path = repo / ".copier-answers.yml"
    recorded = answers(path)
    commit, source = recorded["_commit"], recorded["_src_path"]
    text = path.read_text()
    for plain, quoted in (
        (f"_commit: {commit}\n", f"_commit: '{commit}'\n"),
        (f"_src_path: {source}\n", f'_src_path: "{source}"\n'),
    ):
        assert plain in text, text
        text = text.replace(plain, quoted)
    path.write_text(text)
    assert answers(path) == recorded, "the quoted file holds the same answers"
    commit_all(repo, "answers quoted")

    run(["make", "new-package", "NAME=quoted"], cwd=repo)
    assert (repo / "src/nt_quoted/nt_quoted/core.py").is_file()
    assert answers(repo / ".copier/package-quoted.yml")["_src_path"] == source


def test_relative_source_in_an_old_repo_is_refused_with_the_fix(repo: Path) -> None:
    """A repo generated before this fix records `_src_path: .`: the template targets refuse it
    with what to write instead, before Copier runs, and leave the repo as it was."""
    path = repo / ".copier-answers.yml"
    path.write_text(re.sub(r"(?m)^_src_path: .*$", "_src_path: .", path.read_text()))
    commit_all(repo, "an answers file from before the fix")
    for target in (["new-package", "NAME=x"], ["update"], ["switch-layout", "LAYOUT=independent"]):
        refused = run(["make", *target], cwd=repo, check=False)
        assert refused.returncode != 0, target
        assert "records the template source as '.'" in refused.stderr, refused.stderr
        assert "absolute path or git URL" in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr, refused.stderr
    assert not (repo / "src/nt_x").exists()
    assert not git(repo, "status", "--porcelain")


def test_git_url_source_is_recorded_as_typed(fresh_clone: Path, tmp_path: Path) -> None:
    """A git URL stays as typed in both kinds' answers, and `make new-package` uses it."""
    url = f"git+file://{fresh_clone}"
    repo = copy_template(tmp_path / "repo", tasks=True, src=url)
    assert answers(repo / ".copier-answers.yml")["_src_path"] == url
    commit_all(repo, "generated")
    run(["make", "new-package", "NAME=viaurl"], cwd=repo)
    assert answers(repo / ".copier/package-viaurl.yml")["_src_path"] == url


def test_package_kind_typed_with_a_relative_source_records_it_absolute(
    repo: Path, fresh_clone: Path
) -> None:
    """Adding a package by hand with a relative template path records the absolute one."""
    relative = os.path.relpath(fresh_clone, repo)
    assert relative.startswith(".."), relative
    cmd = [sys.executable, "-m", "copier", "copy", "--trust", "--defaults", "--quiet"]
    cmd += ["--data", "template_kind=package", "--data", "package_name=byhand"]
    run([*cmd, relative, "."], cwd=repo)
    source = answers(repo / ".copier/package-byhand.yml")["_src_path"]
    assert Path(source).is_absolute() and Path(source).resolve() == fresh_clone.resolve(), source
