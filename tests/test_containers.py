"""Container tier: the generated Dockerfiles built by a real builder, the results run.

buildah/podman build the rendered repo exactly as a team would (`--pull=never` against local
stand-ins of the pinned base images, see builder.py), then the artifacts are run: the ECS
tarball extracted elsewhere, the runtime image fetching it from a directory and from S3 (moto's
server), the Lambda image invoked with an event.

Rendered with python_version=3.11 (the stand-in images carry Debian bookworm's Python) and
lambda_architecture=x86_64: this machine cannot run arm64 images.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import artifacts
import builder
import pytest
from conftest import aws_env, copy_template, new_bucket, run, s3_client
from gitrepo import commit_all

# The builder tier's session fixture (installs and sets up buildah/podman once per run).
container_builder = builder.container_builder

pytestmark = [pytest.mark.slow, pytest.mark.containers]

PREFIX = "nt"
API, INGESTION = f"{PREFIX}_api", f"{PREFIX}_ingestion"
# Both layouts, and both artifact namings across them.
VARIANTS = {
    "shared": {"workspace_layout": "shared", "artifact_naming": "flat"},
    "independent": {"workspace_layout": "independent", "artifact_naming": "nested"},
}
CONTAINER_ANSWERS = {
    "python_version": "3.11",
    "lambda_architecture": "x86_64",
    "package_prefix": PREFIX,
}
S3_EVENT = {"Records": [{"s3": {"bucket": {"name": "landing"}, "object": {"key": "in/a.csv"}}}]}


def invoke(container_builder: ModuleType, image: str, event: dict) -> tuple[dict, list[dict], str]:
    """The Lambda image run as AWS runs it (its entrypoint starts the emulator and the runtime
    interface client, which resolves CMD's handler and passes Lambda's context), read-only,
    invoked once over HTTP: the answer, the function's JSON log lines and the request id."""
    with container_builder.lambda_container(image) as call:
        invocation = call(event)
    logs = [
        json.loads(line)
        for line in invocation.log.splitlines()
        if line.startswith("{") and line.rstrip().endswith("}")
    ]
    (request_id,) = re.findall(r"START RequestId: (\S+)", invocation.log)
    return invocation.answer, logs, request_id


def artifact_name(naming: str, package: str, version: str) -> str:
    return (
        f"{package}/venv_{version}.tar.gz"
        if naming == "nested"
        else f"{package}__venv_{version}.tar.gz"
    )


@pytest.fixture(scope="module", params=list(VARIANTS))
def variant(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def project(variant: str, make_project) -> Path:
    return make_project(**CONTAINER_ANSWERS, **VARIANTS[variant])


@pytest.fixture(scope="module")
def tag(variant: str) -> str:
    return f"localhost/cumt-{variant}"


@pytest.fixture(scope="module")
def venv_dist(project: Path, variant: str, container_builder: ModuleType, tmp_path_factory) -> Path:
    """dist/ with <prefix>_api's tarball at 0.3.1, plus one at the package's own version."""
    dist = tmp_path_factory.mktemp(f"dist-{variant}")
    for args in ({"PACKAGE_VERSION": "0.3.1"}, {}):
        container_builder.build(
            project, "docker/Dockerfile.venv", build_args={"PACKAGE_NAME": API, **args}, output=dist
        )
    # buildah writes the output directory 0700; the runtime image reads it as uid 10001.
    for path in [dist, *dist.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return dist


# --------------------------------------------------------------------------- lint


@pytest.mark.parametrize(
    "answers",
    [
        {"workspace_layout": "shared"},
        {
            "workspace_layout": "independent",
            "artifact_naming": "nested",
            "lambda_architecture": "arm64",
        },
    ],
    ids=["shared", "independent-nested-arm64"],
)
def test_rendered_dockerfiles_pass_hadolint(render, answers) -> None:
    repo = render(**answers)
    dockerfiles = sorted((repo / "docker").glob("Dockerfile.*"))
    assert [p.name for p in dockerfiles] == [
        "Dockerfile.lambda",
        "Dockerfile.runtime",
        "Dockerfile.venv",
    ]
    hadolint = Path(sys.executable).with_name("hadolint")
    result = run([str(hadolint), "--no-color", *map(str, dockerfiles)], cwd=repo, check=False)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_pins_are_exact_and_dockerignore_keeps_contexts_clean(render) -> None:
    """Every external image, with the Dockerfile's own ARG defaults filled in, is exact."""
    repo = render(lambda_architecture="arm64", python_version="3.12")
    images = set()
    for path in (repo / "docker").glob("Dockerfile.*"):
        text = path.read_text()
        defaults = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.MULTILINE))
        for line in text.splitlines():
            line = re.sub(r"\$\{(\w+)\}", lambda m: defaults.get(m[1], m[0]), line)
            words = [w for w in line.split()[1:] if not w.startswith("--platform=")]
            if line.startswith("FROM "):
                images.add(words[0])
            elif line.startswith("COPY --from=") and ":" in line.split()[1]:
                images.add(line.split()[1].split("=", 1)[1])
    external = {image for image in images if ":" in image}
    # The Debian suite is pinned in the tag: the ECS builder and runtime cannot drift apart.
    assert external == {
        "ghcr.io/astral-sh/uv:0.13.8",
        "python:3.12-slim-bookworm",
        "public.ecr.aws/lambda/python:3.12-arm64",
    }
    assert not any(image.endswith(":latest") for image in images)
    ignored = set((repo / ".dockerignore").read_text().split())
    assert {".git", ".venv", "**/.venv", "dist", "**/__pycache__", "**/.env"} <= ignored


