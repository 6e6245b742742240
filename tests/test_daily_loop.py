"""The daily loop: `make test` and `make typecheck` on generated repos.

Every package runs, in parallel (up to JOBS), each in an environment holding only what it
declares that is kept between runs (`src/<pkg>/.venv`) and synced from the lock whenever the
lock or a pyproject.toml changed (and only then); tests run in a forked pytest process that
refuses an environment unlike its own, which then runs pytest as a process. Every package's
result is in one table at the end, and the exit code is non-zero when any failed. mypy accepts the test layouts pytest accepts. The figures (cold and warm wall times
against one run in the shared venv) are in bench/bench_daily_loop.py, never asserted here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import gha
import pytest
from conftest import run
from gitrepo import commit_all, git

pytestmark = pytest.mark.slow

API, COMMON, INGESTION = "nt_api", "nt_common", "nt_ingestion"
PACKAGES = [API, COMMON, INGESTION]
TEMPLATE_ROOT = Path(__file__).resolve().parents[1]

# A test for every package that says which other packages' tests ran at the same time: it
# leaves a mark while it runs, and waits (TIMELINE_WAIT seconds at most) to see another's.
TIMELINE_TEST = '''"""Which packages' tests run at the same time as this one (tests/test_daily_loop.py)."""

import os
import time
from pathlib import Path


def test_timeline() -> None:
    folder = os.environ.get("TIMELINE")
    if not folder:
        return
    me = Path(folder) / Path(__file__).resolve().parents[1].name
    me.touch()
    deadline = time.monotonic() + float(os.environ["TIMELINE_WAIT"])
    others: set[str] = set()
    while not others and time.monotonic() < deadline:
        others = {p.name for p in Path(folder).iterdir() if p != me and not p.suffix}
        time.sleep(0.1)
    me.unlink()
    me.with_suffix(".seen").write_text(" ".join(sorted(others)))
