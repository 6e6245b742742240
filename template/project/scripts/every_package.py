# /// script
# requires-python = ">=3.11"
# ///
"""Run one of CI's per-package commands for many packages at once, and report every one.

    uv run scripts/every_package.py test|typecheck [--jobs N] [PACKAGE ...]

Runs `scripts/ci.py <command> --isolated <package>` (what `make test` and `make typecheck`
use) for each named package, or every package under src/ when none is named, JOBS at a time
(default: the machine's CPU count). Each run's output is captured and printed whole when it
ends: a failure in full, a pass as its last lines. A table of every package's result and
time comes last; the exit code is 1 when any package failed, 0 otherwise.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import monorepo

CI = Path(__file__).resolve().parent / "ci.py"


@dataclass
class Result:
    package: str
    ok: bool
    seconds: float
    output: str


def run_one(command: str, package: str) -> Result:
    """`scripts/ci.py <command> --isolated <package>`, its output (stdout and stderr in the
    order written) captured."""
    start = time.perf_counter()
    # ci.py needs only the standard library: this interpreter runs it, saving a `uv run`
    # per package.
    proc = subprocess.run(
        [sys.executable, str(CI), command, "--isolated", package],
        cwd=monorepo.ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    return Result(package, proc.returncode == 0, time.perf_counter() - start, proc.stdout)


def brief(output: str) -> list[str]:
    """What a passing run is shown as: its coverage figure, if any, and its last line
    (pytest's "N passed in ...", mypy's "Success: ...")."""
    lines = [line for line in output.splitlines() if line.strip()]
    shown = [line for line in lines[:-1] if "Total coverage" in line]
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
    with ThreadPoolExecutor(max_workers=min(args.jobs, len(packages))) as pool:
        futures = [pool.submit(run_one, args.command, name) for name in packages]
        try:
            for future in as_completed(futures):
                results.append(future.result())
                report(results[-1])
        except KeyboardInterrupt:
            # The runs in progress got the terminal's Ctrl-C too; start no new one.
            pool.shutdown(wait=True, cancel_futures=True)
            return 130
    print(table(args.command, results, min(args.jobs, len(packages)), time.perf_counter() - start))
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
