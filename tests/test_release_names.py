"""Releases keep to names the runtime can trust, and races with S3 are reported, not lost.

The generated scripts/upload_all.py runs as CD runs it (a subprocess) against a directory and
moto's S3 server: a tarball whose package is not an identifier, or whose version is not a PEP
440 version in its canonical form, is refused (one line, exit 2, nothing uploaded); one version
(1.0 == 1.0.0; flat or nested name) has one key. S3's 409 ConditionalRequestConflict needs a
stand-in: moto never answers it. The generated repo's own tests/deploy/test_upload_all.py runs
in a generated repo, and fails when upload_all.py is weakened.
"""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from artifact_stores import Store
from conftest import (
    MOTO_CREDENTIALS,
    aws_env,
    copy_template,
    run,
)
from venv_tarballs import sha256, venv_tarball

PKG = "nt_api"
SCRIPT = "scripts/upload_all.py"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_template(
        tmp_path_factory.mktemp("names") / "repo", tasks=False, deploy_targets=["ecs"]
    )


@pytest.fixture(params=["dir", "s3"])
def store(request, tmp_path: Path) -> Store:
    moto = request.getfixturevalue("moto_s3") if request.param == "s3" else None
    return Store(request.param, tmp_path, moto)


def upload(repo: Path, uri: str, dist: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, SCRIPT, uri, "--dist", str(dist)]
    return run(cmd, cwd=repo, check=False, env=env)


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        (f"{PKG}__venv_latest.tar.gz", "version 'latest' is not a PEP 440 version"),
        (f"{PKG}__venv_..tar.gz", "version '.' is not a PEP 440 version"),
        (f"{PKG}__venv_1.0 ; rm -rf x.tar.gz", "version '1.0 ; rm -rf x' is not a PEP 440"),
        (f"{PKG}__venv_1.0.0-RC1.tar.gz", f"build it as {PKG}__venv_1.0.0rc1.tar.gz"),
        (f"{PKG}/venv_V1.0.tar.gz", f"build it as {PKG}/venv_1.0.tar.gz"),
        ("nt-api__venv_1.0.0.tar.gz", "package 'nt-api' is not an identifier"),
        ("NT_API/venv_1.0.0.tar.gz", "package 'NT_API' is not an identifier"),
        ("nt_api-1.0.0.tar.gz", "not named <package>__venv_<version>.tar.gz"),
    ],
    ids=["latest", "dot", "shell-text", "non-canonical-rc", "v-prefix", "dash", "capitals", "other"],
)
def test_names_are_checked_before_anything_is_uploaded(
    repo: Path, store: Store, tmp_path: Path, name: str, reason: str
) -> None:
    """One line on stderr naming the file and what is wrong, exit 2, nothing of that file in
    the store; the well-named tarball next to it is released."""
    dist = tmp_path / "dist"
    venv_tarball(dist / name, "bad")
    good = venv_tarball(dist / f"{PKG}__venv_1.0.0rc1.tar.gz", "good")
    result = upload(repo, store.uri, dist, store.env)
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"upload_all: refused {str(dist / name)!r}: ") and reason in line
    assert result.stdout.splitlines() == [f"released {store.where(good.name)} sha256={sha256(good)}"]
    assert store.keys() == [good.name]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (f"{PKG}__venv_1.0.tar.gz", f"{PKG}__venv_1.0.0.tar.gz"),
        (f"{PKG}__venv_1.0.0.tar.gz", f"{PKG}__venv_1.tar.gz"),
        (f"{PKG}__venv_2.0.0rc1.tar.gz", f"{PKG}__venv_2.0rc1.tar.gz"),
        (f"{PKG}__venv_0.3.1.tar.gz", f"{PKG}/venv_0.3.1.tar.gz"),
        (f"{PKG}/venv_0.3.1.tar.gz", f"{PKG}__venv_0.3.1.0.tar.gz"),
    ],
    ids=["1.0-then-1.0.0", "1.0.0-then-1", "rc", "flat-then-nested", "nested-then-flat-padded"],
)
def test_one_version_has_one_key(
    repo: Path, store: Store, tmp_path: Path, first: str, second: str
) -> None:
    """Equal under PEP 440, or the same version in the other naming scheme: the second key is
    refused (same bytes or not), naming the key that holds the version; nothing is uploaded."""
    venv_tarball(tmp_path / "a" / first)
    assert upload(repo, store.uri, tmp_path / "a", store.env).returncode == 0
    venv_tarball(tmp_path / "b" / second)
    result = upload(repo, store.uri, tmp_path / "b", store.env)
    assert result.returncode == 2 and not result.stdout
    (line,) = result.stderr.splitlines()
    assert store.where(second) in line and f"released already as {store.where(first)}" in line
    assert store.keys() == [first]


# --------------------------------------------------------------------------- 409 from S3


