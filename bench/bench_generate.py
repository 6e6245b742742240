"""Print how long generation takes, and how long until the generated tests are green.

Figures, not assertions: run it before and after a change and compare.

    uv run --locked python bench/bench_generate.py [--runs 3]

For each layout, with the default answers otherwise:
- copy: wall time of `copier copy --trust --defaults` (renders and runs the tasks: git init, uv lock)
- green: wall time from a fresh copy to `make sync && make test` passing (uv cache warm: the
  first, unreported run warms it)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[1]
ENV = {
    **os.environ,
    "UV_PYTHON_DOWNLOADS": "never",
    "PYENV_VERSION": "3.11.7:3.12.1:3.13.0:3.10.13",
}
ENV.pop("VIRTUAL_ENV", None)


def timed(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=ENV, check=True, capture_output=True)
    return time.perf_counter() - start


def one_run(layout: str) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        dst = Path(tmp) / "repo"
        copy = timed(
            [sys.executable, "-m", "copier", "copy", "--trust", "--defaults", "--quiet",
             "--vcs-ref", "HEAD", "-d", f"workspace_layout={layout}", str(TEMPLATE), str(dst)],
            cwd=Path(tmp),
        )
        green = timed(["make", "sync"], cwd=dst) + timed(["make", "test"], cwd=dst)
        return copy, green


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"{'layout':<12} {'copy s (median)':>16} {'to green s (median)':>20}")
    for layout in ("shared", "independent"):
        one_run(layout)  # warm the uv cache; not reported
        runs = [one_run(layout) for _ in range(args.runs)]
        copy = statistics.median(r[0] for r in runs)
        green = statistics.median(r[1] for r in runs)
        print(f"{layout:<12} {copy:>16.2f} {green:>20.2f}")


if __name__ == "__main__":
    main()
