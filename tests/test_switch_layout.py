"""`make switch-layout`: a lived-in repo moves between the two layouts and back, keeping the team's work.

Everything is real: repos generated from a tagged release of this checkout, packages added
with the package kind, dependencies added with `uv add`, and the generated Makefile running
the pinned Copier through uvx. After each switch the repo's own checks and CI steps run.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import builder
import gha
import pytest
import yaml
from conftest import copy_template, run, tree_snapshot
from gitrepo import commit_all, git

pytestmark = pytest.mark.slow

# The builder tier with qemu-user-static and no aarch64 emulation registered: the default
# answers ship Lambda images for arm64.
container_builder = builder.container_builder
arm64_builder = builder.arm64_builder

RELEASE = "0.1.0"
OTHER = {"shared": "independent", "independent": "shared"}
# Root files that only the template writes: after a switch they match a fresh render.
TEMPLATE_OWNED = ("Makefile", "pyproject.toml", "README.md", ".github/", "docker/", "scripts/")


def template_owned(name: str) -> bool:
    return name.startswith(TEMPLATE_OWNED) and not name.endswith(".lock")


LOCAL_SOURCE = re.compile(r'^\S+ = \{ (workspace = true|path = "\.\./\w+") \}$', re.M)


def generate(path: Path, template: Path, layout: str) -> Path:
    repo = copy_template(
        path, tasks=True, src=template, vcs_ref=RELEASE, workspace_layout=layout,
        python_version="3.11",
    )
    commit_all(repo, "generated")
    return repo


def add_package(repo: Path, template: Path, name: str, package_type: str) -> None:
    copy_template(
        repo, tasks=True, src=template, vcs_ref=RELEASE, template_kind="package",
        package_name=name, package_type=package_type,
    )


def layout_of(repo: Path) -> str:
    return yaml.safe_load((repo / ".copier-answers.yml").read_text())["workspace_layout"]


def switch(repo: Path, layout: str, check: bool = True):
    return run(["make", "switch-layout", f"LAYOUT={layout}"], cwd=repo, check=check)


def team_files(repo: Path) -> dict[str, bytes]:
    """Package code, tests and data: what a switch must leave byte for byte."""
    return {
        name: data
        for name, data in tree_snapshot(repo / "src").items()
        if not name.endswith(("pyproject.toml", "uv.lock"))
    }


def without_local_sources(text: str) -> str:
    return LOCAL_SOURCE.sub("<local source>", text)


def tracked(repo: Path) -> list[str]:
    return git(repo, "ls-files").splitlines()


def run_ci(repo: Path, base: str, packages: list[str]) -> None:
    """The generated CI, job by job: affected packages, each test job, locks, lint."""
    workflow = gha.load(repo / ".github/workflows/ci.yml")
    results, outputs = gha.run_job(repo, workflow, "affected", {gha.CI_BASE_EXPRESSION: base})
    assert all(r.returncode == 0 for r in results), gha.describe(results)
    # The switch rewrites the root files, so every package is retested.
    assert json.loads(outputs["packages"]) == packages
    for package in packages:
        results, _ = gha.run_job(repo, workflow, "test", {"matrix.package": package})
        assert [r.returncode for r in results] == [0, 0, 0], gha.describe(results)
    for job in ("locks", "lint"):
        results, _ = gha.run_job(repo, workflow, job)
        assert all(r.returncode == 0 for r in results), gha.describe(results)


@pytest.fixture(params=["shared", "independent"])
def lived_in(request, released_template, tmp_path: Path) -> Path:
    """A repo in either layout after some months of team work, committed."""
    template = released_template.path
    repo = generate(tmp_path / "repo", template, request.param)
    add_package(repo, template, "billing", "library")
    add_package(repo, template, "reports", "ecs")
    commit_all(repo, "billing and reports")
    # A third-party dependency, a version bump and code that uses both.
    run(["uv", "add", "--quiet", "--directory", "src/nt_billing", "six>=1.16"], cwd=repo)
    # six has no inline types: its stubs go in the dev group, for the strict type check.
    run(["uv", "add", "--quiet", "--dev", "--directory", "src/nt_billing", "types-six"], cwd=repo)
    billing = repo / "src/nt_billing/pyproject.toml"
    billing.write_text(billing.read_text().replace('version = "0.1.0"', 'version = "0.2.0"'))
    (repo / "src/nt_billing/nt_billing/rates.py").write_text(
        "import six\n\n\ndef rate() -> str:\n    return six.text_type(21)\n"
    )
    (repo / "src/nt_billing/tests/test_rates.py").write_text(
        "from nt_billing.rates import rate\n\n\ndef test_rate() -> None:\n    assert rate() == \"21\"\n"
    )
    # One package now uses another, added as each layout's docs say.
    target = "nt-billing" if request.param == "shared" else "../nt_billing"
    run(["uv", "add", "--quiet", "--directory", "src/nt_reports", target], cwd=repo)
    job = repo / "src/nt_reports/nt_reports/job.py"
    job.write_text(job.read_text() + "\n\ndef billed() -> str:\n    from nt_billing.rates import rate\n\n    return rate()\n")
    reports = repo / "src/nt_reports/pyproject.toml"
    reports.write_text(reports.read_text() + '\n[tool.team]\nowner = "data-platform"\n')
    run(["make", "lock"], cwd=repo)
    commit_all(repo, "team work")
    return repo


def build_and_run_artifacts(repo: Path, containers, dist: Path) -> None:
    """The layout's Dockerfiles ship the team's packages, built with the container tier.

    nt_reports' venv tarball (x86_64, the default ECS answer) carries nt_billing and six, a
    dependency the team added between packages, and runs in the python:3.11-slim stand-in;
    nt_ingestion's Lambda image (arm64, the default Lambda answer) answers an event with its
    own aarch64 Python 3.11 under user-mode qemu, on the AL2-like arm64 stand-in.
    """
    containers.ensure_slim("3.11", "x86_64")
    containers.build(
        repo, "docker/Dockerfile.venv", build_args={"PACKAGE_NAME": "nt_reports"}, output=dist
    )
    (tarball,) = [p.relative_to(dist).as_posix() for p in dist.rglob("*.tar.gz")]
    # buildah writes the output directory 0700; the container reads it as another user.
    for path in [dist, *dist.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    out = containers.run(
        containers.slim_image("3.11"),
        "-c",
        "mkdir /job && tar -xzf /dist/$1 -C /job"
        " && /job/bin/python -c 'from nt_reports.job import billed; print(billed())'",
        "sh",
        tarball,
        entrypoint="/bin/sh",
        volumes={dist: "/dist:ro"},
    ).stdout
    assert out.splitlines()[-1] == "21"

    containers.ensure_lambda("3.11", "arm64")
    image = f"localhost/cumt-switched-{layout_of(repo)}-lambda"
    containers.build(
        repo,
        "docker/Dockerfile.lambda",
        platform="linux/arm64",
        tag=image,
        build_args={"SERVICE_NAME": "nt_ingestion"},
    )
    root = containers.export_rootfs(image)
    containers.remove_image(image)
    event = {"Records": [{"s3": {"bucket": {"name": "landing"}, "object": {"key": "in/a.csv"}}}]}
    answer = containers.call_handler_arm64(root, "3.11", event)
    assert json.loads(answer["body"])["ingested"] == ["landing/in/a.csv"]


@pytest.mark.containers
def test_switch_there_and_back_keeps_the_team_work(
    lived_in: Path, released_template, tmp_path, arm64_builder
):
    repo = lived_in
    start = layout_of(repo)
    before_commit = git(repo, "rev-parse", "HEAD")
    before_files = team_files(repo)
    before_pyprojects = {p: (repo / "src" / p / "pyproject.toml").read_text() for p in ("nt_reports", "nt_billing")}
    packages = sorted(p.name for p in (repo / "src").iterdir())
    assert packages == ["nt_api", "nt_billing", "nt_common", "nt_ingestion", "nt_reports"]

    for layout in (OTHER[start], start):
        base = git(repo, "rev-parse", "HEAD")
        switch(repo, layout)
        # One commit, a clean tree, every answers file on the new layout.
        assert git(repo, "rev-parse", "HEAD~1") == base
        assert git(repo, "status", "--porcelain") == ""
        assert layout_of(repo) == layout
        for answers in (repo / ".copier").glob("package-*.yml"):
            assert yaml.safe_load(answers.read_text())["workspace_layout"] == layout

        # Sources: the other form for every local dependency, the team's one included.
        reports = (repo / "src/nt_reports/pyproject.toml").read_text()
        if layout == "independent":
            assert 'nt-billing = { path = "../nt_billing" }' in reports
            assert 'nt-common = { path = "../nt_common" }' in reports
            assert "workspace = true" not in reports
        else:
            assert "nt-billing = { workspace = true }" in reports
            assert "nt-common = { workspace = true }" in reports
            assert "path =" not in reports
        # Everything else the team wrote stays as it was.
        assert team_files(repo) == before_files
        for package, text in before_pyprojects.items():
            now = (repo / "src" / package / "pyproject.toml").read_text()
            assert without_local_sources(now) == without_local_sources(text)
        assert 'owner = "data-platform"' in reports and "six>=1.16" in (
            repo / "src/nt_billing/pyproject.toml"
        ).read_text()

        # Locks made by uv for the new layout; stale ones gone.
        package_locks = sorted(p.parent.name for p in (repo / "src").glob("*/uv.lock"))
        root_lock = (repo / "uv.lock").read_text()
        if layout == "independent":
            assert package_locks == packages
            assert 'name = "nt-reports"' not in root_lock, "the root lock holds tooling only"
            assert 'name = "nt-billing"' in (repo / "src/nt_reports/uv.lock").read_text()
        else:
            assert package_locks == []
            assert 'name = "nt-reports"' in root_lock

        # Root files the team never touched match a fresh render of the new layout.
        fresh = copy_template(
            tmp_path / f"fresh-{layout}", tasks=False, src=released_template.path,
            vcs_ref=RELEASE, workspace_layout=layout, python_version="3.11",
        )
        # Locks are uv's, never templated (scripts/upload_all.py.lock included).
        expected = {n: d for n, d in tree_snapshot(fresh).items() if template_owned(n)}
        actual = {n: d for n, d in tree_snapshot(repo).items() if template_owned(n)}
        assert actual == expected

        # The repo's own checks and CI, in the new layout.
        run(["uv", "sync", "--locked"], cwd=repo)
        run(["make", "sync"], cwd=repo)
        tests = run(["make", "test"], cwd=repo).stdout
        assert all(f"== {p}" in tests for p in packages) and " failed" not in tests
        run(["make", "lock-check"], cwd=repo)
        run_ci(repo, base, packages)
        assert git(repo, "status", "--porcelain") == ""
        if layout != start:
            # The new layout's Dockerfiles (the way back builds the starting layout's,
            # which the container tier tests already).
            build_and_run_artifacts(repo, arm64_builder, tmp_path / f"dist-{layout}")
            assert git(repo, "status", "--porcelain") == ""

    # Back where it started: every file as the team left it (locks remade by uv aside).
    changed = git(repo, "diff", "--name-only", before_commit, "HEAD").splitlines()
    assert [name for name in changed if not name.endswith("uv.lock")] == []


@pytest.fixture
def fresh_repo(released_template, tmp_path: Path) -> Path:
    return generate(tmp_path / "repo", released_template.path, "shared")


@pytest.mark.parametrize(
    ("layout", "dirty", "message"),
    [
        ("independent", True, "commit or stash your changes first"),
        ("sideways", False, "unknown layout 'sideways'"),
        ("", False, "usage: make switch-layout LAYOUT=independent|shared"),
        ("shared", False, "already uses the shared layout"),
    ],
    ids=["dirty", "unknown", "missing", "same"],
)
def test_refusals_change_nothing(fresh_repo: Path, layout: str, dirty: bool, message: str):
    if dirty:
        (fresh_repo / "src/nt_api/nt_api/job.py").write_text("# work in progress\n")
    head = git(fresh_repo, "rev-parse", "HEAD")
    before = tree_snapshot(fresh_repo)
    refused = switch(fresh_repo, layout, check=False)
    assert refused.returncode != 0
    assert message in refused.stderr and "Nothing was changed" in refused.stderr
    assert tree_snapshot(fresh_repo) == before
    assert git(fresh_repo, "rev-parse", "HEAD") == head


def test_a_conflict_with_team_edits_restores_the_tree(fresh_repo: Path):
    # The team rewrote the very Makefile lines the layout changes: Copier cannot merge that.
    makefile = fresh_repo / "Makefile"
    text = makefile.read_text()
    assert "PROJECTS := .\n" in text
    makefile.write_text(text.replace("PROJECTS := .\n", "PROJECTS := . # our one project\n"))
    commit_all(fresh_repo, "team edits the layout lines")
    head = git(fresh_repo, "rev-parse", "HEAD")
    before = tree_snapshot(fresh_repo)
    failed = switch(fresh_repo, "independent", check=False)
    assert failed.returncode != 0
    assert "Makefile" in failed.stderr and "conflict" in failed.stderr
    assert "back at" in failed.stderr
    assert tree_snapshot(fresh_repo) == before
    assert git(fresh_repo, "rev-parse", "HEAD") == head
    assert git(fresh_repo, "status", "--porcelain") == ""


def pin_six(repo: Path, package: str, version: str) -> None:
    """The package requires one exact six, and its tests prove which one it runs with."""
    path = repo / "src" / package / "pyproject.toml"
    path.write_text(path.read_text().replace("dependencies = [\n", f'dependencies = [\n    "six=={version}",\n', 1))
    (repo / "src" / package / "tests" / "test_six.py").write_text(
        f"import six\n\n\ndef test_own_six():\n    assert six.__version__ == {version!r}\n"
    )


def test_incompatible_versions_are_explained_and_resolved_by_switching(
    released_template, tmp_path: Path
):
    template = released_template.path
    repo = generate(tmp_path / "repo", template, "shared")
    add_package(repo, template, "legacy", "library")
    commit_all(repo, "legacy")
    pin_six(repo, "nt_api", "1.17.0")
    pin_six(repo, "nt_legacy", "1.16.0")

    failed = run(["make", "lock"], cwd=repo, check=False)
    assert failed.returncode != 0
    assert "No solution found" in failed.stderr, "uv's own error is shown"
    assert (
        "these packages need incompatible versions: nt-api needs six==1.17.0, "
        "nt-legacy needs six==1.16.0" in failed.stderr
    )
    assert "make switch-layout LAYOUT=independent" in failed.stderr
    commit_all(repo, "api and legacy pin different six versions")

    switch(repo, "independent")
    run(["make", "lock-check"], cwd=repo)
    tests = run(["make", "test"], cwd=repo).stdout
    assert " failed" not in tests and "== nt_legacy" in tests
    for package, version in (("nt_api", "1.17.0"), ("nt_legacy", "1.16.0")):
        lock = (repo / "src" / package / "uv.lock").read_text()
        assert f'name = "six"\nversion = "{version}"' in lock
        run(["python3", "scripts/ci.py", "sync", package], cwd=repo)
        run(["python3", "scripts/ci.py", "test", package], cwd=repo)
    commit_all(repo, "after the switch")

    # Back to one workspace cannot work while they disagree: the move fails halfway (at the
    # lock) and leaves the repo exactly as it was, saying why.
    head = git(repo, "rev-parse", "HEAD")
    before = tree_snapshot(repo)
    failed = switch(repo, "shared", check=False)
    assert failed.returncode != 0
    assert "locking the root project failed" in failed.stderr
    assert "six" in failed.stderr and "back at" in failed.stderr
    assert tree_snapshot(repo) == before
    assert git(repo, "rev-parse", "HEAD") == head
    assert git(repo, "status", "--porcelain") == ""


def test_layouts_differ_in_a_package_pyproject_only_by_its_sources(render) -> None:
    """switch_layout.py rewrites only sources in package pyproject.toml files; nothing else may differ."""
    shared, independent = render(workspace_layout="shared"), render(workspace_layout="independent")
    pyprojects = sorted(p.relative_to(shared) for p in shared.glob("src/*/pyproject.toml"))
    assert pyprojects
    for relative in pyprojects:
        assert without_local_sources((shared / relative).read_text()) == without_local_sources(
            (independent / relative).read_text()
        )


def session_processes(session: int) -> list[str]:
    """Commands of the processes still running in a session (the switch's whole tree)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # gone meanwhile
            continue
        # pid (comm) state ppid pgrp session ...: comm may hold spaces, so split after it.
        fields = text.rsplit(")", 1)[1].split()
        if int(fields[3]) == session:
            found.append(text.split(" ", 1)[1].rsplit(")", 1)[0].lstrip("("))
    return found


@pytest.mark.parametrize(
    ("name", "to_group"),
    [("SIGTERM", False), ("SIGHUP", True)],
    ids=["sigterm-to-make", "sighup-to-the-terminal-group"],
)
def test_a_stopped_switch_restores_the_tree(
    fresh_repo: Path, tmp_path: Path, name: str, to_group: bool
) -> None:
    """Stopped after its first checkpoint commit, with Copier mid-run: SIGTERM sent to `make`
    (as `kill` or a CI runner does; make passes it on), or SIGHUP sent to the whole process
    group (as a closing terminal does). The repo is back at its starting commit, clean and
    byte for byte as before, and no temporary folder is left in TMPDIR."""
    import os
    import signal
    import subprocess
    import time

    head = git(fresh_repo, "rev-parse", "HEAD")
    before = tree_snapshot(fresh_repo)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    proc = subprocess.Popen(
        ["make", "switch-layout", "LAYOUT=independent"],
        cwd=fresh_repo,
        env={**os.environ, "TMPDIR": str(tmpdir)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    # Polled, not hooked: the first checkpoint is a real commit on top of the starting one.
    deadline = time.monotonic() + 180
    while git(fresh_repo, "log", "-1", "--format=%s") != "switch-layout: .copier-answers.yml":
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no checkpoint commit within 180 s"
        time.sleep(0.05)
    assert git(fresh_repo, "rev-parse", "HEAD~1") == head
    sig = getattr(signal, name)
    if to_group:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    # make may exit before the script has finished restoring: wait for the whole tree.
    deadline = time.monotonic() + 60
    while left := session_processes(proc.pid):
        assert time.monotonic() < deadline, f"still running: {left}"
        time.sleep(0.1)
    assert proc.returncode != 0
    assert f"switch-layout: stopped by {name}" in stderr, stdout + stderr
    assert "back at" in stderr
    assert git(fresh_repo, "rev-parse", "HEAD") == head
    assert git(fresh_repo, "status", "--porcelain") == ""
    assert tree_snapshot(fresh_repo) == before
    assert layout_of(fresh_repo) == "shared"
    # uv keeps a lock file of its own there for the `uv run` make starts, after any run.
    left = [p.name for p in tmpdir.iterdir() if not re.fullmatch(r"uv-[0-9a-f]+\.lock", p.name)]
    assert left == []
