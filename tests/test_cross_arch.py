"""Cross-architecture tier: arm64 artifacts built on this x86_64 machine with no emulator.

No binfmt_misc handler for aarch64 is registered on these machines, so any RUN in an arm64
stage fails with "exec format error": an arm64 build that succeeds here ran every step on
x86_64 and only copied files into the arm64 stage. The artifacts are then read on the host
(ELF machines, wheel tags, bytecode) and run one process at a time under
`qemu-aarch64-static -L <arm64 root>` in user mode, which registers nothing.

Stand-ins (tests/builder.py): `public.ecr.aws/lambda/python:3.13-arm64` is an arm64 Debian
trixie root (Python 3.13, as the real AL2023 image) without find, xargs or a package manager,
configured like the real image; `python:3.11-slim-bookworm` for arm64 is Debian bookworm's
arm64 Python 3.11. Their glibc is newer than AL2023's, which is why the wheel tags are
checked against the real runtime's glibc rather than trusted to fail at import.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from types import ModuleType

import artifacts
import builder
import pytest

container_builder = builder.container_builder
arm64_builder = builder.arm64_builder

pytestmark = [pytest.mark.slow, pytest.mark.containers]

S3_EVENT = {"Records": [{"s3": {"bucket": {"name": "landing"}, "object": {"key": "in/a.csv"}}}]}
# glibc of the Lambda runtimes: Amazon Linux 2 (Python 3.11) and AL2023 (3.12 and later).
LAMBDA_GLIBC = {"3.11": (2, 26), "3.13": (2, 34)}
BOOKWORM_GLIBC = (2, 36)


@pytest.fixture(scope="module")
def default_lambda(arm64_builder: ModuleType, make_project) -> tuple[Path, Path]:
    """The default answers' Lambda image (Python 3.13, arm64), built here, and its files."""
    repo = make_project()
    answers = (repo / ".copier-answers.yml").read_text()
    assert "lambda_architecture: arm64" in answers and "python_version: '3.13'" in answers
    image = "localhost/cumt-default-lambda-arm64"
    arm64_builder.ensure_slim("3.13", "x86_64")  # the builder stage
    arm64_builder.ensure_lambda("3.13", "arm64")
    arm64_builder.build(
        repo,
        "docker/Dockerfile.lambda",
        platform="linux/arm64",
        tag=image,
        build_args={"SERVICE_NAME": "nt_ingestion"},
    )
    config = arm64_builder.inspect(image)
    assert config["Architecture"] == "arm64"
    assert config["Config"]["Cmd"] == ["lambda_function.handler"]
    base = arm64_builder.lambda_image("3.13", "arm64")
    # The base's layers, then exactly three: third-party, local packages, the service.
    assert arm64_builder.layers(image)[:-3] == arm64_builder.layers(base)
    return repo, arm64_builder.export_rootfs(image)


def test_default_lambda_image_holds_only_aarch64_code_for_al2023(default_lambda) -> None:
    _, root = default_lambda
    task = root / "var" / "task"
    machines = artifacts.elf_machines(task)
    assert machines, "expected compiled extensions (PyYAML's _yaml) in /var/task"
    assert set(machines.values()) == {"aarch64"}, machines
    # pydantic-core (settings) is compiled: its aarch64 wheel, not the build machine's.
    assert any("pydantic_core" in str(path) for path in machines), machines
    assert artifacts.wheel_problems(task, "aarch64", LAMBDA_GLIBC["3.13"]) == []
    tags = artifacts.wheel_tags(task)
    assert any("aarch64" in tag for dist in tags.values() for tag in dist), tags

    # The service ships as an installed wheel, byte-compiled for 3.13, hash-based.
    assert (task / "nt_ingestion-0.1.0.dist-info" / "METADATA").is_file()
    assert not (task / "tests").exists() and not (task / "src").exists()
    for package in ("nt_ingestion", "nt_common", "yaml"):
        kinds = artifacts.pyc_kinds(task / package)
        assert kinds and all(name.endswith(".cpython-313.pyc") for name in kinds), kinds
        assert set(kinds.values()) == {"unchecked-hash"}, (package, kinds)
    # Nothing from the build leaks in.
    assert not list(task.rglob("*.pth"))
    assert not (root / "build").exists() and not (root / "bin" / "uv").exists()


def test_default_lambda_handler_answers_on_aarch64(default_lambda, arm64_builder) -> None:
    """The image's own files, run by its own arm64 Python under user-mode qemu."""
    _, root = default_lambda
    checks = (
        "import platform, yaml;"
        "assert platform.machine() == 'aarch64', platform.machine();"
        "assert yaml.__with_libyaml__, 'the aarch64 C extension did not load';"
        "import pydantic_core, aws_lambda_powertools;"
    )
    answer = arm64_builder.call_handler_arm64(root, "3.13", S3_EVENT, checks)
    assert answer["statusCode"] == 200
    assert json.loads(answer["body"])["ingested"] == ["landing/in/a.csv"]


