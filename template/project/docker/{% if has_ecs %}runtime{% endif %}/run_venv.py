"""Entrypoint of the ECS runtime image: fetch a package's venv tarball, verify, extract, run.

    run_venv.py PACKAGE [--version VERSION] [--sha256 DIGEST] [--pre] [-- JOB ARGS...]

In: PACKAGE, a package name (``[a-z][a-z0-9_]*``, e.g. ``nt_api``); ARTIFACTS_URI, where the
tarballs live: ``s3://bucket/prefix`` or a local directory (a mounted volume, handy for trying
an image out); VENVS_DIR, where venvs are extracted (default: the temporary directory).
Out: the job's exit status (128 + N when signal N ended it). A refusal (a bad argument, a
digest mismatch, an unsafe tarball, ...) exits with status 1 and one line on stderr,
``run_venv: ...``, before anything runs.

Pinning: a task definition decides what runs with two environment variables (or flags).

- PACKAGE_VERSION (--version): a PEP 440 version, compared in canonical form (1.0 finds the
  tarball released as 1.0.0). Without it, the newest *final* release runs; pre-releases and
  dev releases (2.0rc1, 3.0.dev0) only when named, or with ALLOW_PRERELEASE=1 (--pre).
- PACKAGE_SHA256 (--sha256): the sha256 of the tarball, as ``scripts/upload_all.py`` printed
  it at release. This is THE pin: the downloaded bytes must match it, whatever the store says.

      "command": ["nt_api", "--", "--records", "10"],
      "environment": [{"name": "PACKAGE_VERSION", "value": "0.3.1"},
                      {"name": "PACKAGE_SHA256", "value": "<64 hex digits>"}]

Without PACKAGE_SHA256 the digest recorded at release (S3 object metadata, or a ``.sha256``
file next to a local tarball) is checked instead, and a one-line notice says so: it sits with
the bytes, so it catches corruption, not replacement (whoever can replace the object can
replace its metadata; the bucket policy keeps releases write-once). No digest at all, or
another one: the job does not start. Two tarballs for one version (1.0 and 1.0.0, or a flat
and a nested key) are refused, both named.

Extraction never leaves its folder: into a fresh private temporary directory, members checked
one by one before they are written (tarfile's ``data`` filter plus stricter rules): regular
files, directories, symbolic links that stay inside the venv, the venv's own
``bin/python*`` links to this image's interpreter (what ``uv venv --relocatable`` makes), and
hard links to files earlier in the archive. Refused: absolute paths, ``..``, a member under a
symbolic link or a file, a name that appears twice, device files, FIFOs, and more than
MAX_VENV_BYTES (default 2 GiB) of content or MAX_VENV_MEMBERS (default 200000) members. A
Python without extraction filters (before 3.10.12/3.11.4) is refused. The directory is renamed
into place with a mark holding the digest; a venv directory is reused only when its mark holds
the digest being run, so a half-made or altered one is extracted anew.

Concurrent starts sharing VENVS_DIR extract once (the others wait for it). Every temporary
folder has a lock file held by its owner: at start, folders whose owner is gone (a task killed
mid-download or mid-extraction) are removed, and a sibling's folder in progress is left alone.

The job, ``python -m PACKAGE`` from the venv (this image's interpreter, at the path the venv
was built against), runs as a child: SIGTERM and SIGINT (ECS StopTask, docker stop) are passed
on to it, and its exit status becomes this process's. As PID 1 (the container's entrypoint)
it also reaps every orphaned process, as an init must, so none is left a zombie.

IAM: the job's own task role (`uv run scripts/iam_policy.py task-role <pkg>` prints it):
s3:ListBucket on `<prefix>/<pkg>__venv_*` and `<prefix>/<pkg>/*`, s3:GetObject on those keys.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import hashlib
import os
import posixpath
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NoReturn

from packaging.version import InvalidVersion, Version

PACKAGE_RE = re.compile(r"[a-z][a-z0-9_]*")
SHA256_RE = re.compile(r"[0-9a-f]{64}")
# Flat: <pkg>__venv_<version>.tar.gz; nested: <pkg>/venv_<version>.tar.gz (scripts/upload_all.py).
NAME_RE = r"^{pkg}(?:__|/)venv_(?P<version>[^/]+)\.tar\.gz$"
# Where scripts/upload_all.py records each tarball's digest.
S3_METADATA_KEY = "sha256"
SIDECAR_SUFFIX = ".sha256"
# Inside an extracted venv: the digest of the tarball it came from, written before the rename.
EXTRACTED_MARK = ".run_venv-sha256"
# The only members that may link to an absolute path: the venv's interpreter links.
INTERPRETER_LINK_RE = re.compile(r"bin/python(?:3(?:\.\d+)?)?")
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)
MAX_BYTES_DEFAULT = 2 * 1024**3
MAX_MEMBERS_DEFAULT = 200_000
# Temporary folders are named .<what>.<random>.tmp, each with a <folder>.lock its owner holds.
TMP_SUFFIX = ".tmp"
LOCK_SUFFIX = ".lock"
# A temporary folder without a lock file (left by an older run_venv, which made none) is
# removed once this old; a lock file without its folder, once this old and free.
STALE_SECONDS = 3600
ORPHAN_LOCK_SECONDS = 60


def fail(message: str) -> NoReturn:
    sys.exit(f"run_venv: {message}")


class Refused(Exception):
    """A tarball member (or the whole tarball) that extraction refuses; says which and why."""


# --------------------------------------------------------------------------- versions


def _pick(
    names: dict[str, str], package: str, wanted: Version | None, pre: bool, where: str
) -> tuple[str, str]:
    """Choose a tarball. `names` maps a name relative to the store to its location.

    Returns (version in canonical form, location). Exits with a message when the version is
    missing, when only pre-releases exist and none was asked for, or when two names hold the
    chosen version (1.0 and 1.0.0, flat and nested).
    """
    pattern = re.compile(NAME_RE.format(pkg=re.escape(package)))
    found: dict[Version, list[str]] = {}
    for rel in sorted(names):
        if match := pattern.match(rel):
            with contextlib.suppress(InvalidVersion):  # not orderable: never chosen
                found.setdefault(Version(match["version"]), []).append(rel)
    have = ", ".join(str(v) for v in sorted(found)) or "none"
    if wanted is not None:
        if wanted not in found:
            fail(f"{package} {wanted} not found in {where} (have: {have})")
        chosen = wanted
    else:
        candidates = [v for v in found if pre or not v.is_prerelease]
        if not candidates:
            if found:
                fail(
                    f"{package}: only pre-releases in {where} ({have}); name one with --version "
                    "(PACKAGE_VERSION) or allow them with --pre (ALLOW_PRERELEASE=1)"
                )
            fail(f"no venv tarball for {package} in {where}")
        chosen = max(candidates)
    keys = found[chosen]
    if len(keys) > 1:
        fail(
            f"{package} {chosen}: {len(keys)} tarballs for one version in {where}: "
            f"{' and '.join(keys)}; a version is released once: remove all but one"
        )
    # As released (1.0.0 when --version 1.0 found it), in canonical form.
    return str(Version(pattern.match(keys[0])["version"])), names[keys[0]]


# --------------------------------------------------------------------------- fetching


def _copy_hashing(chunks: Iterable[bytes], target: Path, limit: int) -> str:
    digest = hashlib.sha256()
    size = 0
    with target.open("wb") as out:
        for chunk in chunks:
            size += len(chunk)
            if size > limit:
                raise Refused(f"the download is larger than MAX_VENV_BYTES={limit}")
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def fetch(
    uri: str, package: str, wanted: Version | None, pre: bool, dest: Path, limit: int
) -> tuple[str, Path, str, str]:
    """Download into dest: (version, tarball, sha256 of its bytes, sha256 recorded at release)."""
    if uri.startswith("s3://"):
        import boto3

        bucket, _, prefix = uri[len("s3://") :].partition("/")
        prefix = prefix.strip("/")
        base = f"{prefix}/" if prefix else ""
        s3 = boto3.client("s3")
        names: dict[str, str] = {}
        # One listing per naming scheme, each exactly what the job's task role may list
        # (scripts/iam_policy.py): `<pkg>` alone would also list every `<pkg>...` package.
        for scheme in (f"{package}__venv_", f"{package}/"):
            pages = s3.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=base + scheme
            )
            for page in pages:
                for obj in page.get("Contents", []):
                    names[obj["Key"][len(base) :]] = obj["Key"]
        version, key = _pick(names, package, wanted, pre, uri)
        target = dest / Path(key).name
        obj = s3.get_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        recorded = obj.get("Metadata", {}).get(S3_METADATA_KEY, "")
        if not recorded and obj.get("ChecksumSHA256") and "-" not in obj["ChecksumSHA256"]:
            recorded = base64.b64decode(obj["ChecksumSHA256"]).hex()
        actual = _copy_hashing(obj["Body"].iter_chunks(), target, limit)
        return version, target, actual, recorded
    root = Path(uri.removeprefix("file://"))
    os.listdir(root)  # a missing or unreadable directory should say so, not "no tarball"
    names = {p.relative_to(root).as_posix(): str(p) for p in root.glob(f"{package}/*.tar.gz")}
    names |= {p.name: str(p) for p in root.glob(f"{package}__venv_*.tar.gz")}
    version, path = _pick(names, package, wanted, pre, uri)
    # Copied before hashing: the bytes checked are the bytes extracted.
    target = dest / Path(path).name
    with open(path, "rb") as src:
        actual = _copy_hashing(iter(lambda: src.read(1 << 20), b""), target, limit)
    sidecar = Path(path + SIDECAR_SUFFIX)
    recorded = sidecar.read_text().split()[0] if sidecar.exists() else ""
    return version, target, actual, recorded


# --------------------------------------------------------------------------- temporary folders


@contextlib.contextmanager
def temporary_folder(work: Path, prefix: str) -> Iterator[Path]:
    """A fresh private folder `work/<prefix><random>.tmp`, removed on the way out.

    Its lock file (the folder's name + .lock) is made and locked first and removed last, so a
    folder whose lock file is missing or free has no living owner (see `sweep`).
    """
    fd, lock = tempfile.mkstemp(dir=work, prefix=prefix, suffix=TMP_SUFFIX + LOCK_SUFFIX)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        folder = Path(lock[: -len(LOCK_SUFFIX)])
        folder.mkdir(mode=0o700)
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)
        os.close(fd)


def _free(lock: Path) -> int | None:
    """An open descriptor holding `lock`, or None when someone holds it (or it is gone)."""
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def sweep(work: Path) -> list[str]:
    """Remove temporary folders (and lock files) in `work` whose owner is gone; their names.

    A folder whose lock file is free was left by a task that died (kill -9, OOM); one whose lock
    is held belongs to a sibling task at work and is left alone; one without a lock file is
    removed only when older than STALE_SECONDS (an older run_venv's, or a legacy .download.*).
    """
    removed = []
    now = time.time()
    for entry in os.scandir(work):
        name, path = entry.name, work / entry.name
        if not name.startswith("."):
            continue
        if name.endswith(TMP_SUFFIX + LOCK_SUFFIX):
            folder = path.with_name(name[: -len(LOCK_SUFFIX)])
            with contextlib.suppress(OSError):
                if folder.exists() or now - entry.stat().st_mtime < ORPHAN_LOCK_SECONDS:
                    continue
                if (fd := _free(path)) is not None:
                    path.unlink()
                    os.close(fd)
            continue
        legacy = name.startswith(".download.")
        if not (name.endswith(TMP_SUFFIX) or legacy) or not entry.is_dir(follow_symlinks=False):
            continue
        lock = path.with_name(name + LOCK_SUFFIX)
        if lock.exists():
            if (fd := _free(lock)) is None:
                continue
            shutil.rmtree(path, ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()
            os.close(fd)
        else:
            try:
                age = now - entry.stat(follow_symlinks=False).st_mtime
            except FileNotFoundError:  # its owner just removed it
                continue
            if age < STALE_SECONDS:
                continue
            shutil.rmtree(path, ignore_errors=True)
        removed.append(name)
    return removed


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if missing; never removed: see `sweep`)."""
    # Read-only is enough for flock, and lets tasks of another uid take a lock made by one.
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- extraction


def _normalized(raw: str, what: str) -> str:
    """A member path relative to the venv, '' for the venv itself; Refused if it escapes."""
    if raw.startswith("/"):
        raise Refused(f"{what} {raw!r} is an absolute path")
    parts = [part for part in raw.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise Refused(f"{what} {raw!r} goes up with '..'")
    return "/".join(parts)


class MemberFilter:
    """The extraction filter: this runtime's rules, then tarfile's own filter.

    Called by ``TarFile.extractall`` on each member, in archive order, before it is written,
    so state (what exists so far, sizes) is tracked here. Newer tarfile versions call it again
    for a directory when they set its attributes: a member already accepted passes again.
    """

    def __init__(self, max_bytes: int, max_members: int, interpreter: str) -> None:
        self.max_bytes, self.max_members, self.interpreter = max_bytes, max_members, interpreter
        self.kinds: dict[str, str] = {}  # path -> "dir" | "file" | "symlink", as written
        self.implicit: set[str] = set()  # directories made on the way to a member
        self.accepted: dict[str, tarfile.TarInfo] = {}
        self.symlinks: list[str] = []
        self.total = 0
        self.count = 0

    def __call__(self, member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
        name = _normalized(member.name, "member")
        if self.accepted.get(name) is not member:
            self._check(member, name, dest)
            self.accepted[name] = member
        if member.issym():
            # "data" refuses the interpreter link (absolute) and the links that lead to it
            # (bin/python3 -> python): symbolic links get "tar" (the name's checks) plus
            # "data"'s link rule with that one exception (_check_symlink), and no owner.
            filtered = tarfile.tar_filter(member, dest)
            return filtered.replace(uid=None, gid=None, uname=None, gname=None, deep=False)
        return tarfile.data_filter(member, dest)

    def _check(self, member: tarfile.TarInfo, name: str, dest: str) -> None:
        self.count += 1
        if self.count > self.max_members:
            raise Refused(f"more than MAX_VENV_MEMBERS={self.max_members} members")
        if not name:
            if not member.isdir():
                raise Refused(f"member {member.name!r} is not a directory")
            return  # the venv directory itself
        if name == EXTRACTED_MARK:
            raise Refused(f"member {name!r} has the name of run_venv's own mark")
        if name in self.kinds or (name in self.implicit and not member.isdir()):
            raise Refused(f"member {name!r} appears twice: the second would write through it")
        parts = name.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            if self.kinds.get(parent, "dir") != "dir":
                raise Refused(f"member {name!r} is under {parent!r}, a {self.kinds[parent]}")
            self.implicit.add(parent)
        if member.isreg():
            self.total += member.size
            if self.total > self.max_bytes:
                raise Refused(
                    f"its content exceeds MAX_VENV_BYTES={self.max_bytes} bytes "
                    f"({self.total} bytes up to {name!r})"
                )
            self.kinds[name] = "file"
        elif member.isdir():
            self.kinds[name] = "dir"
        elif member.issym():
            self._check_symlink(name, member.linkname, dest)
            self.kinds[name] = "symlink"
            self.symlinks.append(name)
        elif member.islnk():
            target = _normalized(member.linkname, f"hard link {name!r} to")
            if self.kinds.get(target) != "file":
                raise Refused(
                    f"hard link {name!r} to {member.linkname!r}: not a file earlier in this archive"
                )
            self.kinds[name] = "file"
        else:
            kind = "FIFO" if member.isfifo() else "device file" if member.isdev() else "member"
            raise Refused(f"{kind} {name!r} (type {member.type!r}): only files, dirs and links")

    def _check_symlink(self, name: str, target: str, dest: str) -> None:
        if target.startswith("/"):
            if not INTERPRETER_LINK_RE.fullmatch(name):
                raise Refused(f"symbolic link {name!r} to the absolute path {target!r}")
            if os.path.realpath(target) != self.interpreter:
                raise Refused(
                    f"{name!r} links to {target!r}, not to this runtime's interpreter "
                    f"{self.interpreter!r}"
                )
            return
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
        if not target or resolved == ".." or resolved.startswith("../"):
            raise Refused(f"symbolic link {name!r} to {target!r} leaves the venv")
        # Through links already extracted, as "data" checks it (check_extracted repeats this
        # once every link exists).
        real = os.path.realpath(os.path.join(dest, posixpath.dirname(name), target))
        self._inside(name, real, dest)

    def _inside(self, name: str, real: str, dest: str) -> None:
        top = os.path.realpath(dest)
        if real != self.interpreter and os.path.commonpath([real, top]) != top:
            raise Refused(f"symbolic link {name!r} resolves to {real!r}, outside the venv")

    def check_extracted(self, root: Path) -> None:
        """Links checked one by one can still combine (a link through a link and '..'):
        resolve each one as written and refuse any that ends outside `root`."""
        for name in self.symlinks:
            self._inside(name, os.path.realpath(root / name), str(root))


def _marked(venv: Path) -> str:
    try:
        fd = os.open(venv / EXTRACTED_MARK, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return ""
    with os.fdopen(fd) as mark:
        return mark.read().strip()


def extract(tarball: Path, folder: Path, digest: str, max_bytes: int, max_members: int) -> None:
    """Extract `tarball` into the empty private `folder` and mark it with `digest`.

    Raises Refused (a member or the whole tarball breaks a rule), tarfile.TarError or OSError.
    """
    if not hasattr(tarfile, "data_filter"):
        raise Refused(
            f"this Python ({sys.version.split()[0]}) has no tarfile extraction filters "
            "(3.10.12, 3.11.4 or later): refusing to extract without them"
        )
    check = MemberFilter(max_bytes, max_members, os.path.realpath(sys.executable))
    with tarfile.open(tarball) as tf:
        tf.extractall(folder, filter=check)
    check.check_extracted(folder)
    fd = os.open(
        folder / EXTRACTED_MARK, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644
    )
    with os.fdopen(fd, "w") as mark:
        mark.write(digest + "\n")


def install(tarball: Path, venv: Path, digest: str, max_bytes: int, max_members: int) -> str:
    """Make `venv` a complete extraction of `tarball`, marked with `digest`; what happened.

    One task extracts at a time per venv (a lock file next to it): others wait, then find it
    done. A venv directory whose mark is missing or another digest is never reused: a new
    extraction replaces it.
    """
    work = venv.parent
    with locked(work / f".{venv.name}{LOCK_SUFFIX}"):
        if _marked(venv) == digest:
            return "extracted by another task"
        with temporary_folder(work, f".{venv.name}.") as tmp:
            extract(tarball, tmp, digest, max_bytes, max_members)
            if venv.exists() or venv.is_symlink():
                with temporary_folder(work, f".{venv.name}.untrusted.") as aside:
                    venv.rename(aside / "venv")
                tmp.rename(venv)
                return "extracted; an untrusted folder was replaced"
            tmp.rename(venv)
    return "extracted"


# --------------------------------------------------------------------------- running


def run_job(python: Path, package: str, job_args: list[str]) -> int:
    """Run the job as a child, pass stop signals on, and return its exit status.

    As PID 1, wait for any child rather than the job only: orphaned processes (a job's
    double-forked helper) are re-parented to PID 1, and stay zombies unless it reaps them.
    """
    job = subprocess.Popen([str(python), "-m", package, *job_args])
    reaped = False

    def forward(signum: int, _frame: object) -> None:
        if not reaped and job.returncode is None:  # never signal a recycled PID
            with contextlib.suppress(ProcessLookupError):
                os.kill(job.pid, signum)

    for sig in FORWARDED:
        signal.signal(sig, forward)
    if os.getpid() == 1:
        while True:
            pid, status = os.waitpid(-1, 0)
            if pid == job.pid:
                reaped = True
                job.returncode = code = os.waitstatus_to_exitcode(status)
                break
    else:
        code = job.wait()
    # Killed by a signal: report it as a shell would (128 + signal), e.g. 143 for SIGTERM.
    return 128 - code if code < 0 else code


def _limit(name: str, default: int) -> int:
    value = os.environ.get(name) or str(default)
    if not value.isdigit() or int(value) < 1:
        fail(f"{name}={value!r}: expected a positive whole number")
    return int(value)


def _flag(name: str) -> bool:
    value = os.environ.get(name, "").lower()
    if value not in ("", "0", "1", "false", "true", "no", "yes"):
        fail(f"{name}={value!r}: expected 1 or 0")
    return value in ("1", "true", "yes")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", help="package name, e.g. nt_api")
    parser.add_argument(
        "--version",
        default=os.environ.get("PACKAGE_VERSION") or None,
        help="PEP 440 version to run (default: the newest final release)",
    )
    parser.add_argument(
        "--sha256",
        default=os.environ.get("PACKAGE_SHA256") or None,
        help="expected sha256 of the tarball: the pin; wins over the digest recorded at release",
    )
    parser.add_argument(
        "--pre",
        action="store_true",
        default=_flag("ALLOW_PRERELEASE"),
        help="without --version, let pre-releases and dev releases be the newest",
    )
    argv = sys.argv[1:] if argv is None else argv
    own, job_args = (
        (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    )
    args = parser.parse_args(own)
    package = args.package
    if not PACKAGE_RE.fullmatch(package):
        fail(f"package {package!r} refused: expected a name like nt_api ([a-z][a-z0-9_]*)")
    wanted = None
    if args.version is not None:
        try:
            wanted = Version(args.version)
        except InvalidVersion:
            fail(f"version {args.version!r} refused: not a PEP 440 version (e.g. 1.2.0, 2.0rc1)")
    pinned = (args.sha256 or "").lower()
    if args.sha256 is not None and not SHA256_RE.fullmatch(pinned):
        fail(f"sha256 {args.sha256!r} refused: expected 64 hexadecimal digits")
    max_bytes = _limit("MAX_VENV_BYTES", MAX_BYTES_DEFAULT)
    max_members = _limit("MAX_VENV_MEMBERS", MAX_MEMBERS_DEFAULT)
    # Stopped before the job starts (PID 1 ignores signals it has no handler for): exit at
    # once, cleaning up the download and any half extraction on the way out.
    for sig in FORWARDED:
        signal.signal(sig, lambda signum, _frame: sys.exit(128 + signum))
    uri = os.environ.get("ARTIFACTS_URI")
    if not uri:
        fail("set ARTIFACTS_URI to s3://bucket/prefix or a local directory")
    work = Path(os.environ.get("VENVS_DIR", tempfile.gettempdir()))
    work.mkdir(parents=True, exist_ok=True)
    if removed := sweep(work):
        print(
            f"run_venv: removed {len(removed)} temporary folder(s) left by stopped tasks: "
            + ", ".join(removed),
            file=sys.stderr,
        )
    with temporary_folder(work, ".download.") as download:
        try:
            version, tarball, actual, recorded = fetch(
                uri, package, wanted, args.pre, download, max_bytes
            )
        except Refused as refused:
            fail(f"{package}: {refused}. Nothing was run.")
        expected = pinned or recorded.lower()
        origin = "pinned (PACKAGE_SHA256/--sha256)" if pinned else "recorded at release"
        if not expected:
            fail(
                f"{package} {version}: no sha256 recorded for {tarball.name} in {uri}; "
                "release it with scripts/upload_all.py or pin PACKAGE_SHA256. Nothing was run."
            )
        if actual != expected:
            fail(
                f"{package} {version}: sha256 mismatch for {tarball.name} from {uri}: "
                f"expected {expected} ({origin}), downloaded {actual}. "
                "Nothing was extracted or run."
            )
        # The digest in the name: tasks pinned to other bytes of one version never share.
        venv = work / f"{package}-{version}-{expected[:16]}"
        if _marked(venv) == expected:
            state = "already extracted"
        else:
            try:
                state = install(tarball, venv, expected, max_bytes, max_members)
            except (Refused, tarfile.TarError, OSError, EOFError) as error:
                fail(f"{package} {version}: refused {tarball.name}: {error}. Nothing was run.")
    if not pinned:
        print(
            f"run_venv: notice: PACKAGE_SHA256 is not set: the sha256 recorded with "
            f"{tarball.name} detects corruption, not replacement; pin PACKAGE_SHA256 "
            "in the task definition",
            file=sys.stderr,
        )
    print(
        f"run_venv: {package} {version} from {uri} (sha256 {expected}, {state})",
        file=sys.stderr,
        flush=True,
    )
    return run_job(venv / "bin" / "python", package, job_args)


if __name__ == "__main__":
    sys.exit(main())
