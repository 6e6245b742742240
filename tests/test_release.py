"""Releases and the runtime's fetch, run for real: the generated scripts/upload_all.py against
a directory and moto's S3 server, docker/runtime/run_venv.py fetching from both.

Tarballs are stand-ins (tests/venv_tarballs.py: a .tar.gz whose bin/python is a shell script), so
these tests need no container build; the container tier runs the real venv tarballs. The
malicious tarballs are built member by member in the tests (tarfile lets an unprivileged
process write device and FIFO entries), and the layout `uv venv --relocatable` makes is built
the same way, linking bin/python to the interpreter that runs run_venv.py, as the image does.
Where the runtime must cope with whatever the store holds, whatever upload_all.py allows (two
spellings of one version, keys copied in by hand), tarballs are put into the store directly,
their digest recorded the way upload_all.py records it (S3 metadata, sidecar file).
"""

from __future__ import annotations

import fcntl
import gzip
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from artifact_stores import Store
from conftest import copy_template, run, s3_client
from venv_tarballs import JOB_SCRIPT, sha256, venv_tarball

PKG = "nt_api"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_template(
        tmp_path_factory.mktemp("release") / "repo", tasks=False, deploy_targets=["ecs"]
    )


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


def test_concurrent_starts_share_one_extraction(repo: Path, store: Store, tmp_path: Path) -> None:
    """Eight tasks start on one VENVS_DIR at once: all run the job, one extraction is used,
    and no temporary directory is left behind."""
    tarball = released(repo, store, tmp_path)
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
    assert folders(venvs) == [venv_name(tarball)], "one venv, no temporary folder left"
    # One task extracts; the others wait for it and find it done.
    assert sum(", extracted)" in err for _, _, err in results) == 1


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


# --------------------------------------------------------------------------- what runs


def publish(store: Store, name: str, tarball: Path) -> str:
    """Put a tarball into the store with its digest recorded the way upload_all.py records it
    (S3 metadata, a sha256sum sidecar), bypassing upload_all.py's own checks: what the runtime
    must cope with is whatever the store holds, e.g. keys copied in by hand."""
    digest = sha256(tarball)
    if store.kind == "s3":
        s3_client(store.moto).put_object(
            Bucket=store.bucket,
            Key=f"venvs/{name}",
            Body=tarball.read_bytes(),
            Metadata={"sha256": digest},
        )
    else:
        target = Path(store.uri) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(tarball.read_bytes())
        target.with_name(target.name + ".sha256").write_text(f"{digest}  {target.name}\n")
    return digest


def venv_name(tarball: Path, version: str = "0.1.0") -> str:
    """The folder run_venv extracts a tarball into: package, version, the digest's start."""
    return f"{PKG}-{version}-{sha256(tarball)[:16]}"


def folders(venvs: Path) -> list[str]:
    """What VENVS_DIR holds besides the per-venv lock files run_venv keeps."""
    return sorted(p.name for p in venvs.iterdir() if not p.name.endswith(".lock"))


def one_line_refusal(result: subprocess.CompletedProcess[str], *parts: str) -> None:
    """Refused before the job ran, with one line on stderr that names what and why."""
    assert result.returncode != 0 and not result.stdout, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("run_venv: "), result.stderr
    for part in parts:
        assert part in lines[0], (part, lines[0])


