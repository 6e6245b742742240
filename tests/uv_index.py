"""uv releases from the package index, installed beside the machine's uv, never over it.

People run whatever uv they installed, not the template's pin: tests that stand in for them
install a release from the index into a cache folder (the wheel's own `uv` and `uvx`
binaries) and put it first on PATH for the commands they run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "copier-uv-monorepo"


def newest(requirement: str = "uv") -> str:
    """The newest uv release on the index that meets `requirement` (`uv`, `uv<0.13.8`).

    Resolved by the machine's uv with its own index settings, from a folder with no project
    configuration, and with uv's page fetched afresh (a cached page would hide a new release).
    """
    with tempfile.TemporaryDirectory() as folder:
        result = subprocess.run(
            ["uv", "pip", "compile", "-", "--quiet", "--no-header", "--no-annotate"]
            + ["--refresh-package", "uv", "--python", sys.executable],
            input=f"{requirement}\n",
            cwd=folder,
            capture_output=True,
            text=True,
            check=False,
        )
    lines = [line.strip() for line in result.stdout.splitlines() if line.startswith("uv==")]
    if result.returncode != 0 or len(lines) != 1:
        raise RuntimeError(f"no uv release on the index meets {requirement!r}: {result.stderr}")
    return lines[0].removeprefix("uv==")


def install(version: str) -> Path:
    """The bin folder holding uv `version` (and its uvx), installed once per machine.

    Installed into a folder of its own, then renamed into place, so pytest-xdist workers
    asking for the same version at once never see half an install.
    """
    target = CACHE / "uv-index" / f"uv-{version}"
    if (target / "bin" / "uv").is_file():
        return target / "bin"
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"uv-{version}-", dir=target.parent))
    subprocess.run(
        ["uv", "pip", "install", "--quiet", "--no-deps", "--python", sys.executable]
        + ["--target", str(staging), f"uv=={version}"],
        check=True,
    )
    try:
        staging.rename(target)
    except OSError:  # another worker got there first
        shutil.rmtree(staging, ignore_errors=True)
    if not (target / "bin" / "uv").is_file():
        raise RuntimeError(f"{target} holds no bin/uv: delete the folder and run again")
    return target / "bin"


def env_with(bin_folder: Path) -> dict[str, str]:
    """os.environ with that uv first on PATH: uv, uvx and every uv a script starts."""
    return {**os.environ, "PATH": f"{bin_folder}{os.pathsep}{os.environ['PATH']}"}


@dataclass(frozen=True)
class Release:
    """One uv release installed from the index, and the environment that runs it."""

    version: str
    env: dict[str, str]


def release(requirement: str) -> Release:
    """The newest release meeting `requirement`, installed, with its environment."""
    version = newest(requirement)
    return Release(version, env_with(install(version)))