def test_final_stages_run_nothing_on_the_target(render) -> None:
    """Every RUN is in a stage pinned to the build platform: no emulator is ever needed."""
    repo = render(lambda_architecture="arm64", ecs_architecture="arm64")
    for path in sorted((repo / "docker").glob("Dockerfile.*")):
        stages = path.read_text().split("\nFROM ")[1:]
        assert stages, path.name
        for stage in stages:
            runs = [line for line in stage.splitlines() if line.startswith("RUN ")]
            on_build_platform = stage.startswith("--platform=$BUILDPLATFORM ")
            assert on_build_platform or not runs, f"{path.name}: RUN in a target stage"


def test_target_files_follow_deploy_targets(render) -> None:
    ecs = render(deploy_targets=["ecs"])
    assert sorted(p.name for p in (ecs / "docker").iterdir()) == [
        "Dockerfile.runtime",
        "Dockerfile.venv",
        "runtime",
    ]
    assert (ecs / "scripts/upload_all.py").exists()
    lam = render(deploy_targets=["lambda"])
    assert sorted(p.name for p in (lam / "docker").iterdir()) == [
        "Dockerfile.lambda",
        "lambda_function.py",
    ]
    assert not (lam / "scripts/upload_all.py").exists()


# --------------------------------------------------------------------------- ECS


def test_venv_tarball_runs_from_another_directory(
    venv_dist: Path, variant: str, container_builder: ModuleType
) -> None:
    naming = VARIANTS[variant]["artifact_naming"]
    names = sorted(p.relative_to(venv_dist).as_posix() for p in venv_dist.rglob("*.tar.gz"))
    assert names == [artifact_name(naming, API, "0.1.0"), artifact_name(naming, API, "0.3.1")]

    tarball = venv_dist / artifact_name(naming, API, "0.3.1")
    with tarfile.open(tarball) as tf:
        members = tf.getnames()
        # Local packages are real installs: no .pth (editable link) back to the build tree.
        pth = [
            tf.extractfile(m).read().decode() for m in tf.getmembers() if m.name.endswith(".pth")
        ]
    assert not [text for text in pth if "/build" in text], pth
    # uv's lock for installs into the venv is no part of the job's environment.
    assert not [m for m in members if m.rsplit("/", 1)[-1] == ".lock"], members
    assert any(f"/{PREFIX}_common/settings.py" in m for m in members)
    assert any(m.endswith("/bin/nt-api") for m in members)

    # Built in /opt/venv; extracted and run somewhere else, in the image the venv was built on.
    script = (
        "set -e; mkdir -p /somewhere/else && tar -xzf /dist/$1 -C /somewhere/else;"
        " /somewhere/else/bin/nt-api --records 2; /somewhere/else/bin/python -m nt_api --records 5"
    )
    out = container_builder.run(
        container_builder.slim_image("3.11"),
        "-c",
        script,
        "sh",
        artifact_name(naming, API, "0.3.1"),
        entrypoint="/bin/sh",
        volumes={venv_dist: "/dist:ro"},
    ).stdout
    results = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [(r["job"], r["processed"]) for r in results] == [(API, 2), (API, 5)]


