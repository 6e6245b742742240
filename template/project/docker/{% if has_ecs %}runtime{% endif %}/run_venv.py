"""Entrypoint of the ECS runtime image: fetch a package's venv tarball, extract it, run the job.

    run_venv.py PACKAGE [--version VERSION] [-- JOB ARGS...]

ARTIFACTS_URI says where tarballs live: ``s3://bucket/prefix`` or a local directory (a mounted
volume, handy for trying an image out). Without --version (or PACKAGE_VERSION), the newest
version found by prefix lookup runs. The job is ``python -m PACKAGE`` from the extracted venv,
which runs on this image's interpreter at the same path as the image that built it.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tarfile
import tempfile
from pathlib import Path

from packaging.version import InvalidVersion, Version

# Flat: <pkg>__venv_<version>.tar.gz; nested: <pkg>/venv_<version>.tar.gz (scripts/upload_all.py).
NAME_RE = r"^{pkg}(?:__|/)venv_(?P<version>[^/]+)\.tar\.gz$"


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
            sys.exit(f"run_venv: {package} {version} not found in {where} (have: {have})")
        return version, found[version]
    if not found:
        sys.exit(f"run_venv: no venv tarball for {package} in {where}")
    latest = max(found, key=_version_key)
    return latest, found[latest]


def fetch(uri: str, package: str, version: str | None, dest: Path) -> tuple[str, Path]:
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
        s3.download_file(bucket, key, str(target))
        return version, target
    root = Path(uri.removeprefix("file://"))
    os.listdir(root)  # a missing or unreadable directory should say so, not "no tarball"
    names = {p.relative_to(root).as_posix(): str(p) for p in root.glob(f"{package}*/**/*.tar.gz")}
    names |= {p.name: str(p) for p in root.glob(f"{package}__venv_*.tar.gz")}
    version, path = _pick(names, package, version, uri)
    return version, Path(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", help="package name, e.g. nt_api")
    parser.add_argument("--version", default=os.environ.get("PACKAGE_VERSION") or None)
    argv = sys.argv[1:] if argv is None else argv
    own, job_args = (
        (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    )
    args = parser.parse_args(own)
    uri = os.environ.get("ARTIFACTS_URI")
    if not uri:
        sys.exit("run_venv: set ARTIFACTS_URI to s3://bucket/prefix or a local directory")
    work = Path(os.environ.get("VENVS_DIR", tempfile.gettempdir()))
    with tempfile.TemporaryDirectory(dir=work) as download:
        version, tarball = fetch(uri, args.package, args.version, Path(download))
        venv = work / f"{args.package}-{version}"
        if not (venv / "bin" / "python").exists():
            venv.mkdir(parents=True, exist_ok=True)
            with tarfile.open(tarball) as tf:
                # "tar", not "data": bin/python is an absolute link to this image's interpreter.
                # Older patch releases (before 3.10.12/3.11.4) have no extraction filters.
                kwargs = {"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}
                tf.extractall(venv, **kwargs)
    print(f"run_venv: {args.package} {version} from {uri}", file=sys.stderr, flush=True)
    python = str(venv / "bin" / "python")
    os.execv(python, [python, "-m", args.package, *job_args])
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