def test_default_lambda_image_answers_through_its_runtime_on_aarch64(
    default_lambda, arm64_builder
) -> None:
    """As AWS runs it: the emulator starts the image's arm64 runtime interface client (under
    user-mode qemu), which resolves CMD's handler; invoked over HTTP with the repo's own sample
    event. The init duration is qemu's, not Graviton's: it is only checked to be reported."""
    repo, root = default_lambda
    event = json.loads((repo / "src/nt_ingestion/events/s3-put.json").read_text())
    with arm64_builder.lambda_rie_arm64(root, "3.13") as invoke:
        answer = invoke(event)
    assert answer.status == 200, answer.log
    assert json.loads(answer.answer["body"])["ingested"] == ["landing/2026/01/data.csv"]
    assert answer.init_ms is not None and answer.init_ms > 0, answer.log


@pytest.fixture(scope="module")
def ecs_arm64(arm64_builder: ModuleType, make_project, tmp_path_factory) -> tuple[Path, Path]:
    """An ecs_architecture=arm64 repo (Python 3.11: Debian bookworm's arm64 interpreter)."""
    repo = make_project(
        python_version="3.11", deploy_targets=["ecs"], ecs_architecture="arm64"
    )
    dist = tmp_path_factory.mktemp("dist-arm64")
    for arch in ("x86_64", "arm64"):  # the builder stage, and the runtime image's base
        arm64_builder.ensure_slim("3.11", arch)
    arm64_builder.build(
        repo,
        "docker/Dockerfile.venv",
        platform="linux/arm64",
        build_args={"PACKAGE_NAME": "nt_api"},
        output=dist,
    )
    (tarball,) = dist.rglob("*.tar.gz")
    return repo, tarball


def test_ecs_arm64_tarball_runs_on_aarch64(ecs_arm64, arm64_builder, tmp_path: Path) -> None:
    _, tarball = ecs_arm64
    assert tarball.name == "nt_api__venv_0.1.0.tar.gz"
    venv = tmp_path / "venv"
    with tarfile.open(tarball) as tf:
        tf.extractall(venv, filter="tar")
    site = venv / "lib" / "python3.11" / "site-packages"
    machines = artifacts.elf_machines(venv)
    assert machines and set(machines.values()) == {"aarch64"}, machines
    assert any("pydantic_core" in str(path) for path in machines), machines
    assert artifacts.wheel_problems(site, "aarch64", BOOKWORM_GLIBC) == []

    # The venv's C extensions imported, and the job run, by the arm64 runtime image's own
    # Python 3.11. qemu looks paths up in the root first, then on the host, where the venv is.
    root = arm64_builder.export_rootfs(arm64_builder.slim_image("3.11"), arch="arm64")
    code = (
        "import platform, yaml, runpy;"
        "assert platform.machine() == 'aarch64';"
        "assert yaml.__with_libyaml__, 'the aarch64 C extension did not load';"
        "runpy.run_module('nt_api', run_name='__main__')"
    )
    result = arm64_builder.run_arm64(
        root,
        ["/usr/local/bin/python3.11", "-c", code, "--records", "3"],
        env={"PYTHONPATH": str(site)},
    )
    assert json.loads(result.stdout.strip().splitlines()[-1])["processed"] == 3
    # Settings (pydantic-core's aarch64 extension) read, Powertools' JSON lines on stderr.
    started = next(json.loads(line) for line in result.stderr.splitlines() if line[:1] == "{")
    assert (started["message"], started["service"]) == ("job started", "nt_api")
    assert started["settings"]["artifacts_bucket"] == "nt-artifacts"


def test_ecs_arm64_runtime_image_builds_without_emulation(ecs_arm64, arm64_builder) -> None:
    repo, _ = ecs_arm64
    image = "localhost/cumt-runtime-arm64"
    arm64_builder.build(repo, "docker/Dockerfile.runtime", tag=image, platform="linux/arm64")
    config = arm64_builder.inspect(image)
    assert config["Architecture"] == "arm64"
    assert config["Config"]["User"] == "10001:10001"
    root = arm64_builder.export_rootfs(image)
    machines = artifacts.elf_machines(root / "opt" / "run-venv")
    assert set(machines.values()) <= {"aarch64"}, machines
    # The entrypoint's environment runs on the image's own arm64 interpreter.
    result = arm64_builder.run_arm64(
        root,
        [
            "/usr/local/bin/python3.11",
            "-c",
            "import boto3, platform; print(platform.machine(), boto3.__version__)",
        ],
        env={"PYTHONPATH": "/opt/run-venv/lib/python3.11/site-packages"},
    )
    assert result.stdout.startswith("aarch64 ")
    arm64_builder.remove_image(image)
