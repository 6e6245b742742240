"""CI catches a dependency the deploy build cannot install, before merge.

The images install third-party dependencies only as wheels made for the target (`--no-build`
with `--python-platform`): a dependency with no such wheel passes the tests and the lock check
and failed only at release. Here a team adds one with `uv add` in a generated repo (a real
lock, from the package index), and the generated CI's wheel-check job (its `run:` steps
verbatim, tests/gha.py) and `make wheel-check` must each name it in one line; without it, or
for a target that has the wheel, they pass; a docs-only change starts no check.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import builder
import gha
import pytest
from conftest import run
from gitrepo import append, commit_all

pytestmark = pytest.mark.slow

# The builder tier's session fixture (buildah/podman and the stand-in base images).
container_builder = builder.container_builder

API, INGESTION = "nt_api", "nt_ingestion"
EVERY_PACKAGE = "0" * 40  # a base git cannot diff against: the affected job lists everything

NUMPY_ON_AL2 = re.compile(
    r"nt_ingestion: numpy==(\S+) has no wheel for x86_64 Lambda on Python 3\.11"
    r" \(Amazon Linux 2, glibc 2\.26, manylinux_2_17\): pin a version with a manylinux2014"
    r" wheel, or move the function to Python 3\.12\+ \(Amazon Linux 2023, glibc 2\.34\)"
)


def docopt_only_sdist(package: str, target: str) -> re.Pattern[str]:
    return re.compile(
        rf"{package}: docopt==(\S+) has no wheel at all, only a source distribution, and the"
        rf" {target} installs only wheels built for its target, .*: use a version or a"
        r" replacement that publishes wheels"
    )


def ci(repo: Path) -> dict:
    return gha.load(repo / ".github" / "workflows" / "ci.yml")


def affected(repo: Path, base: str) -> str:
    """The affected job's `packages` output for HEAD against `base`."""
    results, outputs = gha.run_job(repo, ci(repo), "affected", {gha.CI_BASE_EXPRESSION: base})
    assert all(r.returncode == 0 for r in results), gha.describe(results)
    return outputs["packages"]


def wheel_check_job(repo: Path, packages: str) -> gha.StepRun | None:
    """Run CI's wheel-check job as GitHub would: skipped (None) unless its `if` holds."""
    job = ci(repo)["jobs"]["wheel-check"]
    # The one condition the job may have: the same as the test matrix's.
    assert job["if"] == "needs.affected.outputs.packages != '[]'"
    if packages == "[]":
        return None
    results, _ = gha.run_job(
        repo, ci(repo), "wheel-check", {"needs.affected.outputs.packages": packages}
    )
    (step,) = results
    return step


def add(repo: Path, package: str, *requirements: str) -> str:
    """`uv add` in the package's folder, as a team would (it locks too), and commit."""
    run(["uv", "add", "--quiet", *requirements], cwd=repo / "src" / package)
    return commit_all(repo, f"{package} uses {', '.join(requirements)}")


def pinned(repo: Path, package: str, name: str) -> str:
    """Every `name==version` line of the package's export (what the images install)."""
    own = repo / "src" / package
    project = own if (own / "uv.lock").exists() else repo
    exported = run(
        ["uv", "export", "--frozen", "--no-dev", "--no-hashes", "--package", package],
        cwd=project,
    ).stdout
    return " ".join(re.findall(rf"^{name}==\S+", exported, re.MULTILINE))


def lines(output: str, package: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(f"{package}:")]