def test_unpinned_start_takes_the_newest_final_release(
    repo: Path, store: Store, tmp_path: Path
) -> None:
    """With 1.1, 2.0rc1 and 3.0.dev0 released, a start without a version runs 1.1; a named
    pre-release runs; ALLOW_PRERELEASE=1 (or --pre) lets pre-releases be the newest. Only
    pre-releases and no version named: refused, saying how to ask for one."""
    for version in ("1.1", "2.0rc1", "3.0.dev0"):
        tarball = venv_tarball(tmp_path / "dist" / f"v{version}.tar.gz", marker=version)
        publish(store, f"{PKG}__venv_{version}.tar.gz", tarball)
    venvs = tmp_path / "venvs"
    assert job_output(run_venv(repo, store, venvs))["marker"] == "1.1"
    named = run_venv(repo, store, venvs, "--version", "2.0rc1")
    assert job_output(named)["marker"] == "2.0rc1"
    allowed = run_venv(repo, store, venvs, ALLOW_PRERELEASE="1")
    assert job_output(allowed)["marker"] == "3.0.dev0"
    assert job_output(run_venv(repo, store, venvs, "--pre"))["marker"] == "3.0.dev0"

    only_pre = Store(store.kind, tmp_path / "only-pre", store.moto)
    tarball = venv_tarball(tmp_path / "dist" / "rc.tar.gz", marker="rc")
    publish(only_pre, f"{PKG}__venv_2.0rc1.tar.gz", tarball)
    refused = run_venv(repo, only_pre, tmp_path / "venvs2")
    one_line_refusal(refused, "only pre-releases", "2.0rc1", "ALLOW_PRERELEASE=1")


@pytest.mark.parametrize(
    "names",
    [
        (f"{PKG}__venv_1.0.tar.gz", f"{PKG}__venv_1.0.0.tar.gz"),
        (f"{PKG}__venv_1.0.0.tar.gz", f"{PKG}/venv_1.0.0.tar.gz"),
    ],
    ids=["1.0-and-1.0.0", "flat-and-nested"],
)
def test_two_keys_for_one_version_are_refused(
    repo: Path, store: Store, tmp_path: Path, names: tuple[str, str]
) -> None:
    """1.0 and 1.0.0 are one version under PEP 440, as are a flat and a nested key: which of
    two tarballs would run is not the runtime's to guess. Refused, both keys named, whether
    the version is the newest or named (in another spelling) with --version."""
    for index, name in enumerate(names):
        publish(store, name, venv_tarball(tmp_path / f"d{index}" / "t.tar.gz", f"m{index}"))
    for args in ((), ("--version", "1"), ("--version", "1.0.0")):
        refused = run_venv(repo, store, tmp_path / "venvs", *args)
        one_line_refusal(refused, "2 tarballs for one version", *names)
    assert not (tmp_path / "venvs").exists() or not folders(tmp_path / "venvs")


def test_versions_compare_in_canonical_form(repo: Path, store: Store, tmp_path: Path) -> None:
    """--version 1.0 finds the tarball released as 1.0.0; 1.10 is newer than 1.9."""
    for version in ("1.0.0", "1.9", "1.10"):
        tarball = venv_tarball(tmp_path / "dist" / f"{version}.tar.gz", marker=version)
        publish(store, f"{PKG}__venv_{version}.tar.gz", tarball)
    venvs = tmp_path / "venvs"
    named = run_venv(repo, store, venvs, "--version", "1.0")
    assert job_output(named)["marker"] == "1.0.0" and f"{PKG} 1.0.0 from" in named.stderr
    assert job_output(run_venv(repo, store, venvs))["marker"] == "1.10"


@pytest.mark.parametrize(
    ("args", "env", "refusal"),
    [
        (["--version", "latest"], {}, "version 'latest' refused: not a PEP 440 version"),
        ([], {"PACKAGE_VERSION": "1.0; rm -rf /"}, "not a PEP 440 version"),
        (["--sha256", "abc"], {}, "sha256 'abc' refused: expected 64 hexadecimal digits"),
        ([], {"MAX_VENV_BYTES": "2GB"}, "MAX_VENV_BYTES='2GB': expected a positive whole number"),
        ([], {"ALLOW_PRERELEASE": "maybe"}, "ALLOW_PRERELEASE='maybe': expected 1 or 0"),
    ],
    ids=["version", "version-env", "sha256", "limit", "flag"],
)
def test_bad_arguments_are_refused(
    repo: Path, tmp_path: Path, args: list[str], env: dict[str, str], refusal: str
) -> None:
    store = Store("dir", tmp_path, None)
    released(repo, store, tmp_path)
    one_line_refusal(run_venv(repo, store, tmp_path / "venvs", *args, **env), refusal)


