"""Print how long the daily loop takes: `make test` and `make typecheck`, cold and warm, against
running the same tests with coverage once in the shared venv.

Figures, not assertions: run it before and after a change and compare.

    uv run --locked python bench/bench_daily_loop.py [--sizes 3 15 50] [--jobs N] [--rounds 5]

For each size N it generates a shared-layout repo of N packages with bench_scale.py's helpers
(python_version=3.11; the three sample packages, then library packages copied from one the
package kind made) and prints, in seconds of wall time:
- cold test / cold typecheck: `make test` / `make typecheck` with no package environment
  (`src/<pkg>/.venv`) and no mypy cache yet: every environment is made from uv's warm cache;
- warm test / warm typecheck: the same again, the environments kept;
- baseline: one pytest run over every package's tests with coverage in the shared `.venv`
  (`make sync`), what a developer could run without isolation;
- ratio: warm test / baseline.
Warm test and baseline run in alternation, ROUNDS times each, and their medians are printed
(the machine may be shared: alternating gives both the same load); warm typecheck is the
median of three runs.
`make test` runs with PACKAGES set to every package, which leaves out the deploy scripts'
tests (tests/deploy/): they are not per-package and the baseline does not run them either.
The machine (CPU model, cores, load average) is printed first, the one-minute load average
after each size, and the load again at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_scale import make_repo, sh, template_clone, timed


def machine() -> str:
    model = next(
        (line.split(":", 1)[1].strip() for line in subprocess.run(
            ["lscpu"], capture_output=True, text=True).stdout.splitlines()
         if line.startswith("Model name")), "unknown CPU")
    return f"{model}, {os.cpu_count()} cores, load average {load()}"


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def packages(repo: Path) -> list[str]:
    return sorted(path.parent.name for path in (repo / "src").glob("*/pyproject.toml"))


def forget(repo: Path, *names: str) -> None:
    """Remove what a run keeps in every package folder (environments, caches)."""
    for package in packages(repo):
        for name in names:
            shutil.rmtree(repo / "src" / package / name, ignore_errors=True)


def median(runs: int, *cmd: str, cwd: Path) -> float:
    return statistics.median(timed(*cmd, cwd=cwd)[0] for _ in range(runs))


def measure(repo: Path, jobs: list[str], rounds: int) -> dict[str, float]:
    names = packages(repo)
    make_test = ["make", "test", f"PACKAGES={' '.join(names)}", *jobs]
    make_typecheck = ["make", "typecheck", f"PACKAGES={' '.join(names)}", *jobs]
    sh("make", "sync", cwd=repo)
    cov = [f"--cov={name}" for name in names]
    baseline = ["uv", "run", "--no-sync", "pytest", "--quiet", *cov,
                "--cov-config=pyproject.toml", *(f"src/{name}/tests" for name in names)]
    timed(*baseline, cwd=repo)  # bytecode written, as the kept environments' will be
    forget(repo, ".venv", ".mypy_cache", ".pytest_cache")
    figures = {}
    figures["cold_test"], _ = timed(*make_test, cwd=repo)
    warm, base = [], []
    for _ in range(rounds):
        base.append(timed(*baseline, cwd=repo)[0])
        warm.append(timed(*make_test, cwd=repo)[0])
    figures["baseline"], figures["warm_test"] = statistics.median(base), statistics.median(warm)
    forget(repo, ".venv", ".mypy_cache")
    figures["cold_typecheck"], _ = timed(*make_typecheck, cwd=repo)
    figures["warm_typecheck"] = median(3, *make_typecheck, cwd=repo)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[3, 15, 50])
    parser.add_argument("--jobs", help="JOBS for make (default: the Makefile's, the CPU count)")
    parser.add_argument("--rounds", type=int, default=5, help="warm test and baseline runs each")
    args = parser.parse_args()
    jobs = [f"JOBS={args.jobs}"] if args.jobs else []
    print(f"machine: {machine()}", flush=True)
    print(f"{'packages':>8} {'cold test':>9} {'warm test':>9} {'baseline':>8} {'ratio':>5} "
          f"{'cold typecheck':>14} {'warm typecheck':>14} {'load (1 min)':>12}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        template = template_clone(Path(tmp))
        for size in args.sizes:
            repo = make_repo(Path(tmp), template, size, "shared")
            f = measure(repo, jobs, args.rounds)
            print(f"{size:>8} {f['cold_test']:>9.1f} {f['warm_test']:>9.1f} {f['baseline']:>8.1f} "
                  f"{f['warm_test'] / f['baseline']:>5.2f} {f['cold_typecheck']:>14.1f} "
                  f"{f['warm_typecheck']:>14.1f} {os.getloadavg()[0]:>12.2f}", flush=True)
            shutil.rmtree(repo)
    print(f"load average at the end: {load()} ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