def test_runtime_image_runs_jobs_from_a_local_directory(
    project: Path,
    venv_dist: Path,
    variant: str,
    tag: str,
    container_builder: ModuleType,
    tmp_path: Path,
) -> None:
    artifacts = tmp_path / "artifacts"
    listed = run(
        [sys.executable, "scripts/upload_all.py", str(artifacts), "--dist", str(venv_dist)],
        cwd=project,
    ).stdout.splitlines()
    assert [line.split()[0] for line in listed] == ["released", "released"]
    for path in [artifacts, *artifacts.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)

    image = f"{tag}-runtime"
    container_builder.build(project, "docker/Dockerfile.runtime", tag=image)
    assert container_builder.inspect(image)["Config"]["User"] == "10001:10001"

    volumes = {artifacts: "/artifacts:ro"}
    env = {"ARTIFACTS_URI": "/artifacts"}
    latest = container_builder.run(image, API, "--", "--records", "4", env=env, volumes=volumes)
    assert json.loads(latest.stdout.splitlines()[-1])["processed"] == 4
    assert f"{API} 0.3.1 from /artifacts" in latest.stderr  # 0.3.1 > 0.1.0
    pinned = container_builder.run(image, API, "--version", "0.1.0", env=env, volumes=volumes)
    assert f"{API} 0.1.0 from /artifacts" in pinned.stderr
    assert json.loads(pinned.stdout.splitlines()[-1])["job"] == API
    uid = container_builder.run(image, "-c", "id -u", entrypoint="/bin/sh").stdout.strip()
    assert uid == "10001"


def test_upload_all_to_s3_then_runtime_fetches_latest(
    project: Path,
    venv_dist: Path,
    variant: str,
    tag: str,
    moto_s3: dict,
    container_builder: ModuleType,
) -> None:
    bucket = new_bucket(moto_s3)
    s3 = s3_client(moto_s3)
    env = aws_env(moto_s3)
    cmd = [
        sys.executable,
        "scripts/upload_all.py",
        f"s3://{bucket}/venvs",
        "--dist",
        str(venv_dist),
    ]

    naming = VARIANTS[variant]["artifact_naming"]
    expected = [artifact_name(naming, API, v) for v in ("0.1.0", "0.3.1")]
    first = run(cmd, cwd=project, env=env)
    assert [line.split()[:2] for line in first.stdout.splitlines()] == [
        ["released", f"s3://{bucket}/venvs/{name}"] for name in expected
    ]
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == [f"venvs/{name}" for name in expected]
    # Releasing the same build again changes nothing and says so.
    again = run(cmd, cwd=project, env=env)
    assert [line.split()[0] for line in again.stdout.splitlines()] == ["unchanged", "unchanged"]

    # The runtime image looks the newest version up by prefix in S3 (host network: moto
    # listens on the host's loopback).
    image = f"{tag}-runtime"
    container_builder.build(project, "docker/Dockerfile.runtime", tag=image)
    fetched = container_builder.run(
        image, API, env={**moto_s3, "ARTIFACTS_URI": f"s3://{bucket}/venvs"}, network="host"
    )
    assert f"{API} 0.3.1 from s3://{bucket}/venvs" in fetched.stderr
    assert json.loads(fetched.stdout.splitlines()[-1])["job"] == API


# --------------------------------------------------------------------------- Lambda


def test_lambda_image_answers_an_event(
    project: Path, tag: str, container_builder: ModuleType
) -> None:
    image = f"{tag}-lambda"
    container_builder.build(
        project, "docker/Dockerfile.lambda", tag=image, build_args={"SERVICE_NAME": INGESTION}
    )
    assert container_builder.inspect(image)["Config"]["Cmd"] == ["lambda_function.handler"]

    # Invoked over HTTP, read-only (test_lambda_runtime.py has more): pydantic(-core) and
    # Powertools inside, with Lambda's context.
    answer, logs, request_id = invoke(container_builder, image, S3_EVENT)
    assert answer["statusCode"] == 200
    assert json.loads(answer["body"])["ingested"] == ["landing/in/a.csv"]
    (line,) = logs
    assert line["message"] == "ingesting objects" and line["service"] == INGESTION
    assert line["cold_start"] is True
    assert line["function_request_id"] == request_id

    # Read on the host: the AL2023 bases have no find, and the image needs no tool of its own.
    root = container_builder.export_rootfs(image)
    task = root / "var" / "task"
    assert {INGESTION, f"{PREFIX}_common", "yaml", "lambda_function.py"} <= {
        p.name for p in task.iterdir()
    }
    assert not (task / "src").exists() and not (task / "tests").exists()
    assert not list(task.rglob("*.pth"))
    assert not (root / "build").exists() and not (root / "root" / ".cache" / "uv").exists()
    assert not [p for p in root.rglob("uv*") if p.name in ("uv", "uvx")]
    # Python 3.11 runs on Amazon Linux 2: every wheel must ask for no newer glibc than 2.26.
    assert artifacts.wheel_problems(task, "x86_64", (2, 26)) == []
    assert set(artifacts.elf_machines(task).values()) == {"x86_64"}


