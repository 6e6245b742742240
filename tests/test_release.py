"""Releases and the runtime's fetch, run for real: the generated scripts/upload_all.py against
a directory and moto's S3 server, docker/runtime/run_venv.py fetching from both.

Tarballs are stand-ins (tests/venv_tarballs.py: a .tar.gz whose bin/python is a shell script), so
these tests need no container build; the container tier runs the real venv tarballs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import aws_env, copy_template, new_bucket, run, s3_client
from venv_tarballs import sha256, venv_tarball

PKG = "nt_api"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_template(
        tmp_path_factory.mktemp("release") / "repo", tasks=False, deploy_targets=["ecs"]
    )


class Store:
    """Where releases go: a directory, or an S3 prefix on moto, and how to read it back."""

    def __init__(self, kind: str, root: Path, moto: dict[str, str] | None) -> None:
        self.kind, self.moto = kind, moto
        if kind == "s3":
            self.bucket = new_bucket(moto)
            self.uri = f"s3://{self.bucket}/venvs"
            self.env = aws_env(moto)
        else:
            self.uri = str(root / "artifacts")
            self.env = aws_env({})

    def read(self, name: str) -> bytes:
        if self.kind == "s3":
            obj = s3_client(self.moto).get_object(Bucket=self.bucket, Key=f"venvs/{name}")
            return obj["Body"].read()
        return (Path(self.uri) / name).read_bytes()

    def where(self, name: str) -> str:
        return f"{self.uri}/{name}"


@pytest.fixture(params=["dir", "s3"])
def store(request, tmp_path: Path) -> Store:
    moto = request.getfixturevalue("moto_s3") if request.param == "s3" else None
    return Store(request.param, tmp_path, moto)


def upload(repo: Path, store: Store, dist: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "scripts/upload_all.py", store.uri, "--dist", str(dist)]
    return run(cmd, cwd=repo, check=False, env=store.env)


def run_venv(
    repo: Path, store: Store, venvs: Path, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "docker/runtime/run_venv.py", PKG, *args]
    environ = {**store.env, "ARTIFACTS_URI": store.uri, "VENVS_DIR": str(venvs), **env}
    return run(cmd, cwd=repo, check=False, env=environ)


# --------------------------------------------------------------------------- releasing


def test_release_is_idempotent_and_never_replaces(repo: Path, store: Store, tmp_path: Path):
    """Same bytes again: a no-op that says so. Other bytes under a released version: refused,
    the key and both digests named, nothing replaced. A new version next to unchanged ones:
    only it is released ("release everything" after one package was bumped)."""
    dist = tmp_path / "dist"
    first = venv_tarball(dist / f"{PKG}__venv_0.1.0.tar.gz", "v1")
    digest = sha256(first)

    released = upload(repo, store, dist)
    assert released.returncode == 0, released.stderr
    assert released.stdout.splitlines() == [f"released {store.where(first.name)} sha256={digest}"]

    again = upload(repo, store, dist)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [f"unchanged {store.where(first.name)} sha256={digest}"]

    # Rebuilt with other content under the same version.
    changed = sha256(venv_tarball(first, "v1-changed"))
    refused = upload(repo, store, dist)
    assert refused.returncode == 2 and not refused.stdout
    assert store.where(first.name) in refused.stderr
    assert digest in refused.stderr and changed in refused.stderr
    assert sha256_bytes(store.read(first.name)) == digest, "the released bytes were replaced"

    # Bump: 0.2.0 is new, 0.1.0 (restored) is unchanged.
    venv_tarball(first, "v1")
    bumped = venv_tarball(dist / f"{PKG}__venv_0.2.0.tar.gz", "v2")
    everything = upload(repo, store, dist)
    assert everything.returncode == 0, everything.stderr
    assert [line.split()[0] for line in everything.stdout.splitlines()] == ["unchanged", "released"]
    assert store.read(bumped.name) == bumped.read_bytes()


def sha256_bytes(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_digest_is_recorded_in_the_store(repo: Path, store: Store, tmp_path: Path) -> None:
    """S3: object metadata and S3's own SHA256 checksum; a directory: a sha256sum sidecar."""
    tarball = venv_tarball(tmp_path / "dist" / PKG / "venv_1.0.0.tar.gz")
    assert upload(repo, store, tmp_path / "dist").returncode == 0
    digest = sha256(tarball)
    if store.kind == "s3":
        head = s3_client(store.moto).head_object(
            Bucket=store.bucket, Key=f"venvs/{PKG}/venv_1.0.0.tar.gz", ChecksumMode="ENABLED"
        )
        assert head["Metadata"]["sha256"] == digest
        import base64

        assert base64.b64decode(head["ChecksumSHA256"]).hex() == digest
    else:
        sidecar = Path(store.uri) / PKG / "venv_1.0.0.tar.gz.sha256"
        assert sidecar.read_text() == f"{digest}  venv_1.0.0.tar.gz\n"
        check = run(["sha256sum", "-c", sidecar.name], cwd=sidecar.parent)
        assert "OK" in check.stdout


