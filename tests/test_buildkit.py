"""BuildKit tier: the generated Dockerfiles built the way CD builds them, compared with buildah.

CD builds with BuildKit (`docker build` through docker/setup-buildx-action), every other
container test with buildah 1.28. Here the generated repo (shared layout, Python 3.11, the
stand-in base images of tests/builder.py; one repo per Lambda architecture, as the answer
picks the Lambda base image's tag) is built by both, with the generated Makefile's own
targets (`make venv`, `make lambda-image`, `make runtime-image` with `DOCKER=/usr/bin/docker`),
whose command lines are cd.yml's without `--tag ... --push`: the venv tarball through
`--output type=local,dest=dist`, the Lambda image for linux/amd64 and linux/arm64 (no emulator:
the final stage only copies), the ECS runtime for linux/amd64. The results must match: the
same files and wheel tags, byte for byte for the venv tarball and the Lambda /var/task; and two
`--no-cache` Lambda builds must give the same layer digests under BuildKit as under buildah.

The engine is Debian 12's docker.io, started privately by the `engine` fixture (see
builder.start_engine): Docker Engine 20.10.24 with the BuildKit it vendors, v0.8.3 with moby's
20.10 backports (`docker version` and `docker info` report only the engine's version; the
BuildKit version is moby 20.10's vendor list). CD runs setup-buildx's docker-container driver
with the BUILDKIT_IMAGE cd.yml pins, moby/buildkit:v0.23.2: a newer frontend and solver (it
knows `COPY --link`, heredocs, SOURCE_DATE_EPOCH and provenance attestations, none of which
0.8 has), and it pushes to a registry instead of the engine's image store. So the generated
Dockerfiles' common ground with buildah 1.28 is checked against the oldest BuildKit a team may
meet, and Debian's CLI cannot take `--provenance=false` (a buildx flag; 0.8 makes no
attestations to turn off): the Lambda build passes `LAMBDA_BUILD_FLAGS` without it, the one
change from the Makefile's line, as the Makefile's own comment tells podman users to.

Nothing is pulled: the stand-ins move into the engine with `podman save | docker load` under
the names the Dockerfiles use (python:3.11-slim-bookworm is amd64 only there, the engine's
image store holding one platform per name: which is why no ECS arm64 build runs here).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import artifacts
import builder
import pytest
from conftest import run

container_builder = builder.container_builder

pytestmark = [pytest.mark.slow, pytest.mark.containers]

PYTHON = "3.11"
API, INGESTION = "nt_api", "nt_ingestion"
# test_containers.py's shared variant: the session generates this repo once for both tiers.
ANSWERS = {
    "python_version": PYTHON,
    "lambda_architecture": "x86_64",
    "package_prefix": "nt",
    "workspace_layout": "shared",
    "artifact_naming": "flat",
}
PLATFORMS = {"x86_64": "linux/amd64", "arm64": "linux/arm64"}
VERSION = "0.3.1"


@pytest.fixture(scope="module")
def engine(container_builder: ModuleType) -> Iterator[builder.Engine]:
    """A private Docker Engine holding the stand-in base images; stopped after the module.

    Skips (fails in CI) with the reason and the engine's log if dockerd cannot run here.
    """
    uv_version = builder.template_uv_version()
    try:
        with builder.setup_lock():
            container_builder.ensure_slim(PYTHON, "x86_64")
            container_builder.ensure_lambda(PYTHON, "x86_64")
            container_builder.ensure_lambda(PYTHON, "arm64")
        docker = builder.start_engine()
    except (builder.BuilderUnavailable, subprocess.CalledProcessError, OSError) as err:
        builder._unavailable(f"Docker Engine (BuildKit) unavailable: {err}")
    try:
        docker.load(builder.slim_instance(PYTHON, "x86_64"), builder.slim_image(PYTHON))
        docker.load(builder.uv_instance(uv_version, "x86_64"), builder.uv_image(uv_version))
        for arch in PLATFORMS:
            docker.load(builder.lambda_image(PYTHON, arch))
        yield docker
    finally:
        # The data root persists (stand-ins load once per machine); what the builds left goes.
        docker.docker("image", "rm", "-f", INGESTION, "my-monorepo-runtime", check=False)
        docker.docker("builder", "prune", "-af", check=False)
        docker.stop()


@pytest.fixture(scope="module")
def repo(make_project, tmp_path_factory) -> Path:
    """A copy of the generated repo: the Makefile's targets write dist/ into it."""
    copy = tmp_path_factory.mktemp("buildkit") / "repo"
    shutil.copytree(make_project(**ANSWERS), copy, symlinks=True)
    return copy