@pytest.mark.parametrize("package", ["../other/evil", "Nt_api", "nt-api", "nt_api/x", "_x", ""])
def test_package_names_are_identifiers(repo: Path, tmp_path: Path, package: str) -> None:
    """A package argument is a name, never a path: `../other/evil` would read tarballs from
    beside the store and extract outside VENVS_DIR."""
    store = Store("dir", tmp_path, None)
    other = tmp_path / "other"
    evil = venv_tarball(other / "evil__venv_1.0.tar.gz", marker="evil")
    (other / "evil__venv_1.0.tar.gz.sha256").write_text(f"{sha256(evil)}  {evil.name}\n")
    released(repo, store, tmp_path)
    venvs = tmp_path / "area" / "venvs"
    cmd = [sys.executable, "docker/runtime/run_venv.py", package]
    env = {**store.env, "ARTIFACTS_URI": store.uri, "VENVS_DIR": str(venvs)}
    result = run(cmd, cwd=repo, check=False, env=env)
    one_line_refusal(result, f"package {package!r} refused", "[a-z][a-z0-9_]*")
    assert sorted(p.name for p in (tmp_path / "area").rglob("*")) in ([], ["venvs"])
    assert sorted(p.name for p in other.iterdir()) == [evil.name, f"{evil.name}.sha256"]


def test_an_unpinned_start_says_the_recorded_digest_only_detects_corruption(
    repo: Path, store: Store, tmp_path: Path
) -> None:
    """Without PACKAGE_SHA256 the job runs (the recorded digest still catches corruption) and
    stderr says, once, what that digest cannot catch; pinned, no notice."""
    tarball = released(repo, store, tmp_path)
    unpinned = run_venv(repo, store, tmp_path / "venvs")
    assert job_output(unpinned)["job"] == PKG
    notices = [line for line in unpinned.stderr.splitlines() if "notice" in line]
    assert len(notices) == 1 and "PACKAGE_SHA256 is not set" in notices[0]
    assert "corruption, not replacement" in notices[0]
    pinned = run_venv(repo, store, tmp_path / "venvs", PACKAGE_SHA256=sha256(tarball))
    assert job_output(pinned)["job"] == PKG and "notice" not in pinned.stderr


@pytest.mark.parametrize("damage", ["no-mark", "other-digest", "half-extracted"])
def test_a_venv_folder_is_reused_only_with_the_digest_mark(
    repo: Path, tmp_path: Path, damage: str
) -> None:
    """A venv folder whose mark is missing (a task killed mid-way by an older runtime, a
    folder made by hand) or holds another digest is never run: a fresh extraction replaces
    it. With the right mark it is reused as it is."""
    store = Store("dir", tmp_path, None)
    tarball = released(repo, store, tmp_path, marker="complete")
    venvs = tmp_path / "venvs"
    assert "extracted)" in run_venv(repo, store, venvs).stderr
    venv = venvs / venv_name(tarball)
    assert "already extracted" in run_venv(repo, store, venvs).stderr

    (venv / "bin" / "python").write_text("#!/bin/sh\necho '{\"marker\": \"tampered\"}'\n")
    mark = venv / ".run_venv-sha256"
    if damage == "no-mark":
        mark.unlink()
    elif damage == "other-digest":
        mark.write_text("0" * 64 + "\n")
    else:
        shutil.rmtree(venv / "lib")
        mark.unlink()
    result = run_venv(repo, store, venvs)
    assert job_output(result)["marker"] == "complete"
    assert "an untrusted folder was replaced" in result.stderr
    assert (venv / "lib" / "site-packages" / "mod199.py").exists()
    assert mark.read_text() == sha256(tarball) + "\n"
    assert folders(venvs) == [venv.name], "no temporary folder left"


# --------------------------------------------------------------------------- extraction