'''

FIXTURE = "import pytest\n\n\n@pytest.fixture\ndef answer() -> int:\n    return 42\n"
USES_FIXTURE = "def test_answer(answer: int) -> None:\n    assert answer == 42\n"


def table(output: str) -> dict[str, str]:
    """The summary table at the end of a run: package -> result (`ok` or `FAILED`)."""
    lines = output.splitlines()
    headers = [i for i, line in enumerate(lines) if re.fullmatch(r"package\s+result\s+time", line)]
    assert headers, f"no summary table in:\n{output}"
    rows = {}
    for line in lines[headers[-1] + 1 :]:
        row = re.fullmatch(r"(\S+)\s+(ok|FAILED)\s+\d+\.\d s", line)
        if not row:
            break
        rows[row[1]] = row[2]
    return rows


def restore(repo: Path) -> None:
    """Undo a test's edits; ignored files (the kept environments) stay."""
    git(repo, "reset", "--quiet", "--hard")
    git(repo, "clean", "-fdq", "--", "src")


def make(repo: Path, *args: str, check: bool = True, **env: str):
    return run(["make", *args], cwd=repo, check=check, env={**os.environ, **env})


@pytest.fixture(scope="module")
def repo(make_project: Callable[..., Path]) -> Path:
    """A shared-layout repo with the three sample packages, committed."""
    repo = make_project(fresh=True)
    commit_all(repo, "Generated")
    return repo


def test_a_failing_package_does_not_hide_the_others(repo: Path) -> None:
    """nt_api's tests fail and nt_common's types are wrong: every package still runs, each
    result is in the table, the failure is shown in full, passes briefly, and the exit code
    is non-zero."""
    (repo / "src" / API / "tests" / "test_broken.py").write_text(
        "def test_broken() -> None:\n    assert 1 + 1 == 3, 'deliberately broken'\n"
    )
    try:
        tested = make(repo, "test", check=False)
        assert tested.returncode != 0
        assert table(tested.stdout) == {API: "FAILED", COMMON: "ok", INGESTION: "ok"}, tested.stdout
        assert "deliberately broken" in tested.stdout
        # The failing package's tests ran in its own environment, not the shared .venv, in the
        # forked pytest process (no refusal named).
        own = f"+ cd src/{API} && . .venv/bin/activate && pytest --cov={API}"
        assert own in tested.stdout and "forked_pytest.py" not in tested.stdout
        # The failing package's whole pytest session; the passing ones as a line or two.
        packages, _, deploy = tested.stdout.partition("== tests/deploy")
        assert packages.count("test session starts") == 1, tested.stdout
        # The deploy scripts' tests still ran, and passed.
        assert re.search(r"\d+ passed", deploy), tested.stdout

        (repo / "src" / COMMON / COMMON / "wrong.py").write_text(
            "def half(x: int) -> int:\n    return x / 2\n"
        )
        checked = make(repo, "typecheck", check=False)
        assert checked.returncode != 0
        assert table(checked.stdout) == {API: "ok", COMMON: "FAILED", INGESTION: "ok"}, checked.stdout
        assert "nt_common/wrong.py:2: error: Incompatible return value" in checked.stdout
        assert checked.stdout.count("Success: no issues found") == 2, checked.stdout
    finally:
        restore(repo)


def test_one_package(repo: Path) -> None:
    """`make test PACKAGES=nt_api` (and typecheck) runs that package alone."""
    tested = make(repo, "test", f"PACKAGES={API}")
    assert table(tested.stdout) == {API: "ok"}
    assert f"== {COMMON}" not in tested.stdout and f"== {INGESTION}" not in tested.stdout
    checked = make(repo, "typecheck", f"PACKAGES={API}")
    assert table(checked.stdout) == {API: "ok"}
    assert checked.stdout.count("Success: no issues found") == 1


def test_packages_run_in_parallel_up_to_jobs(repo: Path, tmp_path: Path) -> None:
    """With JOBS=3 some packages' tests run at the same time; with JOBS=1 none ever does."""
    for package in PACKAGES:
        (repo / "src" / package / "tests" / "test_timeline.py").write_text(TIMELINE_TEST)
    try:
        for jobs, wait, expect_overlap in (("3", "60", True), ("1", "1", False)):
            folder = tmp_path / f"jobs{jobs}"
            folder.mkdir()
            make(repo, "test", f"JOBS={jobs}", TIMELINE=str(folder), TIMELINE_WAIT=wait)
            seen = {p.stem: p.read_text().split() for p in folder.glob("*.seen")}
            assert sorted(seen) == PACKAGES, seen
            overlapping = [package for package, others in seen.items() if others]
            if expect_overlap:
                assert len(overlapping) >= 2, seen
            else:
                assert overlapping == [], seen
    finally:
        restore(repo)


def test_mypy_accepts_the_test_layouts_pytest_accepts(repo: Path) -> None:
    """Same-named test modules in two folders of one package, two conftest.py files, tests
    with and without __init__.py: pytest, `make typecheck` and CI's test job all pass."""
    api_tests = repo / "src" / API / "tests"
    (api_tests / "integration").mkdir()
    (api_tests / "conftest.py").write_text(FIXTURE)
    (api_tests / "integration" / "conftest.py").write_text(FIXTURE)
    (api_tests / "integration" / "test_job.py").write_text(USES_FIXTURE)  # as tests/test_job.py
    (api_tests / "test_answer.py").write_text(USES_FIXTURE)
    ingestion_tests = repo / "src" / INGESTION / "tests"
    (ingestion_tests / "integration").mkdir()
    (ingestion_tests / "__init__.py").write_text("")
    (ingestion_tests / "integration" / "__init__.py").write_text("")
    (ingestion_tests / "integration" / "conftest.py").write_text(FIXTURE)
    (ingestion_tests / "integration" / "test_handler.py").write_text(USES_FIXTURE)
    commit_all(repo, "Tests in several shapes")
    try:
        checked = make(repo, "typecheck", check=False)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert table(checked.stdout) == dict.fromkeys(PACKAGES, "ok")
        tested = make(repo, "test")
        assert table(tested.stdout) == dict.fromkeys(PACKAGES, "ok")
        workflow = gha.load(repo / ".github/workflows/ci.yml")
        for package in (API, INGESTION):
            results, _ = gha.run_job(repo, workflow, "test", {"matrix.package": package})
            assert [r.returncode for r in results] == [0, 0, 0], gha.describe(results)
            assert "Success: no issues found" in results[-1].output
    finally:
        git(repo, "reset", "--quiet", "--hard", "HEAD~1")
        restore(repo)


def site_packages(venv: Path) -> set[str]:
    (lib,) = venv.glob("lib/python3.*/site-packages")
    return {path.name for path in lib.iterdir()}


@pytest.mark.parametrize("layout", ["shared", "independent"])
def test_a_dependency_dropped_from_pyproject_fails_in_the_kept_environment(
    layout: str, make_project: Callable[..., Path]
) -> None:
    """The kept environment follows the lock exactly: a run with nothing changed calls no uv,
    a change to the lock alone reaches the environment, and a library the package stops
    declaring is removed from it, so code still importing it fails `make test`. The
    environment itself is kept (not rebuilt), and the shared layout's .venv is left as it
    was."""
    repo = make_project(fresh=True, workspace_layout=layout, deploy_targets=["lambda"])
    pyproject = repo / "src" / INGESTION / "pyproject.toml"
    declared = pyproject.read_text()
    pyproject.write_text(declared.replace("dependencies = [\n", 'dependencies = [\n    "attrs",\n', 1))
    (repo / "src" / INGESTION / INGESTION / "points.py").write_text(
        "import attrs\n\n\n@attrs.define\nclass Point:\n    x: int\n"
    )
    make(repo, "lock")
    make(repo, "sync")
    shared_venv = site_packages(repo / ".venv")

    make(repo, "test", f"PACKAGES={INGESTION}")
    kept = repo / "src" / INGESTION / ".venv"
    assert "attrs" in site_packages(kept)
    (kept / "kept-mark").write_text("")

    # Nothing changed: no uv command runs (the stamp `sync --isolated` writes stays as it was).
    stamp = kept / "ci-isolated.stamp"
    synced = stamp.stat().st_mtime_ns
    make(repo, "test", f"PACKAGES={INGESTION}")
    assert stamp.stat().st_mtime_ns == synced

    # A change to the lock alone reaches the kept environment: attrs held at an older release.
    lock_folder = repo if layout == "shared" else repo / "src" / INGESTION
    run(["uv", "lock", "--upgrade-package", "attrs==23.2.0"], cwd=lock_folder)
    make(repo, "test", f"PACKAGES={INGESTION}")
    assert "attrs-23.2.0.dist-info" in site_packages(kept)

    pyproject.write_text(declared)
    make(repo, "lock")
    failed = make(repo, "test", f"PACKAGES={INGESTION}", check=False)
    assert failed.returncode != 0
    assert table(failed.stdout) == {INGESTION: "FAILED"}, failed.stdout
    assert "No module named 'attrs'" in failed.stdout
    assert "attrs" not in site_packages(kept)
    assert (kept / "kept-mark").exists(), "the environment was rebuilt, not kept"
    assert site_packages(repo / ".venv") == shared_venv


def sections(output: str) -> dict[str, str]:
    """Each package's part of a run's output (from its `== <package>: ...` line on)."""
    parts = re.split(r"^== (\S+): ", output, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_a_package_locked_with_another_pytest_runs_it_as_a_process(
    make_project: Callable[..., Path],
) -> None:
    """Independent layout, one lock per package: nt_ingestion holds pytest below 9 while
    nt_common locks the newest. With JOBS=1 the forked pytest process starts from nt_common's
    environment (the first in order) and refuses nt_ingestion's, naming the pytest it loaded;
    nt_ingestion's tests run as a process of their own, with pytest 8, and both pass."""
    repo = make_project(fresh=True, workspace_layout="independent", deploy_targets=["lambda"])
    pyproject = repo / "src" / INGESTION / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"pytest>=8",', '"pytest>=8,<9",', 1))
    make(repo, "lock")
    tested = make(repo, "test", "JOBS=1")
    assert table(tested.stdout) == {COMMON: "ok", INGESTION: "ok"}, tested.stdout
    parts = sections(tested.stdout)
    assert "forked_pytest.py" not in parts[COMMON], tested.stdout
    refused = "does not hold the pytest this process loaded; pytest runs as a process of its own"
    assert refused in parts[INGESTION], tested.stdout
    kept = site_packages(repo / "src" / INGESTION / ".venv")
    assert any(name.startswith("pytest-8.") for name in kept), kept


def test_readmes_document_isolated_one_package_commands(render: Callable[..., Path]) -> None:
    """The generated README's daily commands run one package isolated, and no README line
    offers an unisolated run (the shared venv hides undeclared imports) to test a package."""
    readme = (render() / "README.md").read_text()
    for target in ("test", "typecheck"):
        assert re.search(rf"^make {target} PACKAGES=nt_api\b", readme, re.MULTILINE), readme
    for text in (readme, (TEMPLATE_ROOT / "README.md").read_text()):
        unisolated = [
            line
            for line in text.splitlines()
            if re.search(r"uv run\b.*\b(pytest|mypy)\b", line) and "--locked pytest -n" not in line
        ]
        assert unisolated == []
