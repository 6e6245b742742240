"""Print how the daily and CI commands scale with the number of packages, in both layouts.

Figures, not assertions: run it before and after a change and compare.

    uv run --locked python bench/bench_scale.py [--sizes 10 50 100] [--switch-sizes 10 50]

For each size N it generates a repo from this checkout (python_version=3.11) with N packages:
the three sample ones plus library packages that depend on `nt_common`. The first added package
comes from the package kind; the others are copies of it under new names (a fast equivalent:
the package kind renders the same files), each with its own `.copier/package-<name>.yml`.
It prints, per layout:
- affected: wall time of `scripts/affected.py` for a change to one leaf package, and the
  number of CI test jobs that change starts (the packages it prints);
- lock-check: wall time of `make lock-check`;
- add: wall time of `make new-package` (Copier through uvx, plus the lock);
- switch: wall time of `make switch-layout` to the other layout (only for --switch-sizes).
uv's cache is warm after the first repo; Python is never downloaded. The repos are generated
from a clone of this checkout with the working tree committed, so `make new-package` and
`make switch-layout` find the recorded template commit.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "PYENV_VERSION": "3.11.7:3.12.1:3.13.0:3.10.13"}
ENV.pop("VIRTUAL_ENV", None)
SAMPLES = 3  # nt_common, nt_api, nt_ingestion


def sh(*cmd: str, cwd: Path) -> str:
    result = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed in {cwd}:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def timed(*cmd: str, cwd: Path) -> tuple[float, str]:
    start = time.perf_counter()
    out = sh(*cmd, cwd=cwd)
    return time.perf_counter() - start, out


def commit(repo: Path, message: str) -> None:
    sh("git", "add", "-A", cwd=repo)
    # --allow-empty: right after generation its own first commit may hold everything already.
    sh("git", "commit", "--quiet", "--no-verify", "--allow-empty", "-m", message, cwd=repo)


def clone_package(repo: Path, source: str, name: str) -> None:
    """Copy src/nt_<source> and its answers as src/nt_<name>: what the package kind would write."""
    src, dst = repo / "src" / f"nt_{source}", repo / "src" / f"nt_{name}"
    for path in sorted(src.rglob("*")):
        if path.is_dir() or {".venv", "__pycache__", "uv.lock"} & set(path.parts):
            continue
        target = dst / str(path.relative_to(src)).replace(source, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text().replace(source, name))
    answers = (repo / ".copier" / f"package-{source}.yml").read_text()
    (repo / ".copier" / f"package-{name}.yml").write_text(answers.replace(source, name))


def template_clone(work: Path) -> Path:
    """A git repo holding this checkout's working tree (tracked and new files), committed."""
    clone = work / "template"
    sh("git", "clone", "--quiet", str(ROOT), str(clone), cwd=work)
    files = sh("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=ROOT)
    for name in filter(None, files.split("\0")):
        source, target = ROOT / name, clone / name
        if source.is_symlink() or source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.unlink(missing_ok=True)
            shutil.copy2(source, target, follow_symlinks=False)
    sh("git", "add", "-A", cwd=clone)
    sh("git", "commit", "--quiet", "--no-verify", "--allow-empty", "-m", "working tree", cwd=clone)
    return clone


def make_repo(work: Path, template: Path, size: int, layout: str) -> Path:
    repo = work / f"repo-{layout}-{size}"
    sh(sys.executable, "-m", "copier", "copy", "--trust", "--defaults", "--quiet", "--vcs-ref", "HEAD",
       "-d", "python_version=3.11", "-d", f"workspace_layout={layout}", str(template), str(repo), cwd=work)
    commit(repo, "generated")
    if size <= SAMPLES:  # the sample packages alone (bench_daily_loop.py's smallest size)
        return repo
    sh(sys.executable, "-m", "copier", "copy", "--trust", "--defaults", "--quiet", "--vcs-ref", "HEAD",
       "-d", "template_kind=package", "-d", "package_name=p001", str(template), str(repo), cwd=work)
    for number in range(2, size - SAMPLES + 1):
        clone_package(repo, "p001", f"p{number:03d}")
    sh("make", "lock", cwd=repo)
    commit(repo, f"{size} packages")
    return repo


def measure(repo: Path, switch: bool, layout: str) -> dict[str, float | int]:
    figures: dict[str, float | int] = {}
    leaf = repo / "src/nt_p001/nt_p001/core.py"
    leaf.write_text(leaf.read_text() + "\n# a one-package change\n")
    commit(repo, "touch one package")
    # Run as CI does (python3, no environment to build); the best of three, to drop noise.
    runs = [timed("python3", "scripts/affected.py", "--base", "HEAD~1", cwd=repo) for _ in range(3)]
    figures["affected_s"] = min(r[0] for r in runs)
    figures["jobs"] = len(json.loads(runs[0][1]))
    figures["lock_check_s"], _ = timed("make", "lock-check", cwd=repo)
    figures["add_s"], _ = timed("make", "new-package", "NAME=extra", "TYPE=library", cwd=repo)
    commit(repo, "extra")
    if switch:
        other = "independent" if layout == "shared" else "shared"
        figures["switch_s"], _ = timed("make", "switch-layout", f"LAYOUT={other}", cwd=repo)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 50, 100])
    parser.add_argument("--switch-sizes", type=int, nargs="*", default=[10, 50])
    parser.add_argument("--layouts", nargs="+", default=["shared", "independent"])
    args = parser.parse_args()
    print(f"{'packages':>8} {'layout':<12} {'affected s':>10} {'test jobs':>9} {'lock-check s':>12} "
          f"{'add pkg s':>9} {'switch s':>9}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        template = template_clone(Path(tmp))
        for size in args.sizes:
            for layout in args.layouts:
                repo = make_repo(Path(tmp), template, size, layout)
                f = measure(repo, size in args.switch_sizes, layout)
                switch = f"{f['switch_s']:9.1f}" if "switch_s" in f else f"{'-':>9}"
                print(f"{size:>8} {layout:<12} {f['affected_s']:>10.3f} {f['jobs']:>9} "
                      f"{f['lock_check_s']:>12.2f} {f['add_s']:>9.2f} {switch}", flush=True)
                shutil.rmtree(repo)
    return 0


if __name__ == "__main__":
    sys.exit(main())