def member_tarball(path: Path, members: list[tuple[str, bytes, str]], job: bool = True) -> Path:
    """A .tar.gz built member by member: (name, type, data for a file or link target).

    It starts with a working stand-in job (bin/python), so a runtime that extracts everything
    runs it and the test sees the job's output instead of a refusal.
    """
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tf:
        entries = [("bin/python", tarfile.REGTYPE, JOB_SCRIPT.replace("{marker}", "evil"))]
        for name, kind, data in ([*entries] if job else []) + members:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = kind, 0o755, 0
            body = None
            if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = data
            elif kind == tarfile.REGTYPE:
                body = data.encode() if isinstance(data, str) else data
                info.size = len(body)
            elif kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
                info.devmajor, info.devminor = 1, 3
            tf.addfile(info, io.BytesIO(body) if body is not None else None)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw.getvalue(), mtime=0))
    return path


REG, SYM, LNK = tarfile.REGTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE

# Each: the members after the job, and what the refusal must say. {outside} is a folder next
# to VENVS_DIR holding a file `victim`.
MALICIOUS = {
    "hard-link-to-absolute-path": (
        [("lib/victim", LNK, "{outside}/victim"), ("lib/victim", REG, "pwned")],
        "hard link 'lib/victim' to '{outside}/victim' is an absolute path",
    ),
    "symlink-out": ([("lib/out", SYM, "../../outside")], "'lib/out' to '../../outside' leaves"),
    "symlink-to-absolute-path": (
        [("lib/passwd", SYM, "/etc/passwd")],
        "symbolic link 'lib/passwd' to the absolute path '/etc/passwd'",
    ),
    "interpreter-link-elsewhere": (
        [("bin/python3", SYM, "/bin/sh")],
        "'bin/python3' links to '/bin/sh', not to this runtime's interpreter",
    ),
    "absolute-member": ([("{outside}/planted", REG, "pwned")], "is an absolute path"),
    "dotdot-member": ([("lib/../../outside/planted", REG, "pwned")], "goes up with '..'"),
    "write-through-symlink": (
        [("lib/link", SYM, "../bin"), ("lib/link/planted", REG, "pwned")],
        "member 'lib/link/planted' is under 'lib/link', a symlink",
    ),
    "link-through-link": (
        [("a/b/up", SYM, "../.."), ("escape", SYM, "a/b/up/..")],
        "symbolic link 'escape' resolves to '{venvs}', outside the venv",
    ),
    "same-name-twice": (
        [("lib/mod.py", REG, "x = 1\n"), ("lib/mod.py", REG, "x = 2\n")],
        "member 'lib/mod.py' appears twice",
    ),
    "device-node": ([("lib/null", tarfile.CHRTYPE, "")], "device file 'lib/null'"),
    "fifo": ([("lib/pipe", tarfile.FIFOTYPE, "")], "FIFO 'lib/pipe'"),
    "run-venv-mark": (
        [(".run_venv-sha256", SYM, "lib/other")],
        "'.run_venv-sha256' has the name of run_venv's own mark",
    ),
}


@pytest.mark.parametrize("case", MALICIOUS, ids=list(MALICIOUS))
def test_extraction_never_leaves_its_folder(repo: Path, tmp_path: Path, case: str) -> None:
    """Malicious tarballs, released with a correct digest (a compromised build, a stolen
    release role): each is refused with one line naming the member, nothing outside the
    extraction folder changes, no venv is left and the job never runs."""
    store = Store("dir", tmp_path, None)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("original")
    members, refusal = MALICIOUS[case]
    members = [(n.format(outside=outside), k, d.format(outside=outside)) for n, k, d in members]
    venvs = tmp_path / "venvs"
    tarball = member_tarball(tmp_path / "dist" / "evil.tar.gz", members)
    publish(store, f"{PKG}__venv_0.1.0.tar.gz", tarball)
    result = run_venv(repo, store, venvs)
    refusal = refusal.format(outside=outside, venvs=venvs)
    one_line_refusal(result, f"{PKG} 0.1.0: refused", refusal)
    assert sorted(p.name for p in outside.iterdir()) == ["victim"]
    assert (outside / "victim").read_text() == "original"
    assert folders(venvs) == []


