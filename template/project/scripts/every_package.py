# /// script
# requires-python = ">=3.11"
# ///
"""Run one of CI's per-package commands for many packages at once, and report every one.

    uv run scripts/every_package.py test|typecheck [--jobs N] [PACKAGE ...]

Tests or type-checks each named package, or every package under src/ when none is named,
JOBS at a time (default: the machine's CPU count), each in its own environment
(src/<pkg>/.venv, only what it declares) as `scripts/ci.py test|typecheck --isolated <pkg>`
does. Each run's output is captured and printed whole when it ends: a failure in full, a
pass as its last lines. A table of every package's result and time comes last; the exit code
is 1 when any package failed, 0 otherwise.

A warm run costs little more than the tests themselves:
- `ci.py sync --isolated <pkg>` (uv) runs only when the package's environment is not as it
  last made it (ci.own_environment_current: the lock, a pyproject.toml, the Python pin, uv or
  the installed distributions changed);
- `test` sends each package to a forked_pytest.py process (one per job), which imported
  pytest and coverage once and forks a child that is that package's own pytest run. When it
  refuses (the package's environment has another Python, or other builds of what it loaded),
  the package runs `ci.py test --isolated` as a process instead. `typecheck` always does.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import ci
import monorepo

SCRIPTS = Path(__file__).resolve().parent


@dataclass
class Result:
    package: str
    ok: bool
    seconds: float
    output: str


def ci_py(*args: str) -> tuple[bool, str]:
    """`scripts/ci.py <args>`: whether it passed, and its output (stdout and stderr in the
    order written)."""
    # ci.py needs only the standard library: this interpreter runs it, saving a `uv run`.
    proc = subprocess.run(
        [sys.executable, str(SCRIPTS / "ci.py"), *args],
        cwd=monorepo.ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    return proc.returncode == 0, proc.stdout


class Refused(Exception):
    """forked_pytest.py could not be the package's own pytest run; the message says why."""


class Forked:
    """A forked_pytest.py process, started with the first package environment it is given."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None
        self.folder = tempfile.TemporaryDirectory(prefix="every_package-")

    def test(self, pkg: monorepo.Package) -> tuple[bool, str]:
        """The package's tests, as `ci.py test --isolated` runs them: whether they passed, and
        their output. Raises Refused."""
        venv = ci.own_venv(pkg)
        if self.proc is None:
            self.proc = subprocess.Popen(
                [str(venv / "bin" / "python"), str(SCRIPTS / "forked_pytest.py")],
                cwd=monorepo.ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        args = ci.pytest_arguments(pkg)
        output = Path(self.folder.name) / pkg.dir_name
        request = {"venv": str(venv), "folder": str(pkg.path), "args": args, "output": str(output)}
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
            answer = json.loads(self.proc.stdout.readline() or "{}")
        except OSError:
            answer = {}
        if not answer:  # Ctrl-C, or it crashed (its error is on the terminal): no retry
            self.close()
            return False, f"forked_pytest.py stopped (exit code {self.proc.returncode})\n"
        if "refused" in answer:
            raise Refused(answer["refused"])
        shown = ci.command_line("pytest", *args, activate=pkg)
        return answer["exit"] == 0, f"+ {shown}\n{output.read_text(errors='replace')}"

    def close(self) -> None:
        if self.proc and self.proc.returncode is None:
            self.proc.communicate()  # closes its stdin: it ends
        self.folder.cleanup()


class Runner:
    """Runs one command for a package; one Forked process per thread of the pool."""

    def __init__(self, command: str, packages: dict[str, monorepo.Package]) -> None:
        self.command, self.packages = command, packages
        self.local = threading.local()
        self.started: list[Forked] = []

    def forked(self) -> Forked:
        if not hasattr(self.local, "forked"):
            self.local.forked = Forked()
            self.started.append(self.local.forked)
        return self.local.forked

    def run(self, name: str) -> Result:
        start = time.perf_counter()
        pkg = self.packages[name]
        ok, output = True, ""
        if not ci.own_environment_current(pkg, self.packages):
            ok, output = ci_py("sync", "--isolated", name)
        if ok and self.command == "test":
            try:
                ok, more = self.forked().test(pkg)
                return Result(name, ok, time.perf_counter() - start, output + more)
            except Refused as why:
                output += f"forked_pytest.py: {why}; pytest runs as a process of its own\n"
        if ok:
            ok, more = ci_py(self.command, "--isolated", name)
            output += more
        return Result(name, ok, time.perf_counter() - start, output)

    def close(self) -> None:
        for forked in self.started:
            forked.close()


def brief(output: str) -> list[str]:
    """What a passing run is shown as: why pytest ran as a process of its own, if it did, its
    coverage figure, if any, and its last line (pytest's "N passed in ...", mypy's "Success:
    ...")."""
    lines = [line for line in output.splitlines() if line.strip()]
    shown = [line for line in lines[:-1] if "Total coverage" in line or "forked_pytest.py" in line]
    return shown + lines[-1:]


def report(result: Result) -> None:
    status = "ok" if result.ok else "FAILED"
    print(f"== {result.package}: {status} in {result.seconds:.1f} s", flush=True)
    print("\n".join(brief(result.output)) if result.ok else result.output.rstrip(), flush=True)


def table(command: str, results: list[Result], jobs: int, seconds: float) -> str:
    width = max(len("package"), *(len(r.package) for r in results))
    rows = [f"{'package':<{width}}  result  time"]
    for r in sorted(results, key=lambda r: r.package):
        rows.append(f"{r.package:<{width}}  {'ok' if r.ok else 'FAILED':<6}  {r.seconds:.1f} s")
    failed = [r.package for r in results if not r.ok]
    verdict = f"{len(failed)} failed ({', '.join(sorted(failed))})" if failed else "all ok"
    counted = f"{len(results)} package{'s' if len(results) > 1 else ''}"
    rows.append(f"{command}: {counted}, {verdict}; {seconds:.1f} s, {jobs} at a time")
    return "\n".join(rows)


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"JOBS must be a whole number of at least 1, not {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["test", "typecheck"])
    parser.add_argument("packages", nargs="*", help="default: every package under src/")
    parser.add_argument("--jobs", type=positive, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    known = monorepo.discover()
    packages = args.packages or sorted(known)
    unknown = [name for name in packages if name not in known]
    if unknown:
        listed = ", ".join(sorted(known))
        parser.exit(2, f"every_package: no package {', '.join(unknown)}; packages: {listed}\n")
    if not packages:
        print("every_package: no packages under src/")
        return 0
    start = time.perf_counter()
    results = []
    runner = Runner(args.command, known)
    jobs = min(args.jobs, len(packages))
    try:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(runner.run, name) for name in packages]
            try:
                for future in as_completed(futures):
                    results.append(future.result())
                    report(results[-1])
            except KeyboardInterrupt:
                # The runs in progress got the terminal's Ctrl-C too; start no new one.
                pool.shutdown(wait=True, cancel_futures=True)
                return 130
    finally:
        runner.close()
    print(table(args.command, results, jobs, time.perf_counter() - start))
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