def test_numpy_on_a_python_3_11_x86_64_lambda_fails_before_merge(
    make_project: Callable[..., Path],
) -> None:
    """numpy's cp311 wheels need glibc 2.27 or 2.28; Python 3.11's Lambda runtime (Amazon
    Linux 2) has 2.26, and the image installs x86_64-manylinux_2_17 wheels only. The tests and
    the lock check pass with it: only the wheel check fails, and names the way out."""
    repo = make_project(fresh=True, python_version="3.11", lambda_architecture="x86_64")

    # The repo as generated: every deployable package passes, the library is left alone.
    step = wheel_check_job(repo, affected(repo, EVERY_PACKAGE))
    assert step is not None and step.returncode == 0, step
    assert lines(step.output, API) == [
        f"{API}: OK, every dependency has a wheel for x86_64 ECS on Python 3.11"
        " (Debian bookworm, glibc 2.36, manylinux_2_36)"
    ], step.output
    assert lines(step.output, INGESTION) == [
        f"{INGESTION}: OK, every dependency has a wheel for x86_64 Lambda on Python 3.11"
        " (Amazon Linux 2, glibc 2.26, manylinux_2_17)"
    ], step.output

    base = commit_all(repo, "Base")
    add(repo, INGESTION, "numpy")
    packages = affected(repo, base)
    # The shared lock changed: that affects every package (it may move any one's versions).
    assert json.loads(packages) == [API, "nt_common", INGESTION]

    # What CI checked before: the function's tests and the locks pass with numpy in.
    for job, expressions in (("test", {"matrix.package": INGESTION}), ("locks", {})):
        results, _ = gha.run_job(repo, ci(repo), job, expressions)
        assert all(r.returncode == 0 for r in results), gha.describe(results)

    step = wheel_check_job(repo, packages)
    assert step is not None and step.returncode != 0, step.output
    (message,) = lines(step.output, INGESTION)
    found = NUMPY_ON_AL2.fullmatch(message)
    assert found, step.output
    # Every package is checked before the job fails: the ECS job is fine.
    assert lines(step.output, API)[0].startswith(f"{API}: OK"), step.output
    assert f"numpy=={found[1]}" in pinned(repo, INGESTION, "numpy")
    assert "Traceback" not in step.output

    made = run(["make", "wheel-check"], cwd=repo, check=False)
    assert made.returncode != 0
    assert lines(made.stdout, INGESTION) == [message], made.stdout + made.stderr
    assert lines(made.stdout, API)[0].startswith(f"{API}: OK"), made.stdout

    # A docs-only change affects no package: the job does not start, numpy or not.
    base = commit_all(repo, "numpy in")
    append(repo / "README.md", "\nA note for the team.\n")
    commit_all(repo, "Docs only")
    assert wheel_check_job(repo, affected(repo, base)) is None

    # Two dependencies without a wheel in one package: both named, one line each.
    add(repo, INGESTION, "docopt")
    step = wheel_check_job(repo, json.dumps([INGESTION]))
    assert step is not None and step.returncode != 0
    assert len(lines(step.output, INGESTION)) == 2, step.output
    docopt, numpy = lines(step.output, INGESTION)  # in the export's (alphabetical) order
    assert docopt_only_sdist(INGESTION, "Lambda image").fullmatch(docopt), step.output
    assert NUMPY_ON_AL2.fullmatch(numpy), step.output


def test_an_sdist_only_dependency_of_an_ecs_job_fails_before_merge(
    make_project: Callable[..., Path],
) -> None:
    """docopt publishes a source distribution only; the venv tarball's build installs wheels
    only (an sdist would be built for the build machine). Independent layout: the package's
    own lock."""
    repo = make_project(fresh=True, python_version="3.11", workspace_layout="independent")
    base = commit_all(repo, "Base")
    add(repo, API, "docopt")
    packages = affected(repo, base)
    assert json.loads(packages) == [API]

    step = wheel_check_job(repo, packages)
    assert step is not None and step.returncode != 0, step.output
    (message,) = lines(step.output, API)
    found = docopt_only_sdist(API, "ECS venv tarball").fullmatch(message)
    assert found, step.output
    assert "x86_64 ECS on Python 3.11 (Debian bookworm, glibc 2.36, manylinux_2_36)" in message
    assert f"docopt=={found[1]}" in pinned(repo, API, "docopt")

    made = run(["make", "wheel-check"], cwd=repo, check=False)
    assert made.returncode != 0
    assert lines(made.stdout, API) == [message], made.stdout + made.stderr
    assert lines(made.stdout, INGESTION)[0].startswith(f"{INGESTION}: OK"), made.stdout

    # The same repo without it passes.
    run(["uv", "remove", "--quiet", "docopt"], cwd=repo / "src" / API)
    commit_all(repo, "docopt out")
    step = wheel_check_job(repo, packages)
    assert step is not None and step.returncode == 0, step.output
    assert lines(step.output, API)[0].startswith(f"{API}: OK"), step.output
    run(["make", "wheel-check"], cwd=repo)


