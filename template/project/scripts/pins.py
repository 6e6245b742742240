# /// script
# requires-python = ">=3.11"
# ///
"""The uv and Python versions this repo builds with, each read from its one place.

    uv run scripts/pins.py build-args        --build-arg flags for docker build (make, CD)
    uv run scripts/pins.py github-output     uv=<version> and python=<version> lines (CD)
    uv run scripts/pins.py check             Dockerfile defaults and runtime requirements current
    uv run scripts/pins.py sync              set the Dockerfile defaults from the one places
    uv run scripts/pins.py runtime-requirements    re-pin docker/runtime/requirements.txt

uv: `.github/uv/requirements.txt` (`uv==X.Y.Z`, the one uv CI and the images use; people
may run any uv at or above the root pyproject.toml's `[tool.uv] required-version`). Python:
`.python-version` (`3.X`). Each Dockerfile repeats them as `ARG` defaults so that a plain
`docker build` works; `check` fails when one of those defaults differs, `sync` rewrites them.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import shlex
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import NoReturn

ROOT = Path(__file__).resolve().parents[1]
UV_PIN = Path(".github/uv/requirements.txt")
RUNTIME_REQUIREMENTS = Path("docker/runtime/requirements.txt")
ARG_LINE = re.compile(r"^ARG (UV_VERSION|PYTHON_VERSION)=(\S*)[ \t]*$", re.MULTILINE)


def fail(message: str) -> NoReturn:
    sys.exit(f"pins: {message}")


def uv_version() -> str:
    """The exact uv of CI and the images, found the way setup-uv's version-file finds it: the
    first line starting with `uv` and a comparison."""
    path = ROOT / UV_PIN
    lines = path.read_text().splitlines() if path.exists() else []
    line = next((line.strip() for line in lines if re.match(r"uv[=<>~!]", line)), "")
    match = re.fullmatch(r"uv==(\d+\.\d+\.\d+)(?:\s+#.*)?", line)
    if not match:
        found = repr(line) if line else "no `uv==` line" if path.exists() else "missing"
        fail(
            f"{UV_PIN}: {found}; it must hold one line `uv==X.Y.Z`: CI and the images install"
            " exactly that uv"
        )
    return match[1]


def release(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def floor_problems() -> list[str]:
    """The exact uv must satisfy the floor people get, or CI's own uv refuses to run."""
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text()).get("tool", {}).get("uv", {})
    required = str(settings.get("required-version", ""))
    pinned = uv_version()
    floors = re.findall(r">=\s*(\d+(?:\.\d+)*)", required)
    return [
        f"{UV_PIN} pins uv {pinned}, below pyproject.toml's [tool.uv] required-version"
        f" {required!r}: move the pin to {floor} or later"
        for floor in floors
        if release(pinned) < release(floor)
    ]


def python_version() -> str:
    path = ROOT / ".python-version"
    lines = [line.strip() for line in path.read_text().splitlines()] if path.exists() else []
    version = next((line for line in lines if line and not line.startswith("#")), "")
    if not re.fullmatch(r"3\.\d+", version):
        fail(
            f".python-version holds {version!r}; it must be a Python minor version such as 3.13"
            " (the image tags follow it)"
        )
    return version


def versions() -> dict[str, str]:
    return {"UV_VERSION": uv_version(), "PYTHON_VERSION": python_version()}


def dockerfile_drift() -> list[str]:
    """One message per Dockerfile ARG default that differs from its one place."""
    wanted = versions()
    source = {
        "UV_VERSION": str(UV_PIN),
        "PYTHON_VERSION": ".python-version",
    }
    problems = []
    for path in sorted((ROOT / "docker").glob("Dockerfile*")):
        for match in ARG_LINE.finditer(path.read_text()):
            name, default = match[1], match[2]
            if default != wanted[name]:
                problems.append(
                    f"{path.relative_to(ROOT)}: ARG {name}={default}, but {source[name]} says"
                    f" {wanted[name]}: run `uv run scripts/pins.py sync` to set the default"
                )
    return problems


def sync() -> None:
    wanted = versions()
    for path in sorted((ROOT / "docker").glob("Dockerfile*")):
        text = path.read_text()
        synced = ARG_LINE.sub(lambda match: f"ARG {match[1]}={wanted[match[1]]}", text)
        if synced != text:
            path.write_text(synced)
            print(f"pins: {path.relative_to(ROOT)}: defaults set to {wanted}")


def compile_command(requirements: Path) -> list[str]:
    """The `uv pip compile` command recorded in the file's header: the one to run again."""
    header = requirements.read_text().splitlines()[:2]
    command = shlex.split(header[1].lstrip("#")) if len(header) == 2 else []
    if command[:3] != ["uv", "pip", "compile"] or "-o" not in command:
        fail(f"{requirements}: its header must hold the `uv pip compile ... -o {requirements}`")
    return command


def runtime_requirements_drift() -> list[str]:
    """Compile requirements.in again, keeping the current pins, and compare the output."""
    requirements = ROOT / RUNTIME_REQUIREMENTS
    if not requirements.exists():
        return []
    command = compile_command(requirements)
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "requirements.txt"
        # uv keeps the versions already pinned in the output file unless told to upgrade.
        fresh.write_bytes(requirements.read_bytes())
        output = command.index("-o") + 1
        rerun = [*command[:output], str(fresh), *command[output + 1 :]]
        env = {**os.environ, "UV_CUSTOM_COMPILE_COMMAND": shlex.join(command)}
        result = subprocess.run(
            [*rerun, "--quiet"], cwd=ROOT, env=env, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            return [f"{RUNTIME_REQUIREMENTS}: `{shlex.join(command)}` failed:\n{result.stderr}"]
        current, expected = requirements.read_text(), fresh.read_text()
    if current == expected:
        return []
    diff = "".join(
        difflib.unified_diff(
            current.splitlines(keepends=True),
            expected.splitlines(keepends=True),
            str(RUNTIME_REQUIREMENTS),
            "compiled now",
        )
    )
    return [
        f"{RUNTIME_REQUIREMENTS} is not what requirements.in compiles to: run"
        f" `uv run scripts/pins.py runtime-requirements` (or `make runtime-requirements`)\n{diff}"
    ]


def check() -> int:
    problems = floor_problems() + dockerfile_drift() + runtime_requirements_drift()
    for problem in problems:
        print(f"pins: {problem}", file=sys.stderr)
    if not problems:
        print("pins: uv pin, Dockerfile defaults and docker/runtime/requirements.txt are current")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("build-args", "github-output", "check", "sync", "runtime-requirements"):
        sub.add_parser(name)
    args = parser.parse_args(argv)
    if args.command == "build-args":
        print(" ".join(f"--build-arg {key}={value}" for key, value in versions().items()))
    elif args.command == "github-output":
        pins = versions()
        print(f"uv={pins['UV_VERSION']}\npython={pins['PYTHON_VERSION']}")
    elif args.command == "check":
        return check()
    elif args.command == "sync":
        sync()
    else:
        command = compile_command(ROOT / RUNTIME_REQUIREMENTS)
        print(f"+ {shlex.join(command)}", flush=True)
        return subprocess.run(command, cwd=ROOT, check=False).returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
