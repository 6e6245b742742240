"""One uv version and one Python version in a generated repo, every supported Python rendered.

The exact uv of CI and the images lives in `.github/uv/requirements.txt` (people get a floor,
the root pyproject.toml's `[tool.uv] required-version`), Python's one place is
`.python-version`. setup-uv, `make` and CD read them there; the Dockerfiles only repeat them as
ARG defaults, which `scripts/pins.py check` (CI's lock check, `make lock-check`) holds in step.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import builder
import gha
import pytest
import yaml
from conftest import TEMPLATE, run
from test_workflows import lint, tool, workflow_files

PYTHONS = yaml.safe_load((TEMPLATE / "copier.yml").read_text())["python_version"]["choices"]
UV = builder.template_uv_version()
UV_PIN = ".github/uv/requirements.txt"
BUILD_TARGETS = ["venv", "runtime-image", "lambda-image"]
RUNTIME_COMPILE = (
    "uv pip compile --universal --python-version {python} --generate-hashes"
    " docker/runtime/requirements.in -o docker/runtime/requirements.txt"
)


def setup_uv_version(version_file: Path) -> str:
    """What setup-uv (v6.4.3, src/version/requirements-file.ts) installs for a `.txt`
    version-file: the first line starting `uv` and a comparison, an exact `==` stripped."""
    lines = version_file.read_text().split("\n")
    line = next(line for line in lines if re.match(r"^uv[=<>~!]", line))
    return re.match(r"^uv([=<>~!]+\S*)", line)[1].strip().removeprefix("==")


def arg_defaults(dockerfile: Path) -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=(\S*)$", dockerfile.read_text(), re.MULTILINE))


def base_images(dockerfile: Path) -> list[str]:
    """The FROM images, with the file's own ARG defaults filled in."""
    defaults = arg_defaults(dockerfile)
    images = []
    for line in dockerfile.read_text().splitlines():
        if line.startswith("FROM "):
            image = [w for w in line.split()[1:] if not w.startswith("--platform=")][0]
            images.append(re.sub(r"\$\{(\w+)\}", lambda m: defaults[m[1]], image))
    return images


def lambda_glibc(dockerfile: Path, python: str) -> str:
    """Run the Lambda Dockerfile's own glibc choice in a shell, for one Python version."""
    case = re.search(r"case \"\$\{PYTHON_VERSION\}\" in .*? esac", dockerfile.read_text())
    assert case, "Dockerfile.lambda no longer derives the glibc level from PYTHON_VERSION"
    script = f'PYTHON_VERSION={python}; {case[0]}; printf %s "$glibc"'
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize("arch", ["arm64", "x86_64"])
@pytest.mark.parametrize("python", PYTHONS)
def test_every_python_renders_its_own_images(render, python: str, arch: str) -> None:
    """Each supported Python, 3.14 included, names its own base images through the ARG
    defaults, and the Lambda wheels follow the runtime's glibc (Amazon Linux 2 for 3.11)."""
    repo = render(python_version=python, lambda_architecture=arch, ecs_architecture=arch)
    assert (repo / ".python-version").read_text().strip() == python
    uv = setup_uv_version(repo / UV_PIN)
    assert uv == UV
    floor = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["uv"]["required-version"]
    assert floor == f">={UV}"
    suffix = "-arm64" if arch == "arm64" else ""
    docker = repo / "docker"
    for name in ("Dockerfile.venv", "Dockerfile.runtime", "Dockerfile.lambda"):
        defaults = arg_defaults(docker / name)
        assert (defaults["PYTHON_VERSION"], defaults["UV_VERSION"]) == (python, uv), name
        images = base_images(docker / name)
        assert images[0] == f"ghcr.io/astral-sh/uv:{uv}", name
        assert images[1] == f"python:{python}-slim-bookworm", name
    assert base_images(docker / "Dockerfile.runtime")[2] == f"python:{python}-slim-bookworm"
    assert base_images(docker / "Dockerfile.lambda")[2] == (
        f"public.ecr.aws/lambda/python:{python}{suffix}"
    )
    assert lambda_glibc(docker / "Dockerfile.lambda", python) == (
        "2_17" if python == "3.11" else "2_34"
    )


@pytest.mark.parametrize("layout", ["shared", "independent"])
def test_newest_python_passes_the_linters(render, layout: str) -> None:
    """3.14 renders Dockerfiles hadolint accepts and workflows and a Dependabot file the
    workflow linters and schemas accept."""
    repo = render(python_version=PYTHONS[-1], workspace_layout=layout)
    dockerfiles = sorted(map(str, (repo / "docker").glob("Dockerfile.*")))
    hadolint = lint(tool("hadolint"), "--no-color", *dockerfiles)
    assert hadolint.returncode == 0 and not hadolint.stdout.strip(), hadolint.stdout
    workflows = list(map(str, workflow_files(repo)))
    tool("shellcheck")
    for cmd in (
        [tool("actionlint"), *workflows],
        [tool("zizmor"), "--offline", "--persona=pedantic", str(repo)],
        [tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *workflows],
        [
            tool("check-jsonschema"),
            "--builtin-schema",
            "vendor.dependabot",
            str(repo / ".github/dependabot.yml"),
        ],
    ):
        result = lint(*cmd)
        assert result.returncode == 0, result.stdout + result.stderr


def make_dry_run(repo: Path) -> list[str]:
    """The docker build commands `make -n` would run, one line each."""
    output = run(["make", "-n", *BUILD_TARGETS], cwd=repo).stdout.replace("\\\n", " ")
    return [" ".join(line.split()) for line in output.splitlines() if "docker build" in line]


