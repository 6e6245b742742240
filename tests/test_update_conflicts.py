"""Updates that meet the team's edits: real `copier update` (through the generated repo's own
`make update` / `make update-packages`) from a tagged copy of this template.

Each test stands in for a field report: a release touching lines the team changed (the
Makefile, a package's dev dependencies, a module) must stop with the conflicted files listed
once each and what to do next, never a traceback; after the team resolves, locks and commits,
the repo is green. What the team owns (README.md, local.mk) is never touched.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from conftest import copy_template, run
from gitrepo import commit_all, git
from test_update import NEW_SETTINGS_DOC, OLD_SETTINGS_DOC, add_package, as_release_0_1_0, replace_in

pytestmark = pytest.mark.slow

MAKEFILE = "template/project/Makefile.jinja"
PARTIAL = "template/_partials/pyproject.toml.jinja"
# The template's help line, and an older form of it that a release changes.
HELP_FORMAT = "%-14s"
OLD_HELP_FORMAT = "%-12s"
CHECK_CONFLICTS_HELP = "## Fail on conflict markers or .rej files left by a merge or `copier update`"
OLD_CHECK_CONFLICTS_HELP = "## Fail on conflict markers or .rej files"
# A dev dependency the template's packages gain in a release.
NEW_DEV_DEPENDENCY = '    "pytest-cov>=7",\n'


def older_makefile(root: Path) -> None:
    """A release whose Makefile had an older help line and check-conflicts description."""
    replace_in(root / MAKEFILE, HELP_FORMAT, OLD_HELP_FORMAT)
    replace_in(root / MAKEFILE, CHECK_CONFLICTS_HELP, OLD_CHECK_CONFLICTS_HELP)


def without_coverage_plugin(root: Path) -> None:
    """A release whose packages had no pytest-cov in their dev group yet."""
    as_release_0_1_0(root)
    replace_in(root / PARTIAL, NEW_DEV_DEPENDENCY, "")


def make(repo: Path, *args: str) -> tuple[int, str]:
    result = run(["make", *args], cwd=repo, check=False)
    return result.returncode, result.stdout + result.stderr


def assert_stopped_on(output: str, *files: str) -> list[str]:
    """The update stopped cleanly: no traceback, each conflicted file listed (at least one
    line, no line twice), the lock step skipped, and what to do next."""
    assert "Traceback" not in output, output
    listed = re.findall(r"^\s+(\S+):(\d+): conflict marker$", output, re.MULTILINE)
    assert listed, output
    assert len(listed) == len(set(listed)), f"a marker listed twice:\n{output}"
    assert {name for name, _ in listed} == set(files), output
    assert "were not refreshed" in output and "`make lock`" in output and "`git add`" in output
    return [name for name, _ in listed]


def resolve(path: Path, keep: str) -> None:
    """Resolve every conflict in a file as a person would: keep `before` (the team's side),
    `after` (the template's) or `both`."""
    out, side = [], None
    for line in path.read_text().splitlines(keepends=True):
        if line.startswith("<<<<<<<"):
            side = "before"
        elif line.startswith("=======") and side:
            side = "after"
        elif line.startswith(">>>>>>>") and side:
            side = None
        elif side is None or keep in (side, "both"):
            out.append(line)
    path.write_text("".join(out))


def test_team_targets_in_local_mk_and_a_makefile_conflict(template_releases, tmp_path: Path) -> None:
    """A team keeps its targets in local.mk and deletes README.md; a release changes the
    Makefile (and has README.md): the update brings the change, the team target still runs,
    README.md stays deleted. Then the team edits the Makefile line the next release changes:
    the update stops with the Makefile listed (make cannot even parse it) and no traceback;
    resolved, locked and committed, the repo is green."""
    template_releases.release("0.1.0", older_makefile)
    repo = copy_template(
        tmp_path / "repo", tasks=True, src=template_releases.path, vcs_ref="0.1.0"
    )
    (repo / "local.mk").write_text(
        ".PHONY: team-hello\nteam-hello: ## Our own target\n\t@echo hello from the team\n"
    )
    (repo / "README.md").unlink()
    commit_all(repo, "team target in local.mk; README.md deleted")

    template_releases.release("0.2.0")
    code, output = make(repo, "update")
    assert code == 0, output
    makefile = (repo / "Makefile").read_text()
    assert CHECK_CONFLICTS_HELP in makefile and "<<<<<<<" not in makefile
    assert not (repo / "README.md").exists(), "a README.md the team deleted came back"
    assert make(repo, "team-hello") == (0, "hello from the team\n")
    assert "team-hello" in make(repo, "help")[1]
    commit_all(repo, "update to 0.2.0")

    # A direct edit of a line the next release changes.
    replace_in(repo / "Makefile", HELP_FORMAT, "%-20s")
    commit_all(repo, "team widens make help")
    template_releases.release("0.3.0", lambda root: replace_in(root / MAKEFILE, HELP_FORMAT, "%-16s"))
    code, output = make(repo, "update")
    assert code != 0
    assert assert_stopped_on(output, "Makefile")
    assert "`make` cannot read the Makefile" in output
    assert "missing separator" in make(repo, "lock")[1], "make cannot parse a conflicted Makefile"

    resolve(repo / "Makefile", keep="after")
    git(repo, "add", "Makefile")
    assert make(repo, "lock")[0] == 0
    commit_all(repo, "resolved")
    assert make(repo, "check-conflicts")[0] == 0
    code, output = make(repo, "lock-check")
    assert code == 0, output
    assert "%-16s" in (repo / "Makefile").read_text()
    assert make(repo, "team-hello")[0] == 0
    assert not (repo / "README.md").exists()
    assert yaml.safe_load((repo / ".copier-answers.yml").read_text())["_commit"] == "0.3.0"


def test_dev_dependency_and_module_conflicts_stop_cleanly(template_releases, tmp_path: Path) -> None:
    """The team ran `uv add --dev` in a package the template gives a new dev dependency, and
    edited a module's docstring the template rewrites. `make update` stops on the module,
    `make update-packages` on the package's pyproject.toml (which once ended in a
    tomllib traceback from the lock step), each listed once; resolved, locked and committed,
    both finish and the package's tests pass."""
    template_releases.release("0.1.0", without_coverage_plugin)
    repo = copy_template(
        tmp_path / "repo", tasks=True, src=template_releases.path, vcs_ref="0.1.0"
    )
    add_package(repo, "0.1.0", "billing", "library")
    run(["uv", "add", "--quiet", "--dev", "--directory", "src/nt_billing", "six"], cwd=repo)
    module = repo / "src/nt_common/nt_common/settings.py"
    replace_in(module, OLD_SETTINGS_DOC, '"""Team-specific settings, tuned for our dashboards."""')
    (repo / "README.md").write_text("# Our own README\n")
    commit_all(repo, "team work")
    template_releases.release("0.2.0")

    lock_before = (repo / "uv.lock").read_bytes()
    code, output = make(repo, "update")
    assert code != 0
    assert_stopped_on(output, "src/nt_common/nt_common/settings.py")
    assert (repo / "uv.lock").read_bytes() == lock_before, "the lock step ran on conflicts"
    assert not list(repo.rglob("*.rej"))
    assert (repo / "README.md").read_text() == "# Our own README\n"
    text = module.read_text()
    assert "Team-specific settings" in text and NEW_SETTINGS_DOC in text
    resolve(module, keep="before")
    git(repo, "add", "--all")
    assert make(repo, "lock")[0] == 0
    commit_all(repo, "update to 0.2.0, our logging docstring kept")

    pyproject = repo / "src/nt_billing/pyproject.toml"
    code, output = make(repo, "update-packages")
    assert code != 0
    assert_stopped_on(output, "src/nt_billing/pyproject.toml")
    assert "`make update-packages` again" in output
    # lock.py on its own refuses too, naming the file, before any TOML parser sees it.
    code, output = make(repo, "lock")
    assert code != 0 and "Traceback" not in output
    assert "src/nt_billing/pyproject.toml" in output

    resolve(pyproject, keep="both")
    text = pyproject.read_text()
    assert '"six' in text and "pytest-cov>=7" in text
    git(repo, "add", "--all")
    assert make(repo, "lock")[0] == 0
    commit_all(repo, "billing: kept six and the template's pytest-cov")
    code, output = make(repo, "update-packages")
    assert code == 0, output
    answers = yaml.safe_load((repo / ".copier/package-billing.yml").read_text())
    assert answers["_commit"] == "0.2.0"
    assert git(repo, "status", "--porcelain") == ""
    code, output = make(repo, "lock-check")
    assert code == 0, output
    run(["uv", "run", "scripts/ci.py", "test", "--isolated", "nt_billing"], cwd=repo)


def test_lock_names_a_pyproject_that_does_not_parse(make_project, tmp_path: Path) -> None:
    """A hand edit that breaks a pyproject.toml: `make lock` names the file and the line in one
    line, instead of tomllib's traceback."""
    repo = make_project(fresh=True)
    pyproject = repo / "src/nt_api/pyproject.toml"
    pyproject.write_text(pyproject.read_text() + "\nthis is not toml\n")
    code, output = make(repo, "lock")
    assert code != 0
    assert "Traceback" not in output
    assert re.search(r"src/nt_api/pyproject.toml is not valid TOML: .*line \d+", output), output