def test_s3_put_is_conditional(repo: Path, moto_s3: dict, tmp_path: Path) -> None:
    """An object that appears under the key first (a racing release, an old upload without a
    recorded digest) is never overwritten: the conditional put fails, and the stored bytes are
    hashed and compared."""
    store = Store("s3", tmp_path, moto_s3)
    tarball = venv_tarball(tmp_path / "dist" / f"{PKG}__venv_0.1.0.tar.gz")
    other = b"someone else's bytes"
    s3_client(moto_s3).put_object(Bucket=store.bucket, Key=f"venvs/{tarball.name}", Body=other)
    result = upload(repo, store, tmp_path / "dist")
    assert result.returncode == 2
    assert sha256_bytes(other) in result.stderr
    assert store.read(tarball.name) == other


def test_racing_releases_to_a_directory_store_one_winner(repo: Path, tmp_path: Path) -> None:
    """Six releases of different bytes under one version at once: exactly one is stored, every
    other one is refused, and the stored bytes and sidecar are the winner's."""
    store = Store("dir", tmp_path, None)
    procs = []
    for index in range(6):
        dist = tmp_path / f"dist{index}"
        venv_tarball(dist / f"{PKG}__venv_0.1.0.tar.gz", f"racer{index}", files=50)
        cmd = [sys.executable, "scripts/upload_all.py", store.uri, "--dist", str(dist)]
        procs.append(
            subprocess.Popen(cmd, cwd=repo, env=store.env, stdout=subprocess.PIPE, text=True)
        )
    outputs = [(p.wait(), p.stdout.read()) for p in procs]
    winners = [out for code, out in outputs if code == 0]
    assert len(winners) == 1 and sorted(code for code, _ in outputs) == [0] + [2] * 5
    stored = Path(store.uri) / f"{PKG}__venv_0.1.0.tar.gz"
    assert f"sha256={sha256(stored)}" in winners[0]
    assert sha256(stored) in stored.with_name(stored.name + ".sha256").read_text()
    assert not [p for p in stored.parent.iterdir() if p.name.endswith(".tmp")]


# --------------------------------------------------------------------------- running


def released(repo: Path, store: Store, tmp_path: Path, marker: str = "v1") -> Path:
    tarball = venv_tarball(tmp_path / "dist" / f"{PKG}__venv_0.1.0.tar.gz", marker, files=200)
    result = upload(repo, store, tmp_path / "dist")
    assert result.returncode == 0, result.stderr
    return tarball


def job_output(result: subprocess.CompletedProcess[str]) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_runtime_verifies_the_recorded_digest(repo: Path, store: Store, tmp_path: Path) -> None:
    """The job runs only from bytes matching the digest recorded at release; bytes changed in
    the store afterwards are refused, with package, version and both digests named."""
    tarball = released(repo, store, tmp_path)
    venvs = tmp_path / "venvs"
    assert job_output(run_venv(repo, store, venvs, "--", "--records", "2"))["args"].endswith(
        "--records 2"
    )

    tampered = b"not the released bytes"
    if store.kind == "s3":  # an overwrite by someone holding s3:PutObject without the condition
        s3_client(store.moto).put_object(
            Bucket=store.bucket,
            Key=f"venvs/{tarball.name}",
            Body=tampered,
            Metadata={"sha256": sha256(tarball)},
        )
    else:
        (Path(store.uri) / tarball.name).write_bytes(tampered)
    fresh = tmp_path / "venvs-fresh"
    result = run_venv(repo, store, fresh)
    assert result.returncode != 0 and not result.stdout
    for part in (PKG, "0.1.0", sha256(tarball), sha256_bytes(tampered), "sha256 mismatch"):
        assert part in result.stderr
    assert [p.name for p in fresh.iterdir()] == [], "nothing may be extracted"


