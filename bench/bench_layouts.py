"""Print what a light job ships next to a heavy one, in both layouts, on a realistic workspace.

Figures, not assertions: run it before and after a change and compare.

    uv run --locked python bench/bench_layouts.py

The benchmark builds its own workspace from this checkout (python_version=3.11): the shared
library `nt_common`, the light ECS job `nt_api` and Lambda function `nt_ingestion` (PyYAML
only), and a heavy ECS job `nt_analytics` added with the package kind, with NumPy and pandas.
It measures in the shared layout, runs the repo's own `make switch-layout
LAYOUT=independent`, and measures again.

Without containers (the same commands the Dockerfiles run, on this machine):
- tarball: `uv venv --relocatable` + `uv sync --frozen --no-dev --no-editable` for one package
  (compiled bytecode, as Dockerfile.venv), then `tar czf`, as docker/Dockerfile.venv does;
- whole workspace: every package in one venv, tarred the same way (shared: `--all-packages`
  from the one lock; independent: there is no shared lock, so `uv pip install` of every
  package into one venv);
- Lambda layers: `uv export` + `uv pip install --no-deps --target` of third-party and local
  requirements, as docker/Dockerfile.lambda does, uncompressed bytes above the base image.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = {
    **os.environ,
    "UV_PYTHON_DOWNLOADS": "never",
    "PYENV_VERSION": "3.11.7:3.12.1:3.13.0:3.10.13",
    "UV_COMPILE_BYTECODE": "1",
    "UV_LINK_MODE": "copy",
}
ENV.pop("VIRTUAL_ENV", None)
PYTHON = "3.11"
LIGHT_JOB, LIGHT_FUNCTION, HEAVY_JOB = "nt_api", "nt_ingestion", "nt_analytics"


def sh(*cmd: str, cwd: Path, env: dict | None = None) -> str:
    result = subprocess.run(cmd, cwd=cwd, env=env or ENV, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def copier(*args: str, cwd: Path) -> None:
    sh(sys.executable, "-m", "copier", *args, cwd=cwd)


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def tar_bytes(venv: Path, out: Path) -> int:
    sh("tar", "-C", str(venv), "-czf", str(out), ".", cwd=venv)
    return out.stat().st_size


def venv_tarball(repo: Path, work: Path, name: str, sync: list[str], project: str) -> int:
    venv = work / f"venv-{name}"
    shutil.rmtree(venv, ignore_errors=True)
    sh("uv", "venv", "--quiet", "--relocatable", "--python", PYTHON, str(venv), cwd=repo)
    env = {**ENV, "UV_PROJECT_ENVIRONMENT": str(venv)}
    sh("uv", "sync", "--quiet", "--frozen", "--no-dev", "--no-editable", *sync, cwd=repo / project, env=env)
    return tar_bytes(venv, work / f"{name}.tar.gz")


def lambda_layers(repo: Path, work: Path, service: str, project: str, package_flag: list[str]) -> int:
    target = work / f"lambda-{service}"
    shutil.rmtree(target, ignore_errors=True)
    reqs = work / "third.txt"
    local = work / "local.txt"
    cwd = repo / project
    sh("uv", "export", "--quiet", "--frozen", "--no-dev", *package_flag, "--no-emit-local", "-o", str(reqs), cwd=cwd)
    sh("uv", "export", "--quiet", "--frozen", "--no-dev", *package_flag, "--only-emit-local", "--no-editable",
       "--no-hashes", "--no-header", "--no-annotate", "-o", str(local), cwd=cwd)
    for requirements in (reqs, local):
        sh("uv", "pip", "install", "--quiet", "--no-deps", "--python-version", PYTHON,
           "--python-platform", "x86_64-manylinux_2_28", "--target", str(target), "-r", str(requirements), cwd=cwd)
    return dir_bytes(target)


def measure(repo: Path, work: Path, layout: str) -> dict[str, int]:
    figures = {}
    for package in (LIGHT_JOB, HEAVY_JOB):
        if layout == "shared":
            figures[package] = venv_tarball(repo, work, package, ["--package", package], ".")
        else:
            figures[package] = venv_tarball(repo, work, package, [], f"src/{package}")
    if layout == "shared":
        figures["whole"] = venv_tarball(repo, work, "whole", ["--all-packages"], ".")
        figures["lambda"] = lambda_layers(repo, work, LIGHT_FUNCTION, ".", ["--package", LIGHT_FUNCTION])
    else:
        venv = work / "venv-whole"
        shutil.rmtree(venv, ignore_errors=True)
        sh("uv", "venv", "--quiet", "--relocatable", "--python", PYTHON, str(venv), cwd=repo)
        packages = sorted(str(p) for p in (repo / "src").iterdir() if (p / "pyproject.toml").is_file())
        sh("uv", "pip", "install", "--quiet", "--python", str(venv / "bin/python"), *packages, cwd=repo)
        figures["whole"] = tar_bytes(venv, work / "whole.tar.gz")
        figures["lambda"] = lambda_layers(repo, work, LIGHT_FUNCTION, f"src/{LIGHT_FUNCTION}", [])
    return figures


def mib(size: int) -> str:
    return f"{size / 2**20:9.2f} MiB"


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        repo = work / "repo"
        copier("copy", "--trust", "--defaults", "--quiet", "--vcs-ref", "HEAD",
               "-d", f"python_version={PYTHON}", "-d", "lambda_architecture=x86_64",
               str(ROOT), str(repo), cwd=work)
        # Generation commits when git has an identity; this covers a copy that only staged.
        sh("git", "add", "-A", cwd=repo)
        sh("git", "commit", "--quiet", "--allow-empty", "-m", "generated", cwd=repo)
        copier("copy", "--trust", "--defaults", "--quiet", "--vcs-ref", "HEAD",
               "-d", "template_kind=package", "-d", "package_name=analytics", "-d", "package_type=ecs",
               str(ROOT), str(repo), cwd=work)
        sh("uv", "add", "--quiet", "--directory", f"src/{HEAVY_JOB}", "numpy", "pandas", cwd=repo)
        sh("git", "add", "-A", cwd=repo)
        sh("git", "commit", "--quiet", "-m", "analytics with numpy and pandas", cwd=repo)

        results = {"shared": measure(repo, work, "shared")}
        sh("make", "switch-layout", "LAYOUT=independent", cwd=repo)
        results["independent"] = measure(repo, work, "independent")

    print("Venv tarballs (tar.gz) and Lambda layers, built without containers; python 3.11, x86_64")
    print(f"{'layout':<12} {'light job':>13} {'heavy job':>13} {'whole ws':>13} {'light/whole':>12} {'lambda layers':>14}")
    for layout, f in results.items():
        share = f[LIGHT_JOB] / f["whole"]
        print(
            f"{layout:<12} {mib(f[LIGHT_JOB])} {mib(f[HEAVY_JOB])} {mib(f['whole'])} "
            f"{share:>11.1%} {mib(f['lambda'])}"
        )
    print(f"light job = {LIGHT_JOB} (PyYAML), heavy job = {HEAVY_JOB} (NumPy, pandas), "
          f"lambda layers = {LIGHT_FUNCTION} above its base image (uncompressed); goal: light <= 10% of whole")
    return 0


if __name__ == "__main__":
    sys.exit(main())
