"""A generated repo works with the newest uv on the index, and refuses an older one in one line.

Stands in for a newcomer who installed uv this week, not the template's pin: README's command
1, verbatim, and the generated repo's daily commands run with the newest uv release on the
package index first on PATH (installed for the test beside the machine's uv, see
`uv_index.py`). When the newest release is the pin itself the checks still run, and then
prove nothing beyond the rest of the suite. The pinned uv (extensions/context.py, what
`.ci/run` installs and the generated CI uses) is what every other module runs with.

The other side of the floor: a uv older than `[tool.uv] required-version` (the newest release
below it) is refused by uv itself, with one line that names the floor.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import uv_index
from conftest import run
from gitrepo import git
from test_first_commit import hook_names, hook_results
from test_readme import clone_checkout, generate

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def newest(uv_from_index) -> uv_index.Release:
    return uv_from_index("uv")


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, newest: uv_index.Release) -> Path:
    """README's command 1, verbatim, with the newest uv, in a fresh clone of this checkout."""
    clone = clone_checkout(tmp_path_factory.mktemp("newest-uv"))
    return generate(clone, env=newest.env)


def uv(release: uv_index.Release, *args: str, cwd: Path, check: bool = True):
    return run(list(args), cwd=cwd, env=release.env, check=check)


def floor(repo: Path) -> str:
    return tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["uv"]["required-version"]


def test_readme_command_1_runs_with_the_newest_uv(repo: Path, newest: uv_index.Release) -> None:
    """The generation's own `uv lock` tasks ran under the newest uv (the floor lets it), and
    the repo starts committed and clean."""
    version = uv(newest, "uv", "--version", cwd=repo).stdout.split()[1]
    assert version == newest.version
    assert floor(repo).startswith(">="), floor(repo)
    assert (repo / "uv.lock").is_file()
    assert git(repo, "rev-list", "--count", "HEAD") == "1"
    assert not git(repo, "status", "--porcelain")


@pytest.mark.parametrize("target", ["sync", "test", "typecheck", "lint", "lock-check"])
def test_make_targets_pass_with_the_newest_uv(
    repo: Path, newest: uv_index.Release, target: str
) -> None:
    uv(newest, "make", target, cwd=repo)


def test_pre_commit_hooks_run_with_the_newest_uv(
    repo: Path, newest: uv_index.Release, tmp_path: Path
) -> None:
    """Every hook runs (the files are committed, so none is skipped) and passes."""
    env = {**newest.env, "PRE_COMMIT_HOME": str(tmp_path / "pre-commit")}
    result = run(["uv", "run", "pre-commit", "run", "--all-files"], cwd=repo, env=env)
    assert hook_results(result.stdout) == dict.fromkeys(hook_names(repo), "Passed"), result.stdout


def test_an_older_uv_is_refused_in_one_line(repo: Path, uv_from_index) -> None:
    """The newest release below the floor: `make sync` fails at once with uv's own line
    naming the floor (make adds its error line), no traceback; the generated README quotes
    that line as uv prints it."""
    required = floor(repo)
    older = uv_from_index(f"uv<{required.removeprefix('>=')}")
    refused = uv(older, "make", "sync", cwd=repo, check=False)
    assert refused.returncode != 0
    output = (refused.stdout + refused.stderr).strip().splitlines()
    uv_lines = [line for line in output if not line.startswith("make")]
    # One message: uv wraps it at the terminal's width (COLUMNS), continuation lines indented.
    assert uv_lines and uv_lines[0].startswith("error: "), output
    assert all(line[:1].isspace() for line in uv_lines[1:]), output
    message = " ".join(" ".join(uv_lines).split())
    assert f"Required uv version `{required}`" in message, output
    assert f"`{older.version}`" in message, output
    assert "Traceback" not in refused.stderr
    quoted = [
        line.replace("<yours>", older.version)
        for line in (repo / "README.md").read_text().splitlines()
        if line.startswith("error: Required uv version")
    ]
    assert quoted == [message], "README.md's quote of uv's refusal is not what uv prints"


def test_switch_layout_with_the_newest_uv(repo: Path, newest: uv_index.Release) -> None:
    """Last: it rewrites the repo. Copier (through uvx), the relock and the commit run under
    the newest uv, and the moved repo's lock check passes."""
    uv(newest, "make", "switch-layout", "LAYOUT=independent", cwd=repo)
    assert (repo / "src/nt_common/uv.lock").is_file()
    assert not git(repo, "status", "--porcelain")
    uv(newest, "make", "lock-check", cwd=repo)