def setup_uv_versions(repo: Path) -> set[str]:
    """What every setup-uv step in CI, CD and the template-update check installs, read the
    way setup-uv reads its version-file."""
    found = set()
    for name in ("ci.yml", "cd.yml", "template-update.yml"):
        for job in gha.load(repo / ".github" / "workflows" / name)["jobs"].values():
            for step in job["steps"]:
                if "setup-uv" in step.get("uses", ""):
                    found.add(setup_uv_version(repo / step["with"]["version-file"]))
    return found


@pytest.mark.slow
def test_changing_the_one_place_is_enough(make_project) -> None:
    """A new uv or Python version, written in its one place, reaches setup-uv, every `make`
    build and CD's build arguments (as a Dependabot PR moving CI's uv would); a Dockerfile
    default edited alone, or a pin below the floor, fails the lock check (CI's and make's), and
    `scripts/pins.py sync` brings the defaults back in step."""
    repo = make_project(fresh=True, python_version="3.11", deploy_targets=["ecs", "lambda"])
    builds = make_dry_run(repo)
    assert len(builds) == 3 and all(
        f"--build-arg UV_VERSION={UV} --build-arg PYTHON_VERSION=3.11" in b for b in builds
    ), builds
    run([sys.executable, "scripts/ci.py", "lock-check"], cwd=repo)

    pin, python = repo / UV_PIN, repo / ".python-version"
    original = pin.read_text()
    pin.write_text(original.replace(f"uv=={UV}\n", "uv==0.99.1\n"))
    python.write_text("3.12\n")
    builds = make_dry_run(repo)
    assert len(builds) == 3 and all(
        "--build-arg UV_VERSION=0.99.1 --build-arg PYTHON_VERSION=3.12" in b for b in builds
    ), builds
    assert setup_uv_versions(repo) == {"0.99.1"}
    cd_versions = run([sys.executable, "scripts/pins.py", "github-output"], cwd=repo).stdout
    assert cd_versions.split() == ["uv=0.99.1", "python=3.12"]
    # The defaults are now stale: the check names each one, and sync rewrites them.
    stale = run([sys.executable, "scripts/pins.py", "check"], cwd=repo, check=False)
    assert stale.returncode != 0
    for name in ("venv", "runtime", "lambda"):
        assert f"docker/Dockerfile.{name}: ARG UV_VERSION={UV}" in stale.stderr
        assert f"docker/Dockerfile.{name}: ARG PYTHON_VERSION=3.11" in stale.stderr
    run([sys.executable, "scripts/pins.py", "sync"], cwd=repo)
    for name in ("venv", "runtime", "lambda"):
        defaults = arg_defaults(repo / "docker" / f"Dockerfile.{name}")
        assert (defaults["UV_VERSION"], defaults["PYTHON_VERSION"]) == ("0.99.1", "3.12")

    # A pin below the floor people get: CI's own uv would refuse to run, so the check says so.
    pin.write_text(original.replace(f"uv=={UV}\n", "uv==0.0.1\n"))
    below = run([sys.executable, "scripts/pins.py", "check"], cwd=repo, check=False)
    assert below.returncode != 0
    assert f"{UV_PIN} pins uv 0.0.1, below pyproject.toml's [tool.uv] required-version" in (
        below.stderr
    ), below.stderr

    # Back to the uv this machine runs, then a Dockerfile default edited on its own.
    pin.write_text(original)
    run([sys.executable, "scripts/pins.py", "sync"], cwd=repo)
    run([sys.executable, "scripts/ci.py", "lock-check"], cwd=repo)
    run(["make", "lock-check"], cwd=repo)
    lambda_file = repo / "docker" / "Dockerfile.lambda"
    text = lambda_file.read_text()
    lambda_file.write_text(text.replace(f"ARG UV_VERSION={UV}", "ARG UV_VERSION=0.0.1"))
    for cmd in ([sys.executable, "scripts/ci.py", "lock-check"], ["make", "lock-check"]):
        drift = run(cmd, cwd=repo, check=False)
        assert drift.returncode != 0, cmd
        assert "docker/Dockerfile.lambda: ARG UV_VERSION=0.0.1" in drift.stderr, cmd


@pytest.mark.slow
def test_runtime_requirements_are_compiled_by_their_own_header(render) -> None:
    """docker/runtime/requirements.txt's header is the command a team runs, from the repo's
    own paths, for the oldest supported Python; the check recompiles with it and fails when
    requirements.in changed, and the make target brings the file back in step."""
    repo = render(deploy_targets=["ecs"])
    requirements = repo / "docker/runtime/requirements.txt"
    header = requirements.read_text().splitlines()[:2]
    assert header == [
        "# This file was autogenerated by uv via the following command:",
        f"#    {RUNTIME_COMPILE.format(python=PYTHONS[0])}",
    ]
    assert "/tmp" not in requirements.read_text()
    assert requirements.read_text().count("# via -r docker/runtime/requirements.in") == 2
    run([sys.executable, "scripts/pins.py", "check"], cwd=repo)

    source = repo / "docker/runtime/requirements.in"
    source.write_text(source.read_text() + "six\n")
    stale = run([sys.executable, "scripts/pins.py", "check"], cwd=repo, check=False)
    assert stale.returncode != 0
    assert "make runtime-requirements" in stale.stderr
    assert "+    #   -r docker/runtime/requirements.in" in stale.stderr
    run(["make", "runtime-requirements"], cwd=repo)
    assert requirements.read_text().splitlines()[:2] == header
    run([sys.executable, "scripts/pins.py", "check"], cwd=repo)
