"""The ECS runtime image as ECS runs it: stopped mid-job, started several times at once, and
as the container's PID 1 with a job that leaves orphans behind.

The real images from the rendered repo (builder.build, as test_containers.py does): the
package's venv tarball from Dockerfile.venv, released with scripts/upload_all.py into a
directory that a volume mounts where S3 would be, and the runtime image from
Dockerfile.runtime. `podman stop` sends what ECS StopTask sends: SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import sys
import tarfile
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


def start(
    artifacts: Path,
    *args: str,
    volumes: dict[Path, str] | None = None,
    package: str = API,
    **env: str,
) -> str:
    name = f"cumt-{uuid.uuid4().hex[:10]}"
    cmd = ["run", "-d", "--pull=never", "--name", name, "-v", f"{artifacts}:/artifacts:ro"]
    for host, inside in (volumes or {}).items():
        cmd += ["-v", f"{host}:{inside}"]
    for key, value in {"ARTIFACTS_URI": "/artifacts", **env}.items():
        cmd += ["-e", f"{key}={value}"]
    podman(*cmd, IMAGE, package, *args)
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
    assert sum(", extracted)" in logs for _, logs in results) == 1, "one extracts, three wait"
    [tarball] = released.glob(f"{API}__venv_0.1.0.tar.gz")
    venv = f"{API}-0.1.0-{hashlib.sha256(tarball.read_bytes()).hexdigest()[:16]}"
    # The venv and the lock file its extraction was serialised on; no temporary folder.
    assert sorted(p.name for p in venvs.iterdir()) == [f".{venv}.lock", venv]



# A job that double-forks: its child exits at once, the grandchild a second later, by then an
# orphan re-parented to PID 1. It then reports the zombies it sees in /proc, and exits 42 on
# SIGTERM, so the test sees the signal arrive and the status come out unchanged.
ZOMBIES = """
import json, os, signal, sys, time


def zombies():
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as stat:
                state, ppid = stat.read().rsplit(")", 1)[1].split()[:2]
        except OSError:
            continue
        if state == "Z":
            found.append({"pid": int(pid), "ppid": int(ppid)})
    return found
"""
ORPHANS_JOB = ZOMBIES + """

child = os.fork()
if child == 0:
    if os.fork() == 0:
        time.sleep(1)
        os._exit(0)
    os._exit(0)
os.waitpid(child, 0)
time.sleep(3)
with open("/proc/1/cmdline") as cmdline:
    pid1 = cmdline.read().split("\\0")
print(json.dumps({"job": "nt_orphans", "zombies": zombies(), "pid1": pid1}), flush=True)


def stop(signum, frame):
    print("job got SIGTERM", flush=True)
    sys.exit(42)


signal.signal(signal.SIGTERM, stop)
print("job waiting", flush=True)
while True:
    time.sleep(0.1)
"""


def with_module(source: Path, target: Path, package: str, main: str) -> Path:
    """The real venv tarball with one more package in its site-packages: what Dockerfile.venv
    would build for a package holding this job, without another image build."""
    raw = io.BytesIO()
    out = tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT)
    with tarfile.open(source) as src, out:
        site = ""
        for member in src:
            out.addfile(member, src.extractfile(member) if member.isreg() else None)
            if member.isdir() and member.name.endswith("/site-packages"):
                site = member.name
        assert site, "no site-packages in the venv tarball"
        for name, text in (("__init__.py", ""), ("__main__.py", main)):
            info = tarfile.TarInfo(f"{site}/{package}/{name}")
            info.size, info.mode, info.mtime = len(text.encode()), 0o644, 0
            out.addfile(info, io.BytesIO(text.encode()))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(gzip.compress(raw.getvalue(), mtime=0))
    return target


def test_as_pid_1_orphans_are_reaped_and_the_job_still_gets_signals(
    released: Path, make_project, tmp_path: Path
) -> None:
    """The entrypoint is the container's PID 1 (no --init, as on ECS without
    initProcessEnabled): a grandchild orphaned by the job is reaped, no zombie is left under
    PID 1 (seen by the job in /proc, and by a second process via podman exec), SIGTERM from
    `podman stop` still reaches the job, and the container exits with the job's status (42)."""
    repo = make_project(python_version="3.11", lambda_architecture="x86_64", package_prefix="nt")
    [real] = released.glob(f"{API}__venv_*.tar.gz")
    dist = tmp_path / "dist"
    with_module(real, dist / "nt_orphans__venv_0.1.0.tar.gz", "nt_orphans", ORPHANS_JOB)
    artifacts = tmp_path / "artifacts"
    run([sys.executable, "scripts/upload_all.py", str(artifacts), "--dist", str(dist)], cwd=repo)
    for path in [artifacts, *artifacts.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)

    name = start(artifacts, package="nt_orphans")
    deadline = time.monotonic() + 60
    while "job waiting" not in (logs := podman("logs", name).stdout):
        assert time.monotonic() < deadline, logs + podman("logs", name).stderr
        time.sleep(0.2)
    report = json.loads(next(line for line in logs.splitlines() if line.startswith('{"job"')))
    assert report["pid1"][:2] == ["/opt/run-venv/bin/python", "/opt/run-venv/run_venv.py"]
    assert report["zombies"] == [], "an orphan of the job is left a zombie under PID 1"
    # A second look from outside the job: a process started by `podman exec`.
    scan = ZOMBIES + "print(json.dumps(zombies()))"
    outside = podman("exec", name, "/opt/run-venv/bin/python", "-c", scan)
    assert json.loads(outside.stdout) == []
    podman("stop", "-t", "10", name)
    code, logs = finish(name)
    assert "job got SIGTERM" in logs
    assert code == 42, logs
