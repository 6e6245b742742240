"""The generated CI's own steps, run verbatim on generated repos in both layouts.

What passes here is what the workflow runs; what a team breaks (an undeclared import, a
stale or conflicting lock, an unresolved update) fails here as it would on GitHub.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import gha
import pytest
from conftest import copy_template, run
from gitrepo import append, commit_all, git

pytestmark = pytest.mark.slow

API, COMMON, INGESTION = "nt_api", "nt_common", "nt_ingestion"


def ci(repo: Path) -> dict:
    return gha.load(repo / ".github" / "workflows" / "ci.yml")


def run_test_job(repo: Path, package: str) -> list[gha.StepRun]:
    results, _ = gha.run_job(repo, ci(repo), "test", {"matrix.package": package})
    return results


def declare(repo: Path, package: str, requirement: str) -> None:
    """Add a requirement to a package's [project] dependencies."""
    path = repo / "src" / package / "pyproject.toml"
    text = path.read_text()
    assert "dependencies = [\n" in text
    path.write_text(
        text.replace("dependencies = [\n", f'dependencies = [\n    "{requirement}",\n', 1)
    )


def relock(repo: Path, *packages: str) -> None:
    """Lock as a team would after editing requirements: the root, or each changed project."""
    if (repo / "src" / COMMON / "uv.lock").exists():
        for package in packages:
            run(["uv", "lock", "--quiet", "--project", f"src/{package}"], cwd=repo)
    else:
        run(["uv", "lock", "--quiet"], cwd=repo)


@pytest.fixture(scope="module", params=["shared", "independent"])
def project(request: pytest.FixtureRequest, make_project: Callable[..., Path]) -> Path:
    repo = make_project(fresh=True, workspace_layout=request.param)
    commit_all(repo, "Generated")
    return repo


def test_every_ci_job_passes_on_a_fresh_project(project: Path) -> None:
    """The affected job lists every package of a first push; each one's job, locks, lint pass."""
    workflow = ci(project)
    results, outputs = gha.run_job(
        project, workflow, "affected", {gha.CI_BASE_EXPRESSION: "0" * 40}
    )
    assert all(r.returncode == 0 for r in results), gha.describe(results)
    packages = json.loads(outputs["packages"])
    assert packages == [API, COMMON, INGESTION]
    for package in packages:
        results = run_test_job(project, package)
        # sync, tests (with coverage), type check
        assert [r.returncode for r in results] == [0, 0, 0], gha.describe(results)
        assert re.search(r"\d+ passed", results[1].output), results[1].output
        assert "Success: no issues found" in results[2].output, results[2].output
    for job in ("locks", "lint"):
        results, _ = gha.run_job(project, workflow, job)
        assert all(r.returncode == 0 for r in results), gha.describe(results)


def test_affected_job_output_feeds_the_matrix(project: Path) -> None:
    base = commit_all(project, "Base")
    append(project / "src" / API / API / "job.py", "\n# touched\n")
    commit_all(project, "Touch api")
    _, outputs = gha.run_job(project, ci(project), "affected", {gha.CI_BASE_EXPRESSION: base})
    assert json.loads(outputs["packages"]) == [API]


@pytest.mark.parametrize("layout", ["shared", "independent"])
def test_an_undeclared_import_fails_only_in_the_isolated_run(
    layout: str, make_project: Callable[..., Path]
) -> None:
    """api imports a library that only ingestion declares: the shared venv would hide it.

    attrs ships its own types, so once declared it passes the type check step too.
    """
    repo = make_project(fresh=True, workspace_layout=layout)
    declare(repo, INGESTION, "attrs")
    relock(repo, INGESTION)
    (repo / "src" / API / API / "compat.py").write_text(
        "import attrs\n\n\n@attrs.define\nclass Point:\n    x: int\n"
    )
    commit_all(repo, "api uses attrs without declaring it")

    if layout == "shared":
        # One venv for everything (what an IDE user has): the import works by accident.
        run(["uv", "sync", "--locked", "--all-packages"], cwd=repo)
        hidden = run(["uv", "run", "--no-sync", "--directory", f"src/{API}", "pytest"], cwd=repo)
        assert "passed" in hidden.stdout

    results = run_test_job(repo, API)
    assert results[0].returncode == 0, gha.describe(results)
    assert results[-1].returncode != 0, gha.describe(results)
    assert "No module named 'attrs'" in results[-1].output

    declare(repo, API, "attrs")
    relock(repo, API)
    commit_all(repo, "api declares attrs")
    results = run_test_job(repo, API)
    assert [r.returncode for r in results] == [0, 0, 0], gha.describe(results)


@pytest.mark.parametrize(
    ("requirement", "message"),
    [("six", "needs to be updated"), ("pyyaml<6", "No solution found")],
    ids=["stale", "conflicting"],
)
def test_lock_job_fails_on_a_stale_or_conflicting_lock(
    project: Path, requirement: str, message: str
) -> None:
    """api gains a requirement without a relock (stale), or one common's excludes (conflict)."""
    path = project / "src" / API / "pyproject.toml"
    original = path.read_text()
    try:
        declare(project, API, requirement)
        results, _ = gha.run_job(project, ci(project), "locks")
        assert results[-1].returncode != 0, gha.describe(results)
        assert message in results[-1].output
    finally:
        path.write_text(original)
    results, _ = gha.run_job(project, ci(project), "locks")
    assert results[-1].returncode == 0, gha.describe(results)