def test_pinned_digest_wins(repo: Path, store: Store, tmp_path: Path) -> None:
    """PACKAGE_SHA256 (or --sha256) from the task definition overrides the recorded digest."""
    tarball = released(repo, store, tmp_path)
    wrong = "0" * 64
    pinned_wrong = run_venv(repo, store, tmp_path / "a", PACKAGE_SHA256=wrong)
    assert pinned_wrong.returncode != 0
    assert wrong in pinned_wrong.stderr and "pinned" in pinned_wrong.stderr
    assert not list((tmp_path / "a").iterdir())
    flag = run_venv(repo, store, tmp_path / "b", "--sha256", sha256(tarball))
    assert job_output(flag)["job"] == PKG


def test_runtime_refuses_a_tarball_without_a_digest(repo: Path, tmp_path: Path) -> None:
    """A tarball copied into the store by hand has no record: refused unless pinned."""
    store = Store("dir", tmp_path, None)
    tarball = venv_tarball(Path(store.uri) / f"{PKG}__venv_0.1.0.tar.gz")
    result = run_venv(repo, store, tmp_path / "venvs")
    assert result.returncode != 0 and "no sha256 recorded" in result.stderr
    pinned = run_venv(repo, store, tmp_path / "venvs", PACKAGE_SHA256=sha256(tarball))
    assert job_output(pinned)["job"] == PKG


def test_half_extracted_venv_is_never_trusted(repo: Path, tmp_path: Path) -> None:
    """A venv directory left by a task killed mid-extraction (bin/python there, the rest
    missing, no completion mark) is replaced by a complete extraction before the job runs."""
    store = Store("dir", tmp_path, None)
    released(repo, store, tmp_path, marker="complete")
    venvs = tmp_path / "venvs"
    half = venvs / f"{PKG}-0.1.0"
    (half / "bin").mkdir(parents=True)
    (half / "bin" / "python").write_text("#!/bin/sh\necho half-extracted\n")
    (half / "bin" / "python").chmod(0o755)
    result = run_venv(repo, store, venvs)
    assert job_output(result)["marker"] == "complete"
    assert (half / "lib" / "site-packages" / "mod199.py").exists()
    assert [p.name for p in venvs.iterdir()] == [half.name], "no temporary directory left"


def test_concurrent_starts_share_one_extraction(repo: Path, store: Store, tmp_path: Path) -> None:
    """Eight tasks start on one VENVS_DIR at once: all run the job, one extraction is used,
    and no temporary directory is left behind."""
    released(repo, store, tmp_path)
    venvs = tmp_path / "venvs"
    env = {**store.env, "ARTIFACTS_URI": store.uri, "VENVS_DIR": str(venvs)}
    cmd = [sys.executable, "docker/runtime/run_venv.py", PKG]
    procs = [
        subprocess.Popen(cmd, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(8)
    ]
    results = [(p.wait(), p.stdout.read().decode(), p.stderr.read().decode()) for p in procs]
    assert [code for code, _, _ in results] == [0] * 8, [err for _, _, err in results]
    assert all(json.loads(out)["job"] == PKG for _, out, _ in results)
    assert [p.name for p in venvs.iterdir()] == [f"{PKG}-0.1.0"]
    assert sum(", extracted)" in err for _, _, err in results) >= 1


def test_stop_signals_reach_the_job(repo: Path, tmp_path: Path) -> None:
    """SIGTERM to run_venv.py (what ECS sends the container's main process) reaches the job,
    a child that has no handler of its own here, and run_venv exits as the job did (143):
    the job is not left running, and run_venv does not die first."""
    store = Store("dir", tmp_path, None)
    pidfile = tmp_path / "job.pid"
    script = f"#!/bin/sh\necho $$ > {pidfile}\nexec sleep 60\n"
    venv_tarball(tmp_path / "dist" / f"{PKG}__venv_0.1.0.tar.gz", script=script)
    assert upload(repo, store, tmp_path / "dist").returncode == 0
    env = {**store.env, "ARTIFACTS_URI": store.uri, "VENVS_DIR": str(tmp_path / "venvs")}
    proc = subprocess.Popen(
        [sys.executable, "docker/runtime/run_venv.py", PKG],
        cwd=repo,
        env=env,
        text=True,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while not (pidfile.exists() and pidfile.read_text().strip()):
        assert time.monotonic() < deadline and proc.poll() is None, proc.stderr
        time.sleep(0.1)
    job = int(pidfile.read_text())
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 143
    with pytest.raises(ProcessLookupError):
        os.kill(job, 0)
