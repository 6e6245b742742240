"""Entrypoint of the ECS runtime image: fetch a package's venv tarball, verify, extract, run.

    run_venv.py PACKAGE [--version VERSION] [--sha256 DIGEST] [-- JOB ARGS...]

ARTIFACTS_URI says where tarballs live: ``s3://bucket/prefix`` or a local directory (a mounted
volume, handy for trying an image out). Without --version (or PACKAGE_VERSION), the newest
version found by prefix lookup runs: pin the version in a task definition to decide when a new
release goes live.

Integrity: the downloaded bytes must match a sha256 before anything is extracted. The digest
pinned in the task definition (--sha256 or PACKAGE_SHA256) wins; otherwise the one
scripts/upload_all.py recorded at release (S3 object metadata, or a ``.sha256`` file next to a
local tarball). No digest, or another one: the job does not start.

Extraction goes to a temporary directory next to the target and is renamed into place, so a
venv directory that exists is complete: tasks sharing VENVS_DIR start together safely, and a
task killed mid-extraction leaves only a temporary directory no one trusts.

The job, ``python -m PACKAGE`` from the venv (this image's interpreter, at the path the venv
was built against), runs as a child: SIGTERM and SIGINT (ECS StopTask, docker stop) are passed
on to it, and its exit status becomes this process's.

IAM (deploy/iam/ecs-task-role-policy.json): s3:ListBucket on the prefix, s3:GetObject in it.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from packaging.version import InvalidVersion, Version

# Flat: <pkg>__venv_<version>.tar.gz; nested: <pkg>/venv_<version>.tar.gz (scripts/upload_all.py).
NAME_RE = r"^{pkg}(?:__|/)venv_(?P<version>[^/]+)\.tar\.gz$"
# Where scripts/upload_all.py records each tarball's digest.
S3_METADATA_KEY = "sha256"
SIDECAR_SUFFIX = ".sha256"
# Inside an extracted venv: the digest of the tarball it came from, written before the rename.
EXTRACTED_MARK = ".run_venv-sha256"
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)


def fail(message: str) -> None:
    sys.exit(f"run_venv: {message}")


def _version_key(version: str) -> tuple[int, Version | str]:
    try:
        return (1, Version(version))
    except InvalidVersion:
        return (0, version)


def _pick(names: dict[str, str], package: str, version: str | None, where: str) -> tuple[str, str]:
    """names maps relative name -> location; returns (version, location)."""
    pattern = re.compile(NAME_RE.format(pkg=re.escape(package)))
    found = {m["version"]: loc for rel, loc in names.items() if (m := pattern.match(rel))}
    if version:
        if version not in found:
            have = ", ".join(sorted(found, key=_version_key)) or "none"
            fail(f"{package} {version} not found in {where} (have: {have})")
        return version, found[version]
    if not found:
        fail(f"no venv tarball for {package} in {where}")
    latest = max(found, key=_version_key)
    return latest, found[latest]


def _copy_hashing(chunks, target: Path) -> str:
    digest = hashlib.sha256()
    with target.open("wb") as out:
        for chunk in chunks:
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def fetch(uri: str, package: str, version: str | None, dest: Path) -> tuple[str, Path, str, str]:
    """Download into dest: (version, tarball, sha256 of its bytes, sha256 recorded at release)."""
    if uri.startswith("s3://"):
        import boto3

        bucket, _, prefix = uri[len("s3://") :].partition("/")
        prefix = prefix.strip("/")
        base = f"{prefix}/" if prefix else ""
        s3 = boto3.client("s3")
        names: dict[str, str] = {}
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=base + package
        ):
            for obj in page.get("Contents", []):
                names[obj["Key"][len(base) :]] = obj["Key"]
        version, key = _pick(names, package, version, uri)
        target = dest / Path(key).name
        obj = s3.get_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        recorded = obj.get("Metadata", {}).get(S3_METADATA_KEY, "")
        if not recorded and obj.get("ChecksumSHA256") and "-" not in obj["ChecksumSHA256"]:
            recorded = base64.b64decode(obj["ChecksumSHA256"]).hex()
        actual = _copy_hashing(obj["Body"].iter_chunks(), target)
        return version, target, actual, recorded
    root = Path(uri.removeprefix("file://"))
    os.listdir(root)  # a missing or unreadable directory should say so, not "no tarball"
    names = {p.relative_to(root).as_posix(): str(p) for p in root.glob(f"{package}*/**/*.tar.gz")}
    names |= {p.name: str(p) for p in root.glob(f"{package}__venv_*.tar.gz")}
    version, path = _pick(names, package, version, uri)
    # Copied before hashing: the bytes checked are the bytes extracted.
    target = dest / Path(path).name
    with open(path, "rb") as src:
        actual = _copy_hashing(iter(lambda: src.read(1 << 20), b""), target)
    sidecar = Path(path + SIDECAR_SUFFIX)
    recorded = sidecar.read_text().split()[0] if sidecar.exists() else ""
    return version, target, actual, recorded


def _marked(venv: Path) -> str:
    try:
        return (venv / EXTRACTED_MARK).read_text().strip()
    except OSError:
        return ""


def install(tarball: Path, venv: Path, digest: str) -> bool:
    """Extract into a temporary sibling and rename it to `venv`; False if another task won."""
    tmp = Path(tempfile.mkdtemp(dir=venv.parent, prefix=f".{venv.name}.", suffix=".tmp"))
    try:
        with tarfile.open(tarball) as tf:
            # "tar", not "data": bin/python is an absolute link to this image's interpreter.
            # Older patch releases (before 3.10.12/3.11.4) have no extraction filters.
            kwargs = {"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}
            tf.extractall(tmp, **kwargs)
        (tmp / EXTRACTED_MARK).write_text(digest + "\n")
        if venv.exists() and _marked(venv) != digest:
            # Not ours to trust (an old in-place extraction, another digest): move it aside.
            stale = venv.with_name(tmp.name + ".stale")
            with contextlib.suppress(FileNotFoundError):  # another task moved it first
                venv.rename(stale)
            shutil.rmtree(stale, ignore_errors=True)
        try:
            tmp.rename(venv)
        except OSError:  # another task renamed its copy first
            if _marked(venv) != digest:
                raise
            return False
        return True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_job(python: Path, package: str, job_args: list[str]) -> int:
    """Run the job as a child, pass stop signals on, and return its exit status."""
    job = subprocess.Popen([str(python), "-m", package, *job_args])
    for sig in FORWARDED:
        signal.signal(sig, lambda signum, _frame: job.send_signal(signum))
    status = job.wait()
    # Killed by a signal: report it as a shell would (128 + signal), e.g. 143 for SIGTERM.
    return 128 - status if status < 0 else status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", help="package name, e.g. nt_api")
    parser.add_argument("--version", default=os.environ.get("PACKAGE_VERSION") or None)
    parser.add_argument(
        "--sha256",
        default=os.environ.get("PACKAGE_SHA256") or None,
        help="expected sha256 of the tarball; wins over the digest recorded at release",
    )
    argv = sys.argv[1:] if argv is None else argv
    own, job_args = (
        (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    )
    args = parser.parse_args(own)
    # Stopped before the job starts (PID 1 ignores signals it has no handler for): exit at
    # once, cleaning up the download and any half extraction on the way out.
    for sig in FORWARDED:
        signal.signal(sig, lambda signum, _frame: sys.exit(128 + signum))
    uri = os.environ.get("ARTIFACTS_URI")
    if not uri:
        fail("set ARTIFACTS_URI to s3://bucket/prefix or a local directory")
    work = Path(os.environ.get("VENVS_DIR", tempfile.gettempdir()))
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work, prefix=".download.") as download:
        version, tarball, actual, recorded = fetch(uri, args.package, args.version, Path(download))
        expected = (args.sha256 or recorded).lower()
        origin = "pinned (PACKAGE_SHA256/--sha256)" if args.sha256 else "recorded at release"
        if not expected:
            fail(
                f"{args.package} {version}: no sha256 recorded for {tarball.name} in {uri}; "
                "release it with scripts/upload_all.py or pin PACKAGE_SHA256. Nothing was run."
            )
        if actual != expected:
            fail(
                f"{args.package} {version}: sha256 mismatch for {tarball.name} from {uri}: "
                f"expected {expected} ({origin}), downloaded {actual}. "
                "Nothing was extracted or run."
            )
        venv = work / f"{args.package}-{version}"
        if _marked(venv) == expected:
            state = "already extracted"
        else:
            state = "extracted" if install(tarball, venv, expected) else "extracted by another task"
    print(
        f"run_venv: {args.package} {version} from {uri} (sha256 {expected}, {state})",
        file=sys.stderr,
        flush=True,
    )
    return run_job(venv / "bin" / "python", args.package, job_args)


if __name__ == "__main__":
    sys.exit(main())