def test_hard_link_cannot_rewrite_a_sibling_venv(repo: Path, tmp_path: Path) -> None:
    """The field report: 0.2.0 holds a hard link to 0.1.0's bin/python followed by a file of
    the same name. Refused; 0.1.0 keeps its bytes, and its next start runs them."""
    store = Store("dir", tmp_path, None)
    released(repo, store, tmp_path, marker="sibling")
    venvs = tmp_path / "venvs"
    assert job_output(run_venv(repo, store, venvs))["marker"] == "sibling"
    [sibling] = folders(venvs)
    before = (venvs / sibling / "bin" / "python").read_bytes()

    members = [
        ("bin/python2", LNK, f"../{sibling}/bin/python"),
        ("bin/python2", REG, "#!/bin/sh\necho '{\"marker\": \"rewritten\"}'\n"),
    ]
    evil = member_tarball(tmp_path / "dist2" / "evil.tar.gz", members)
    publish(store, f"{PKG}__venv_0.2.0.tar.gz", evil)
    refused = run_venv(repo, store, venvs, "--version", "0.2.0")
    one_line_refusal(refused, "hard link 'bin/python2'", "goes up with '..'")
    assert (venvs / sibling / "bin" / "python").read_bytes() == before
    again = run_venv(repo, store, venvs, "--version", "0.1.0")
    assert job_output(again)["marker"] == "sibling" and "already extracted" in again.stderr


def test_a_real_venv_layout_extracts(repo: Path, tmp_path: Path) -> None:
    """What `uv venv --relocatable` puts in Dockerfile.venv's tarball (a `./` prefix on every
    name, bin/python linking to the interpreter by absolute path, bin/python3 and lib64 as
    relative links, pyvenv.cfg) plus a hard link to an earlier file: extracted and run with
    the interpreter running run_venv (the runtime image's own, in production)."""
    store = Store("dir", tmp_path, None)
    interpreter = os.path.realpath(sys.executable)
    minor = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = f"./lib/{minor}/site-packages"
    main = "import json, sys\nprint(json.dumps({'job': 'nt_api', 'prefix': sys.prefix}))\n"
    members = [
        ("./bin/python", SYM, interpreter),
        ("./bin/python3", SYM, "python"),
        (f"./bin/{minor}", SYM, "python"),
        ("./lib64", SYM, "lib"),
        ("./pyvenv.cfg", REG, f"home = {os.path.dirname(interpreter)}\n"),
        (f"{site}/nt_api/__init__.py", REG, ""),
        (f"{site}/nt_api/__main__.py", REG, main),
        (f"{site}/nt_api/copy.py", LNK, f"{site}/nt_api/__main__.py"),
    ]
    tarball = member_tarball(tmp_path / "dist" / "real.tar.gz", members, job=False)
    publish(store, f"{PKG}__venv_0.1.0.tar.gz", tarball)
    venvs = tmp_path / "venvs"
    result = job_output(run_venv(repo, store, venvs))
    venv = venvs / venv_name(tarball)
    assert result == {"job": PKG, "prefix": str(venv)}
    assert os.readlink(venv / "bin" / "python") == interpreter
    assert (venv / "lib64" / minor / "site-packages" / "nt_api" / "copy.py").read_text() == main


def test_bin_python_must_link_to_this_runtimes_interpreter(repo: Path, tmp_path: Path) -> None:
    """Another Python on the machine is not the runtime's: the venv would run elsewhere."""
    others = [p for p in Path("/root/.pyenv/versions").glob("3.1[0-3]*/bin/python3.1[0-3]")]
    other = next(str(p) for p in others if os.path.realpath(p) != os.path.realpath(sys.executable))
    store = Store("dir", tmp_path, None)
    tarball = member_tarball(tmp_path / "dist" / "t.tar.gz", [("bin/python", SYM, other)], False)
    publish(store, f"{PKG}__venv_0.1.0.tar.gz", tarball)
    one_line_refusal(run_venv(repo, store, tmp_path / "venvs"), f"links to {other!r}")