@pytest.mark.parametrize(
    ("relative", "content"),
    [
        (
            f"src/{API}/{API}/job.py",
            "<<<<<<< before updating\nx = 1\n=======\nx = 2\n>>>>>>> after updating\n",
        ),
        ("Makefile.rej", "@@ -1 +1 @@\n-old\n+new\n"),
    ],
    ids=["markers", "rej-file"],
)
def test_lint_job_fails_on_unresolved_update_conflicts(
    project: Path, relative: str, content: str
) -> None:
    path = project / relative
    original = path.read_text() if path.exists() else None
    try:
        append(path, content)
        commit_all(project, "Unresolved update")
        results, _ = gha.run_job(project, ci(project), "lint")
        assert results[0].name.startswith("No unresolved conflicts"), gha.describe(results)
        assert results[0].returncode != 0
        assert relative in results[0].output
    finally:
        if original is None:
            path.unlink()
        else:
            path.write_text(original)
        commit_all(project, "Resolved")


def test_stale_locks_are_all_named_with_make_lock_as_the_fix(project: Path) -> None:
    """common gains a dependency: in the independent layout every lock that holds common goes
    stale (uv's own hint, `uv lock`, changes nothing at the root). lock-check names each one,
    and sync and test say `make lock`, not a bare uv error."""
    path = project / "src" / COMMON / "pyproject.toml"
    original = path.read_text()
    independent = (project / "src" / COMMON / "uv.lock").exists()
    try:
        declare(project, COMMON, "six")
        checked = run(["make", "lock-check"], cwd=project, check=False)
        output = checked.stdout + checked.stderr
        assert checked.returncode != 0
        stale = re.findall(r"^  (\S*uv\.lock)$", output, re.MULTILINE)
        if independent:
            assert stale == [f"src/{p}/uv.lock" for p in (API, COMMON, INGESTION)], output
        else:
            assert stale == ["uv.lock"], output
        assert "Run `make lock`" in output and "Traceback" not in output
        for target in ("sync", "test"):
            result = run(["make", target], cwd=project, check=False)
            assert result.returncode != 0
            # make test prints each package's captured output whole, on stdout.
            assert "Run `make lock`" in result.stdout + result.stderr, result.stdout + result.stderr
    finally:
        path.write_text(original)
    run(["make", "lock-check"], cwd=project)


def test_a_conflicted_file_is_listed_once_per_marker(project: Path) -> None:
    """While git holds a file unmerged it lists it once per index stage; the check reads it
    once (a real merge conflict stands in for the one `copier update` leaves)."""
    job = project / "src" / API / API / "job.py"
    start = git(project, "rev-parse", "HEAD")
    git(project, "switch", "--quiet", "--create", "side")
    append(job, "\nSIDE = 1\n")
    commit_all(project, "side")
    git(project, "switch", "--quiet", "-")
    append(job, "\nMAIN = 1\n")
    commit_all(project, "main")
    try:
        merge = run(["git", "merge", "--quiet", "side"], cwd=project, check=False)
        assert merge.returncode != 0 and "UU" in git(project, "status", "--short")
        result = run(["make", "check-conflicts"], cwd=project, check=False)
        assert result.returncode != 0
        lines = result.stdout.splitlines()
        assert len(lines) == 2 and len(set(lines)) == 2, result.stdout
        assert all(line.startswith(f"src/{API}/{API}/job.py:") for line in lines)
    finally:
        git(project, "merge", "--abort")
        git(project, "reset", "--quiet", "--hard", start)
        git(project, "branch", "--quiet", "-D", "side")


def test_release_plan_step_splits_ecs_and_lambda(project: Path, monkeypatch) -> None:
    cd = gha.load(project / ".github" / "workflows" / "cd.yml")
    # What checkout (fetch-depth 0) and the runner provide: main's ref, the commit released.
    head = git(project, "rev-parse", "HEAD")
    git(project, "update-ref", "refs/remotes/origin/main", head)
    monkeypatch.setenv("GITHUB_SHA", head)
    version = re.search(
        r'^version = "(.+)"$', (project / "src" / API / "pyproject.toml").read_text(), re.M
    )[1]
    expressions = {
        "vars.AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/release",
        "github.ref_type == 'tag' && github.ref_name || ''": f"{API}/v{version}",
        "inputs.packages": "",
        "inputs.rollback_package": "",
        "inputs.rollback_version": "",
        "vars.ARTIFACTS_BUCKET": "bucket",
        "vars.ECR_REPOSITORY_PREFIX": "",
    }
    results, outputs = gha.run_job(project, cd, "plan", expressions)
    assert all(r.returncode == 0 for r in results), gha.describe(results)
    assert json.loads(outputs["ecs"]) == [{"package": API, "version": version}]
    assert json.loads(outputs["lambda"]) == []

    expressions["github.ref_type == 'tag' && github.ref_name || ''"] = ""
    _, outputs = gha.run_job(project, cd, "plan", expressions)
    assert [e["package"] for e in json.loads(outputs["ecs"])] == [API]
    assert [e["package"] for e in json.loads(outputs["lambda"])] == [INGESTION]

    expressions["github.ref_type == 'tag' && github.ref_name || ''"] = f"{API}/v9.9.9"
    results, _ = gha.run_job(project, cd, "plan", expressions)
    assert results[-1].returncode != 0 and "does not match" in results[-1].output

    expressions["vars.AWS_ROLE_ARN"] = ""
    results, _ = gha.run_job(project, cd, "plan", expressions)
    assert results[0].returncode != 0 and "AWS_ROLE_ARN" in results[0].output


