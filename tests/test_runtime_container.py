"""The ECS runtime image as ECS runs it: stopped mid-job, and started several times at once.

The real images from the rendered repo (builder.build, as test_containers.py does): the
package's venv tarball from Dockerfile.venv, released with scripts/upload_all.py into a
directory that a volume mounts where S3 would be, and the runtime image from
Dockerfile.runtime. `podman stop` sends what ECS StopTask sends: SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import ModuleType

import builder
import pytest
from conftest import run

container_builder = builder.container_builder

pytestmark = [pytest.mark.slow, pytest.mark.containers]

API = "nt_api"
IMAGE = "localhost/cumt-runtime-signals"


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["podman", *args], env=builder.builder_env(), capture_output=True, text=True, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: {result.stderr}")
    return result


@pytest.fixture(scope="module")
def released(make_project, container_builder: ModuleType, tmp_path_factory) -> Path:
    """The artifacts directory holding nt_api's real venv tarball and its recorded digest."""
    repo = make_project(python_version="3.11", lambda_architecture="x86_64", package_prefix="nt")
    dist = tmp_path_factory.mktemp("dist")
    container_builder.build(
        repo, "docker/Dockerfile.venv", build_args={"PACKAGE_NAME": API}, output=dist
    )
    artifacts = tmp_path_factory.mktemp("artifacts")
    run([sys.executable, "scripts/upload_all.py", str(artifacts), "--dist", str(dist)], cwd=repo)
    for path in [artifacts, *artifacts.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)  # read by uid 10001 in the container
    container_builder.build(repo, "docker/Dockerfile.runtime", tag=IMAGE)
    return artifacts


def start(artifacts: Path, *args: str, volumes: dict[Path, str] | None = None, **env: str) -> str:
    name = f"cumt-{uuid.uuid4().hex[:10]}"
    cmd = ["run", "-d", "--pull=never", "--name", name, "-v", f"{artifacts}:/artifacts:ro"]
    for host, inside in (volumes or {}).items():
        cmd += ["-v", f"{host}:{inside}"]
    for key, value in {"ARTIFACTS_URI": "/artifacts", **env}.items():
        cmd += ["-e", f"{key}={value}"]
    podman(*cmd, IMAGE, API, *args)
    return name


def finish(name: str) -> tuple[int, str]:
    """Wait for the container; its exit code and logs (stdout and stderr), then remove it."""
    code = int(podman("wait", name).stdout.strip())
    logs = podman("logs", name)
    podman("rm", "-f", name, check=False)
    return code, logs.stdout + logs.stderr


def test_stop_reaches_the_job_and_it_shuts_down_cleanly(released: Path) -> None:
    """`podman stop -t 5`: the job logs its shutdown and exits 143 well within the 5 s, which a
    job that never saw SIGTERM (PID 1 without a handler) cannot: it would be SIGKILLed, 137."""
    name = start(released, "--", "--records", "100000", "--pause", "0.05")
    deadline = time.monotonic() + 60
    while "job started" not in (logs := podman("logs", name).stderr):
        assert time.monotonic() < deadline, logs
        time.sleep(0.2)
    stopping = time.monotonic()
    podman("stop", "-t", "5", name)
    took = time.monotonic() - stopping
    code, logs = finish(name)
    assert code == 143, logs
    assert took < 4, f"stop took {took:.1f}s: the job was killed, not stopped"
    assert "job stopped on request" in logs
    result = json.loads(next(line for line in logs.splitlines() if line.startswith('{"job"')))
    assert 0 < result["processed"] < 100000


def test_concurrent_starts_share_one_extraction(released: Path, tmp_path: Path) -> None:
    """Four tasks on one VENVS_DIR (a shared volume) start at once: all run the job, and one
    extraction serves them all."""
    venvs = tmp_path / "venvs"
    venvs.mkdir()
    venvs.chmod(0o777)
    names = [start(released, volumes={venvs: "/shared"}, VENVS_DIR="/shared") for _ in range(4)]
    results = [finish(name) for name in names]
    assert [code for code, _ in results] == [0] * 4, results
    assert all(f'"job": "{API}"' in logs for _, logs in results)
    assert sum(", extracted)" in logs for _, logs in results) >= 1
    assert sorted(p.name for p in venvs.iterdir()) == [f"{API}-0.1.0"]