@pytest.mark.parametrize(
    ("limit", "value", "refusal"),
    [
        ("MAX_VENV_BYTES", "100000", "exceeds MAX_VENV_BYTES=100000 bytes"),
        ("MAX_VENV_MEMBERS", "50", "more than MAX_VENV_MEMBERS=50 members"),
    ],
)
def test_extraction_stops_at_the_caps(
    repo: Path, tmp_path: Path, limit: str, value: str, refusal: str
) -> None:
    """A bomb (a small download that expands hugely; here 100 KB of zeros, with the cap set
    low rather than gigabytes written) is refused with the numbers, before its content is
    written: the cap is checked on each member's header."""
    store = Store("dir", tmp_path, None)
    files = [(f"lib/f{i}.txt", REG, "x") for i in range(60)]
    members = [("lib/zeros", REG, b"\0" * 100_000), *files]
    tarball = member_tarball(tmp_path / "dist" / "bomb.tar.gz", members)
    assert tarball.stat().st_size < 2000
    publish(store, f"{PKG}__venv_0.1.0.tar.gz", tarball)
    venvs = tmp_path / "venvs"
    one_line_refusal(run_venv(repo, store, venvs, **{limit: value}), refusal)
    assert folders(venvs) == []
    assert job_output(run_venv(repo, store, venvs))["marker"] == "evil", "defaults: 2 GiB"


def test_a_python_without_extraction_filters_is_refused(repo: Path, tmp_path: Path) -> None:
    """Patch releases before 3.10.12/3.11.4 have no tarfile filters: no unfiltered fallback."""
    store = Store("dir", tmp_path, None)
    released(repo, store, tmp_path)
    code = (
        "import runpy, sys, tarfile; del tarfile.data_filter;"
        f" sys.argv = ['run_venv.py', {PKG!r}];"
        " runpy.run_path('docker/runtime/run_venv.py', run_name='__main__')"
    )
    env = {**store.env, "ARTIFACTS_URI": store.uri, "VENVS_DIR": str(tmp_path / "venvs")}
    result = run([sys.executable, "-c", code], cwd=repo, check=False, env=env)
    one_line_refusal(result, "has no tarfile extraction filters", "refusing to extract")
    assert folders(tmp_path / "venvs") == []


def test_leftovers_of_killed_starts_are_swept(repo: Path, tmp_path: Path) -> None:
    """kill -9 mid-extraction leaves a download and a half extraction: the next start removes
    them. A sibling's folder still in progress (its lock held) stays, as does a lock-less one
    younger than an hour (an older runtime's, maybe at work); an old lock-less one goes."""
    store = Store("dir", tmp_path, None)
    tarball = venv_tarball(tmp_path / "dist" / f"{PKG}__venv_0.1.0.tar.gz", "big", files=6000)
    assert upload(repo, store, tmp_path / "dist").returncode == 0
    venvs = tmp_path / "venvs"
    env = {**store.env, "ARTIFACTS_URI": store.uri, "VENVS_DIR": str(venvs)}
    proc = subprocess.Popen(
        [sys.executable, "docker/runtime/run_venv.py", PKG], cwd=repo, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not any(p.name.startswith(f".{PKG}-") and p.is_dir() for p in listing(venvs)):
        assert proc.poll() is None and time.monotonic() < deadline, "extraction not caught"
        time.sleep(0.005)
    proc.kill()
    proc.wait()
    left = [p.name for p in listing(venvs) if p.is_dir()]
    assert any(n.startswith(".download.") for n in left) and len(left) == 2, left

    sibling = venvs / f".{PKG}-9.9.9-0123456789abcdef.sibling.tmp"
    sibling.mkdir()
    lock = os.open(f"{sibling}.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(lock, fcntl.LOCK_EX)
    young, old = venvs / ".download.young", venvs / ".download.old"
    young.mkdir()
    old.mkdir()
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    try:
        result = run_venv(repo, store, venvs)
        assert job_output(result)["marker"] == "big"
    finally:
        os.close(lock)
    assert f"removed 3 temporary folder(s) left by stopped tasks" in result.stderr
    assert folders(venvs) == sorted([young.name, sibling.name, venv_name(tarball)])


def listing(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except FileNotFoundError:
        return []