def test_numpy_on_an_arm64_python_3_12_lambda_passes(make_project: Callable[..., Path]) -> None:
    """Python 3.12 runs on Amazon Linux 2023 (glibc 2.34): numpy's aarch64 manylinux wheels
    fit, so the same `uv add` passes."""
    repo = make_project(
        fresh=True, python_version="3.12", lambda_architecture="arm64", deploy_targets=["lambda"]
    )
    base = commit_all(repo, "Base")
    add(repo, INGESTION, "numpy")
    packages = affected(repo, base)
    step = wheel_check_job(repo, packages)
    assert step is not None and step.returncode == 0, step.output
    assert lines(step.output, INGESTION) == [
        f"{INGESTION}: OK, every dependency has a wheel for arm64 Lambda on Python 3.12"
        " (Amazon Linux 2023, glibc 2.34, manylinux_2_34)"
    ], step.output
    assert pinned(repo, INGESTION, "numpy")
    run(["make", "wheel-check"], cwd=repo)


# ----------------------------------------------------------------- the check agrees with the build


@pytest.fixture(scope="module")
def unbuildable(make_project: Callable[..., Path]) -> Path:
    """A 3.11 x86_64 repo whose Lambda function uses numpy and whose ECS job uses docopt."""
    repo = make_project(fresh=True, python_version="3.11", lambda_architecture="x86_64")
    add(repo, INGESTION, "numpy")
    add(repo, API, "docopt")
    return repo


def make_build_args(repo: Path) -> dict[str, str]:
    """The build args `make venv` and `make lambda-image` pass (uv and Python versions)."""
    flags = run(["uv", "run", "--quiet", "--no-config", "scripts/pins.py", "build-args"], cwd=repo)
    return dict(arg.split("=", 1) for arg in re.findall(r"--build-arg (\S+)", flags.stdout))


@pytest.mark.containers
def test_the_venv_build_refuses_what_the_check_refuses(
    unbuildable: Path, container_builder, tmp_path: Path
) -> None:
    """The ECS tarball's build (Dockerfile.venv, buildah, stand-in python:3.11-slim-bookworm)
    stops on docopt as the check said it would, with uv's terse `--no-build` error."""
    with pytest.raises(AssertionError, match=r"docopt==\S+ .*--no-build"):
        container_builder.build(
            unbuildable,
            "docker/Dockerfile.venv",
            build_args={**make_build_args(unbuildable), "PACKAGE_NAME": API},
            output=tmp_path / "dist",
        )
    checked = run(["make", "wheel-check"], cwd=unbuildable, check=False)
    assert docopt_only_sdist(API, "ECS venv tarball").fullmatch(lines(checked.stdout, API)[0])


@pytest.mark.containers
def test_the_lambda_build_refuses_what_the_check_refuses(
    unbuildable: Path, container_builder
) -> None:
    """numpy's cp311 wheels need glibc 2.27+: the 3.11 x86_64 image build stops on it
    (manylinux_2_17), as the check says. buildah sees the stand-in base's ENV PYTHON_VERSION
    (3.11.7) where BuildKit sees the build arg (3.11); Dockerfile.lambda's arms match both, so
    the stand-in build is no friendlier than CD's."""
    checked = run(["make", "wheel-check"], cwd=unbuildable, check=False)
    assert NUMPY_ON_AL2.fullmatch(lines(checked.stdout, INGESTION)[0]), checked.stdout
    with pytest.raises(AssertionError, match=r"numpy"):
        container_builder.build(
            unbuildable,
            "docker/Dockerfile.lambda",
            build_args={**make_build_args(unbuildable), "SERVICE_NAME": INGESTION},
            tag="localhost/wheel-check-numpy-al2",
        )