def make(engine: builder.Engine, repo: Path, target: str, **variables: str) -> str:
    """`make <target> DOCKER=/usr/bin/docker VAR=value ...` in the repo, against the engine."""
    args = [f"{key}={value}" for key, value in {"DOCKER": builder.DOCKER_CLI, **variables}.items()]
    return run(["make", target, *args], cwd=repo, env=engine.env()).stderr


def tree(root: Path) -> dict[str, str]:
    """Every entry under root: a file's sha256, a symlink's target, 'dir' for a folder."""
    entries = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            entries[rel] = "-> " + str(path.readlink())
        elif path.is_dir():
            entries[rel] = "dir"
        else:
            entries[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return entries


def differences(first: dict[str, str], second: dict[str, str]) -> list[str]:
    """What differs between two tree() results, one line per path (at most 20)."""
    lines = [
        f"{path}: {first.get(path, 'missing')} / {second.get(path, 'missing')}"
        for path in sorted(first.keys() | second.keys())
        if first.get(path) != second.get(path)
    ]
    return lines[:20]


# --------------------------------------------------------------------------- ECS


def test_venv_tarball_is_the_same_as_buildahs(
    engine: builder.Engine, repo: Path, container_builder: ModuleType, tmp_path: Path
) -> None:
    """`make venv` under BuildKit writes the very tarball buildah writes from the same sources:
    the same members and wheel tags, and the same bytes (Dockerfile.venv fixes every mtime,
    owner and the gzip header), so either builder's release of a version is the other's."""
    make(engine, repo, "venv", PACKAGE=API, PACKAGE_VERSION=VERSION)
    (kit,) = (repo / "dist").rglob("*.tar.gz")
    assert kit.relative_to(repo / "dist").as_posix() == f"{API}__venv_{VERSION}.tar.gz"

    container_builder.build(
        repo,
        "docker/Dockerfile.venv",
        build_args={"PACKAGE_NAME": API, "PACKAGE_VERSION": VERSION},
        output=tmp_path / "buildah",
    )
    (bud,) = (tmp_path / "buildah").rglob("*.tar.gz")

    unpacked = {}
    for name, tarball in (("buildkit", kit), ("buildah", bud)):
        with tarfile.open(tarball) as tf:
            tf.extractall(tmp_path / f"unpacked-{name}", filter="tar")
        unpacked[name] = tmp_path / f"unpacked-{name}"
    assert differences(tree(unpacked["buildkit"]), tree(unpacked["buildah"])) == []
    site = f"lib/python{PYTHON}/site-packages"
    tags = artifacts.wheel_tags(unpacked["buildkit"] / site)
    assert tags == artifacts.wheel_tags(unpacked["buildah"] / site)
    assert any("x86_64" in tag for dist in tags.values() for tag in dist), tags
    assert hashlib.sha256(kit.read_bytes()).digest() == hashlib.sha256(bud.read_bytes()).digest()


def test_runtime_image_is_the_same_as_buildahs(
    engine: builder.Engine, repo: Path, container_builder: ModuleType, tmp_path: Path
) -> None:
    """`make runtime-image` under BuildKit: the same entrypoint venv, user and entrypoint."""
    make(engine, repo, "runtime-image")
    image = "my-monorepo-runtime"
    config = json.loads(engine.docker("image", "inspect", image).stdout)[0]
    kit = engine.copy_out(image, "/opt/run-venv", tmp_path / "buildkit")

    bud_image = "localhost/cumt-buildkit-runtime"
    container_builder.build(repo, "docker/Dockerfile.runtime", tag=bud_image)
    bud_config = container_builder.inspect(bud_image)
    bud = container_builder.export_rootfs(bud_image) / "opt" / "run-venv"

    assert config["Architecture"] == "amd64"
    for key in ("User", "Entrypoint", "WorkingDir"):
        assert config["Config"][key] == bud_config["Config"][key], key
    assert config["Config"]["User"] == "10001:10001"
    # Same files. Not the same bytes: uv compiles this venv's bytecode timestamp-based, so each
    # .pyc holds its source's install time (Dockerfile.runtime is not built reproducibly).
    assert sorted(tree(kit)) == sorted(tree(bud))
    site = f"lib/python{PYTHON}/site-packages"
    assert artifacts.wheel_tags(kit / site) == artifacts.wheel_tags(bud / site)
    container_builder.remove_image(bud_image)


# --------------------------------------------------------------------------- Lambda


def lambda_build_flags(repo: Path, *extra: str) -> str:
    """The Makefile's LAMBDA_BUILD_FLAGS without `--provenance=false` (a buildx flag that
    Debian's docker 20.10 does not know), plus extra."""
    line = next(
        line
        for line in (repo / "Makefile").read_text().splitlines()
        if line.startswith("LAMBDA_BUILD_FLAGS ?= ")
    )
    flags = line.split("?=", 1)[1].split()
    assert "--provenance=false" in flags, line
    return " ".join([flag for flag in flags if flag != "--provenance=false"] + list(extra))


@pytest.fixture(scope="module")
def lambda_repos(repo: Path, make_project) -> dict[str, Path]:
    """The generated repo for each Lambda architecture: the answer picks the base image's tag
    (`-arm64`) and the Makefile's platform, so each architecture is its own generated repo."""
    return {"x86_64": repo, "arm64": make_project(**{**ANSWERS, "lambda_architecture": "arm64"})}


@pytest.fixture(scope="module")
def lambda_builds(
    engine: builder.Engine, lambda_repos: dict[str, Path], tmp_path_factory
) -> dict[str, tuple[list[str], Path]]:
    """`make lambda-image` under BuildKit: arm64 once, x86_64 twice with `--no-cache` (CD
    builds from nothing). Each build's layer digests and its /var/task, by 'arm64',
    'x86_64' and 'x86_64-again' (the Makefile tags every build the same)."""
    out = tmp_path_factory.mktemp("buildkit-lambda")
    builds = {}
    for name, arch in (("x86_64", "x86_64"), ("x86_64-again", "x86_64"), ("arm64", "arm64")):
        repo = lambda_repos[arch]
        flags = lambda_build_flags(repo, *(["--no-cache"] if arch == "x86_64" else []))
        assert f"--platform {PLATFORMS[arch]}" in flags
        make(engine, repo, "lambda-image", SERVICE=INGESTION, LAMBDA_BUILD_FLAGS=flags)
        config = json.loads(engine.docker("image", "inspect", INGESTION).stdout)[0]
        assert config["Architecture"] == builder.OCI_ARCH[arch]
        assert config["Config"]["Cmd"] == ["lambda_function.handler"]
        task = engine.copy_out(INGESTION, "/var/task", out / name)
        builds[name] = (engine.layers(INGESTION), task)
    return builds


@pytest.mark.parametrize("arch", list(PLATFORMS))
def test_lambda_task_root_is_the_same_as_buildahs(
    arch: str,
    lambda_builds: dict[str, tuple[list[str], Path]],
    lambda_repos: dict[str, Path],
    container_builder: ModuleType,
) -> None:
    """The BuildKit image's /var/task holds buildah's files, byte for byte, with the same wheel
    tags (wheels for the functions' architecture, whatever machine builds)."""
    _, kit = lambda_builds[arch]
    image = f"localhost/cumt-buildkit-lambda-{arch}"
    container_builder.build(
        lambda_repos[arch],
        "docker/Dockerfile.lambda",
        tag=image,
        build_args={"SERVICE_NAME": INGESTION},
        platform=PLATFORMS[arch],
    )
    bud = container_builder.export_rootfs(image) / "var" / "task"
    assert differences(tree(kit), tree(bud)) == []
    tags = artifacts.wheel_tags(kit)
    assert tags == artifacts.wheel_tags(bud)
    machine = "aarch64" if arch == "arm64" else "x86_64"
    assert artifacts.wheel_problems(kit, machine, (2, 26)) == []
    assert set(artifacts.elf_machines(kit).values()) == {machine}
    assert not [p.name for p in kit.rglob(".*")], "installer leftovers in /var/task"
    container_builder.remove_image(image)


def test_no_cache_lambda_builds_give_the_same_layers(
    lambda_builds: dict[str, tuple[list[str], Path]], engine: builder.Engine
) -> None:
    """Two `--no-cache` BuildKit builds of unchanged sources: the dependency, local-package
    and code layers have the same digests (what CD's release of unchanged code pushes)."""
    first, _ = lambda_builds["x86_64"]
    second, _ = lambda_builds["x86_64-again"]
    base = engine.layers(builder.lambda_image(PYTHON, "x86_64"))
    assert first[: len(base)] == base and len(first) == len(base) + 3
    names = ("dependencies", "local packages", "code")
    differ = [name for name, a, b in zip(names, first[len(base) :], second[len(base) :]) if a != b]
    assert differ == [], f"layers that differ between two --no-cache builds: {differ}"