class FlakyS3(http.server.BaseHTTPRequestHandler):
    """Just enough of S3's REST API for upload_all.py: PUT (honouring If-None-Match: *) and
    HEAD of objects, path-style. PUTs answer the statuses in `script` first, in order.

    A stand-in, because moto never answers 409 ConditionalRequestConflict, which S3 returns
    when another conditional write to the same key is in flight.
    """

    protocol_version = "HTTP/1.1"  # answers Expect: 100-continue, as S3 does
    script: ClassVar[list[int]] = []
    objects: ClassVar[dict[str, dict[str, str]]] = {}
    puts: ClassVar[list[str | None]] = []

    def log_message(self, *args) -> None:
        pass

    def answer(self, status: int, code: str = "", headers: dict[str, str] | None = None) -> None:
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>{code}</Message></Error>".encode()
            if code and self.command != "HEAD"
            else b""
        )
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self) -> None:
        meta = self.objects.get(self.path)
        if meta is None:
            self.answer(404, "NoSuchKey")
        else:
            self.answer(200, headers={"ETag": '"etag"', **meta})

    def do_PUT(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.puts.append(self.headers.get("If-None-Match"))
        status = self.script.pop(0) if self.script else None
        if status == 409:
            self.answer(409, "ConditionalRequestConflict")
        elif status == 412 or (self.path in self.objects and self.headers["If-None-Match"] == "*"):
            self.answer(412, "PreconditionFailed")
        else:
            meta = {k: v for k, v in self.headers.items() if k.lower().startswith("x-amz-meta-")}
            self.objects[self.path] = meta
            self.answer(200, headers={"ETag": '"etag"'})


@pytest.fixture
def flaky_s3() -> Iterator[type[FlakyS3]]:
    FlakyS3.script, FlakyS3.objects, FlakyS3.puts = [], {}, []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FlakyS3)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    FlakyS3.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    yield FlakyS3
    server.shutdown()


def release_to(repo: Path, s3: type[FlakyS3], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    dist = tmp_path / "dist"
    if not dist.exists():
        venv_tarball(dist / f"{PKG}__venv_1.0.0.tar.gz")
    env = aws_env({"AWS_ENDPOINT_URL": s3.endpoint, **MOTO_CREDENTIALS})
    return upload(repo, "s3://bucket/venvs", dist, env)


def test_a_conflicting_write_is_retried(repo: Path, flaky_s3, tmp_path: Path) -> None:
    """409 twice, then S3 takes the write: released, every attempt still conditional."""
    flaky_s3.script[:] = [409, 409]
    result = release_to(repo, flaky_s3, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"released s3://bucket/venvs/{PKG}__venv_1.0.0.tar.gz")
    assert flaky_s3.puts == ["*", "*", "*"]
    assert f"/bucket/venvs/{PKG}__venv_1.0.0.tar.gz" in flaky_s3.objects


def test_a_conflict_then_the_racer_wins(repo: Path, flaky_s3, tmp_path: Path) -> None:
    """409, then 412: the racing write won. Its recorded digest decides: the same bytes are
    unchanged (exit 0), other bytes are refused (exit 2)."""
    key = f"/bucket/venvs/{PKG}__venv_1.0.0.tar.gz"
    tarball = venv_tarball(tmp_path / "dist" / f"{PKG}__venv_1.0.0.tar.gz")
    flaky_s3.objects[key] = {"x-amz-meta-sha256": sha256(tarball)}
    flaky_s3.script[:] = [409, 412]
    same = release_to(repo, flaky_s3, tmp_path)
    assert same.returncode == 0 and same.stdout.startswith("unchanged"), same.stderr

    flaky_s3.objects[key] = {"x-amz-meta-sha256": "0" * 64}
    flaky_s3.script[:] = [409, 412]
    other = release_to(repo, flaky_s3, tmp_path)
    assert other.returncode == 2 and "0" * 64 in other.stderr and sha256(tarball) in other.stderr


def test_a_lasting_conflict_is_reported(repo: Path, flaky_s3, tmp_path: Path) -> None:
    """S3 keeps answering 409: a few attempts with backoff, then one line naming the key and
    the reason, exit 1, nothing stored."""
    flaky_s3.script[:] = [409] * 10
    result = release_to(repo, flaky_s3, tmp_path)
    assert result.returncode == 1 and not result.stdout
    (line,) = result.stderr.splitlines()
    assert f"s3://bucket/venvs/{PKG}__venv_1.0.0.tar.gz" in line
    assert "409 ConditionalRequestConflict 4 times" in line and "run it again" in line
    assert len(flaky_s3.puts) == 4 and not flaky_s3.objects


# --------------------------------------------------------------------------- generated tests

DEPLOY_TEST = "tests/deploy/test_upload_all.py"
# What CI and `make test` run (the runtime's requirements, pytest): nothing else installed.
DEPLOY_TEST_CMD = [
    "uv", "run", "--no-project", "--with-requirements", "docker/runtime/requirements.txt",
    "--with", "pytest", "pytest", "-q", "-p", "no:cacheprovider", DEPLOY_TEST,
]  # fmt: skip

# Each weakening of upload_all.py, and the generated test it must fail.
WEAKENED = {
    "replaces-released-bytes": (
        "            if recorded != digest:\n                raise Refused(replaced(",
        "            if False:\n                raise Refused(replaced(",
        "test_a_rerun_is_a_noop_and_changed_bytes_are_refused",
    ),
    "takes-any-version-spelling": (
        "    if str(version) != raw:",
        "    if False:",
        "test_names_the_runtime_must_not_look_up_are_refused",
    ),
    "two-keys-for-one-version": (
        "        if other != name and store.exists(other):",
        "        if False:",
        "test_one_version_has_one_key",
    ),
}


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_template(tmp_path_factory.mktemp("deploy-tests") / "repo", tasks=False)


def test_generated_deploy_tests_pass(generated: Path) -> None:
    result = run(DEPLOY_TEST_CMD, cwd=generated)
    assert " passed" in result.stdout and "failed" not in result.stdout


@pytest.mark.parametrize("weakening", sorted(WEAKENED))
def test_generated_deploy_tests_catch_a_weakened_upload_all(
    generated: Path, tmp_path: Path, weakening: str
) -> None:
    old, new, failing = WEAKENED[weakening]
    repo = tmp_path / "repo"
    run(["cp", "-a", str(generated), str(repo)], cwd=tmp_path)
    script = repo / SCRIPT
    assert old in script.read_text()
    script.write_text(script.read_text().replace(old, new, 1))
    result = run(DEPLOY_TEST_CMD, cwd=repo, check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"FAILED {DEPLOY_TEST}::{failing}" in result.stdout