@pytest.mark.parametrize("spelling", ["1.0-rc1", "1.0+local", "01.0", "v1.0"])
def test_release_plan_refuses_a_version_cd_would_name_differently(
    project: Path, spelling: str
) -> None:
    """A release's S3 keys and ECR tags are named by the version in canonical PEP 440 form
    (upload_all.py, the runtime); another spelling stops the plan before anything is built."""
    pyproject = project / "src" / API / "pyproject.toml"
    original = pyproject.read_text()
    try:
        changed = re.sub(r'^version = ".+"$', f'version = "{spelling}"', original, flags=re.M)
        pyproject.write_text(changed)
        plan = ["python3", "scripts/release_plan.py", "--tag", "v1"]
        result = run(plan, cwd=project, check=False)
        assert result.returncode != 0
        assert f"{API} has version {spelling!r}" in result.stderr, result.stderr
        assert "canonical PEP 440" in result.stderr
    finally:
        pyproject.write_text(original)
    plan = run(["python3", "scripts/release_plan.py", "--tag", "v1"], cwd=project)
    assert json.loads(plan.stdout)["ecs"]


def test_makefile_ci_targets_run_the_same_checks(project: Path) -> None:
    base = commit_all(project, "Base")
    append(project / "src" / COMMON / COMMON / "settings.py", "\n# touched\n")
    commit_all(project, "Touch common")
    listed = run(["make", "--no-print-directory", "affected", f"BASE={base}"], cwd=project)
    assert json.loads(listed.stdout) == [API, COMMON, INGESTION]
    run(["make", "check-conflicts"], cwd=project)
    tested = run(["make", "ci-test", f"PACKAGE={API}"], cwd=project)
    assert re.search(r"\d+ passed", tested.stdout), tested.stdout


@pytest.mark.parametrize(
    ("results", "passes"),
    [
        ("success success success success", True),
        ("success skipped success success", True),
        ("success failure success success", False),
        ("success cancelled success success", False),
    ],
)
def test_ci_passed_job_gates_on_every_job(project: Path, results: str, passes: bool) -> None:
    workflow = ci(project)
    assert workflow["jobs"]["ci-passed"]["needs"] == [
        j for j in workflow["jobs"] if j != "ci-passed"
    ]
    steps, _ = gha.run_job(project, workflow, "ci-passed", {"join(needs.*.result, ' ')": results})
    assert (steps[-1].returncode == 0) == passes, gha.describe(steps)


@pytest.mark.parametrize("layout", ["shared", "independent"])
def test_packages_added_later_join_ci_and_cd_without_edits(
    layout: str, make_project: Callable[..., Path]
) -> None:
    """`make new-package` output is found, tested in isolation and released by kind."""
    repo = make_project(fresh=True, workspace_layout=layout)
    base = commit_all(repo, "Generated")
    for package_type in ("library", "ecs", "lambda"):
        copy_template(
            repo,
            tasks=True,
            template_kind="package",
            package_name=f"new_{package_type}",
            package_type=package_type,
        )
    commit_all(repo, "Add a package of every type")
    added = ["nt_new_ecs", "nt_new_lambda", "nt_new_library"]

    _, outputs = gha.run_job(repo, ci(repo), "affected", {gha.CI_BASE_EXPRESSION: base})
    everything = sorted([API, COMMON, INGESTION, *added])
    # The shared lock changed with them, which touches every package; own locks don't.
    assert json.loads(outputs["packages"]) == (everything if layout == "shared" else added)
    for package in added:
        results = run_test_job(repo, package)
        assert [r.returncode for r in results] == [0, 0, 0], gha.describe(results)

    # They depend on common, so a change there reaches them too.
    append(repo / "src" / COMMON / COMMON / "settings.py", "\n# touched\n")
    commit_all(repo, "Touch common")
    _, outputs = gha.run_job(repo, ci(repo), "affected", {gha.CI_BASE_EXPRESSION: base})
    assert json.loads(outputs["packages"]) == everything

    plan = run(["python3", "scripts/release_plan.py", "--tag", "v1.0.0"], cwd=repo)
    kinds = json.loads(plan.stdout)
    assert [e["package"] for e in kinds["ecs"]] == [API, "nt_new_ecs"]
    assert [e["package"] for e in kinds["lambda"]] == [INGESTION, "nt_new_lambda"]