def test_code_only_change_rebuilds_only_the_code_layer(
    project: Path, variant: str, tag: str, container_builder: ModuleType, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(project, repo, symlinks=True)
    image = f"{tag}-lambda-rebuild"
    container_builder.build(
        repo, "docker/Dockerfile.lambda", tag=image, build_args={"SERVICE_NAME": INGESTION}
    )
    before = container_builder.layers(image)

    # Unique per run: the layer cache outlives the test, and an old run must not answer for it.
    marker = uuid.uuid4().hex
    handler = repo / "src" / INGESTION / INGESTION / "handler.py"
    handler.write_text(handler.read_text() + f"\nBUILD_MARKER = {marker!r}\n")
    rebuilt = container_builder.build(
        repo, "docker/Dockerfile.lambda", tag=image, build_args={"SERVICE_NAME": INGESTION}
    )
    after = container_builder.layers(image)

    assert len(after) == len(before)
    changed = [
        index for index, (old, new) in enumerate(zip(before, after, strict=False)) if old != new
    ]
    assert changed == [len(after) - 1], "only the code layer (the last) may change"
    # The third-party install step itself came from cache, not just an identical result.
    deps_step = next(
        s for s in rebuilt.output.split("STEP ") if "--no-emit-local" in s.splitlines()[0]
    )
    assert "Using cache" in deps_step
    out = container_builder.run(
        image,
        "-c",
        f"from {INGESTION}.handler import BUILD_MARKER; print(BUILD_MARKER)",
        entrypoint="/var/lang/bin/python3",
    ).stdout.strip()
    assert out == marker
    container_builder.remove_image(image)


def test_ecs_code_only_change_reuses_the_dependency_layer(
    project: Path, container_builder: ModuleType, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(project, repo, symlinks=True)
    args = {"PACKAGE_NAME": API, "PACKAGE_VERSION": "9.9.9"}
    container_builder.build(repo, "docker/Dockerfile.venv", build_args=args, output=tmp_path / "d1")
    job = repo / "src" / API / API / "job.py"
    job.write_text(job.read_text() + f"\nBUILD_MARKER = {uuid.uuid4().hex!r}\n")
    rebuilt = container_builder.build(
        repo, "docker/Dockerfile.venv", build_args=args, output=tmp_path / "d2"
    )
    steps = rebuilt.output.split("STEP ")
    third_party = next(s for s in steps if "--no-install-local" in s.splitlines()[0])
    local = next(s for s in steps if "--no-editable" in s.splitlines()[0])
    assert "Using cache" in third_party
    assert "Using cache" not in local


def test_unchanged_package_rebuilds_to_the_same_tarball(
    project: Path, container_builder: ModuleType, tmp_path: Path
) -> None:
    """Rebuilt from scratch, an unchanged package gives the same bytes, so releasing it again
    is recognised as a no-op by upload_all.py instead of refused as a different artifact."""
    args = {"PACKAGE_NAME": API, "PACKAGE_VERSION": "7.7.7"}
    first, again = tmp_path / "first", tmp_path / "again"
    container_builder.build(project, "docker/Dockerfile.venv", build_args=args, output=first)
    container_builder.build(
        project, "docker/Dockerfile.venv", build_args=args, output=again, extra=["--no-cache"]
    )
    (one,), (two,) = first.rglob("*.tar.gz"), again.rglob("*.tar.gz")
    assert hashlib.sha256(one.read_bytes()).digest() == hashlib.sha256(two.read_bytes()).digest()
    with tarfile.open(one) as tf:
        members = tf.getmembers()
    assert {m.mtime for m in members} == {0} and {(m.uid, m.gid) for m in members} == {(0, 0)}

    store = tmp_path / "artifacts"
    upload = [sys.executable, "scripts/upload_all.py", str(store), "--dist"]
    assert run([*upload, str(first)], cwd=project).stdout.startswith("released ")
    assert run([*upload, str(again)], cwd=project).stdout.startswith("unchanged ")


# --------------------------------------------------------------------------- added packages


def test_packages_added_later_build_with_the_same_dockerfiles(
    project: Path, tag: str, container_builder: ModuleType, tmp_path: Path
) -> None:
    """The Dockerfiles are generic: packages from the package kind need no edit to ship."""
    repo = tmp_path / "repo"
    shutil.copytree(project, repo, symlinks=True)
    commit_all(repo, "generated")
    for name, package_type in (("reports", "ecs"), ("webhook", "lambda")):
        copy_template(
            repo, tasks=True, template_kind="package", package_name=name, package_type=package_type
        )

    dist = tmp_path / "dist"
    container_builder.build(
        repo,
        "docker/Dockerfile.venv",
        build_args={"PACKAGE_NAME": f"{PREFIX}_reports"},
        output=dist,
    )
    (tarball,) = [p.relative_to(dist).as_posix() for p in dist.rglob("*.tar.gz")]
    dist.chmod(0o755)
    out = container_builder.run(
        container_builder.slim_image("3.11"),
        "-c",
        "mkdir /job && tar -xzf /dist/$1 -C /job && /job/bin/python -m nt_reports",
        "sh",
        tarball,
        entrypoint="/bin/sh",
        volumes={dist: "/dist:ro"},
    ).stdout
    assert json.loads(out.splitlines()[-1]) == {"job": f"{PREFIX}_reports", "status": "ok"}

    image = f"{tag}-webhook"
    container_builder.build(
        repo,
        "docker/Dockerfile.lambda",
        tag=image,
        build_args={"SERVICE_NAME": f"{PREFIX}_webhook"},
    )
    answer, logs, _ = invoke(container_builder, image, {"detail": 1})
    assert answer == {"statusCode": 200, "body": json.dumps({"received": ["detail"]})}
    assert [(line["message"], line["cold_start"]) for line in logs] == [("invoked", True)]
    container_builder.remove_image(image)


# --------------------------------------------------------------------------- reproducible images


@pytest.fixture(scope="module")
def lambda_from_scratch(make_project, container_builder: ModuleType) -> Iterator[tuple[str, str]]:
    """The shared layout's Lambda image built twice with `--no-cache`, as CD builds every
    release: nothing comes from an earlier build, so only the Dockerfile decides the bytes."""
    repo = make_project(**CONTAINER_ANSWERS, **VARIANTS["shared"])
    images = ("localhost/cumt-repro-lambda-1", "localhost/cumt-repro-lambda-2")
    for image in images:
        container_builder.build(
            repo,
            "docker/Dockerfile.lambda",
            tag=image,
            build_args={"SERVICE_NAME": INGESTION},
            extra=["--no-cache"],
        )
    yield images
    for image in images:
        container_builder.remove_image(image)


def test_no_cache_lambda_builds_give_the_same_layers(
    lambda_from_scratch: tuple[str, str], container_builder: ModuleType
) -> None:
    """Unchanged sources, built from scratch twice: the dependency, local-package and code
    layers have the same digests, so a registry stores them once and a re-release pushes
    nothing new. Directory and file mtimes from the build are what would make them differ."""
    first, second = (container_builder.layers(image) for image in lambda_from_scratch)
    base = container_builder.layers(container_builder.lambda_image("3.11"))
    assert first[: len(base)] == base and len(first) == len(base) + 3
    names = ("dependencies", "local packages", "code")
    differ = [name for name, a, b in zip(names, first[len(base) :], second[len(base) :]) if a != b]
    assert differ == [], f"layers that differ between two --no-cache builds: {differ}"


def test_lambda_task_root_holds_no_installer_leftovers(
    lambda_from_scratch: tuple[str, str], container_builder: ModuleType
) -> None:
    """uv's `--target` installs leave a `.lock` file behind: it must not ship in /var/task,
    nor anything else hidden (the handler's folder is the function's code, nothing more)."""
    task = container_builder.export_rootfs(lambda_from_scratch[0]) / "var" / "task"
    hidden = sorted(p.relative_to(task).as_posix() for p in task.rglob(".*"))
    assert hidden == []
    assert {INGESTION, f"{PREFIX}_common", "yaml", "lambda_function.py"} <= {
        p.name for p in task.iterdir()
    }
