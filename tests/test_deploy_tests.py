"""The generated repo tests its own deploy scripts (tests/deploy/), and those tests bite.

A generated repo runs tests/deploy/ with the runtime image's requirements from `make
test-deploy`, at the end of `make test`, and in CI's "Deploy scripts" job when a change can
affect them. Here the same command runs in a generated repo, first as generated, then with
docker/runtime/run_venv.py weakened the way the adversarial review did it (extraction with
tarfile's `fully_trusted` filter; the digest check skipped): each weakening must turn the
generated repo's own tests red, or its CI would stay green over a runtime that runs anything.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import gha
import pytest
from conftest import run
from gitrepo import append, commit_all, git

pytestmark = pytest.mark.slow

RUN_VENV = "docker/runtime/run_venv.py"
# (what the generated run_venv.py says, what the weakened one says instead, tests that must fail)
WEAKENINGS = {
    "fully-trusted-filter": (
        "tf.extractall(folder, filter=check)",
        'tf.extractall(folder, filter="fully_trusted")',
        ["test_extraction_never_leaves_its_folder", "test_a_hard_link_cannot_rewrite_a_sibling"],
    ),
    "no-digest-check": (
        "if actual != expected:",
        "if False:",
        ["test_bytes_that_do_not_match_the_digest_never_run"],
    ),
}


@pytest.fixture(scope="module")
def repo(make_project: Callable[..., Path]) -> Path:
    repo = make_project(fresh=True)
    commit_all(repo, "Generated")
    return repo


def ci_job(repo: Path, job: str) -> list[gha.StepRun]:
    workflow = gha.load(repo / ".github" / "workflows" / "ci.yml")
    results, _ = gha.run_job(repo, workflow, job, stop_on_failure=False)
    return results


def test_make_and_ci_run_every_deploy_test_and_pass(repo: Path) -> None:
    """`make test-deploy` and the CI job (its run: steps, verbatim) collect every file in
    tests/deploy/ and pass; `make test` ends with the same target."""
    (repo / "tests" / "deploy" / "test_added_later.py").write_text(
        "def test_added_later() -> None:\n    pass\n"
    )
    try:
        made = run(["make", "test-deploy"], cwd=repo).stdout
        [step] = ci_job(repo, "deploy-scripts")
    finally:
        (repo / "tests" / "deploy" / "test_added_later.py").unlink()
    for output in (made, step.output):
        assert "tests/deploy/test_run_venv.py" in output and "test_added_later.py" in output
        assert re.search(r"\d+ passed", output) and " failed" not in output, output
    assert step.returncode == 0
    dry = run(["make", "-n", "test"], cwd=repo).stdout
    assert dry.strip().splitlines()[-1] == (
        "uv run --locked --only-group dev --with-requirements docker/runtime/requirements.txt"
        " pytest tests/deploy"
    )


@pytest.fixture(params=WEAKENINGS, ids=list(WEAKENINGS))
def weakened(request: pytest.FixtureRequest, repo: Path) -> Iterator[tuple[Path, list[str]]]:
    original, replacement, failing = WEAKENINGS[request.param]
    path = repo / RUN_VENV
    text = path.read_text()
    assert text.count(original) == 1, f"{RUN_VENV} no longer says {original!r}"
    path.write_text(text.replace(original, replacement))
    try:
        yield repo, failing
    finally:
        path.write_text(text)


def test_a_weakened_runtime_fails_the_generated_tests(weakened: tuple[Path, list[str]]) -> None:
    repo, failing = weakened
    made = run(["make", "test-deploy"], cwd=repo, check=False)
    assert made.returncode != 0, made.stdout
    [step] = ci_job(repo, "deploy-scripts")
    assert step.returncode != 0, step.output
    for name in failing:
        assert f"FAILED tests/deploy/test_run_venv.py::{name}" in made.stdout, made.stdout


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("docker/runtime/run_venv.py", "true"),
        ("docker/runtime/requirements.txt", "true"),
        ("scripts/upload_all.py", "true"),
        ("tests/deploy/test_run_venv.py", "true"),
        ("uv.lock", "true"),
        ("src/nt_api/nt_api/job.py", "false"),
        ("README.md", "false"),
    ],
)
def test_ci_runs_the_deploy_tests_when_a_change_can_affect_them(
    repo: Path, path: str, expected: str
) -> None:
    """The affected job's `deploy` output, which gates the job, from the job's own steps."""
    base = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "checkout", "--quiet", "-B", f"change-{expected}", base)
    try:
        append(repo / path, "\n# changed\n")
        commit_all(repo, f"Change {path}")
        workflow = gha.load(repo / ".github" / "workflows" / "ci.yml")
        results, outputs = gha.run_job(repo, workflow, "affected", {gha.CI_BASE_EXPRESSION: base})
        assert all(r.returncode == 0 for r in results), gha.describe(results)
        assert outputs["deploy"] == expected
        assert json.loads(outputs["packages"]) is not None
        job = workflow["jobs"]["deploy-scripts"]
        assert job["if"] == "needs.affected.outputs.deploy == 'true'"
        assert workflow["jobs"]["affected"]["outputs"]["deploy"] == (
            "${{ steps.affected.outputs.deploy }}"
        )
    finally:
        git(repo, "checkout", "--quiet", "--detach", base)


def test_without_ecs_there_is_nothing_to_test(render: Callable[..., Path]) -> None:
    repo = render(deploy_targets=["lambda"])
    workflow = gha.load(repo / ".github" / "workflows" / "ci.yml")
    assert "deploy-scripts" not in workflow["jobs"]
    assert "test-deploy" not in (repo / "Makefile").read_text()
    assert not list((repo / "tests").rglob("*.py")) if (repo / "tests").exists() else True
