"""Container builder tier: real buildah/podman, local stand-ins for the pulled images.

No Docker engine and no registry are reachable from the test machines, so this module:

* installs Debian's buildah/podman/runc/iptables/debootstrap (and, for the arm64 path,
  qemu-user-static) when they are missing (we run as root on a fresh machine in CI; nothing
  is installed by hand),
* points buildah/podman at our own containers.conf/storage.conf (runc, because crun rejects
  this machine's cgroup layout; ulimits the VM can actually grant),
* builds stand-ins for the images the generated Dockerfiles name, tagged with those exact
  names, so every Dockerfile builds unchanged with ``--pull=never``:

  - ``python:3.X-slim-bookworm`` (X = 11, 12, 13), amd64: pyenv's real CPython 3.X in
    /usr/local; for 3.11 also arm64: bookworm's arm64 python3.11 (DEBIAN_SUITE, slim_image)
  - ``public.ecr.aws/lambda/python:3.X`` (X = 11, 12, 13), amd64: pyenv's CPython in /var/lang
  - ``public.ecr.aws/lambda/python:3.11-arm64`` / ``3.13-arm64``: bookworm's arm64 python3.11
    / trixie's arm64 python3.13 behind /var/lang/bin
  - ``ghcr.io/astral-sh/uv:<ver>``, amd64 (arm64 on demand): uv and uvx from the uv wheel,
    FROM scratch

  ``python:3.X-slim-bookworm`` and the uv name are local manifest lists (``podman
  manifest``) over one image per architecture, like the real multi-arch tags: a cross build's ``FROM
  --platform=linux/amd64`` and ``FROM --platform=linux/arm64`` of that one name get the
  matching instance, and ``podman run`` gets the host's.

The project standard: a stand-in is never friendlier than what it stands for. Each stand-in's
comment says what it stands in for and where it still differs.

arm64 images are made without emulation: ``debootstrap --foreign`` unpacks an arm64 root, the
remaining ``.deb`` files are unpacked with ``dpkg-deb``, and ``podman import --arch arm64`` (with
``--change`` for the configuration) turns the tree into an image; nothing arm64 ever RUNs. To
execute an arm64 binary, ``run_arm64`` uses qemu in user mode on an exported root filesystem
(one process, no binfmt_misc handler registered).

Images are only ever built locally; nothing is ever pulled.
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

# tool -> Debian package that provides it.
APT_TOOLS = {
    "buildah": "buildah",
    "podman": "podman",
    "runc": "runc",
    "iptables": "iptables",
    "debootstrap": "debootstrap",
    "newuidmap": "uidmap",
}
# Only the arm64 path needs it; Debian's package registers no binfmt_misc handler.
QEMU_TOOLS = {"qemu-aarch64-static": "qemu-user-static"}
# Kept for callers of the old names.
APT_PACKAGES = list(APT_TOOLS.values())
TOOLS = list(APT_TOOLS)

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "copier-uv-monorepo"
CONF_DIR = CACHE / "containers"
ROOTFS_TAR = CACHE / "bookworm-minbase-python3.tar"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
# The Debian release the ECS images are built on (python:3.X-slim-<suite>).
DEBIAN_SUITE = "bookworm"
# The version the container tests render with by default.
PYTHON_VERSION = "3.11"
ROOTFS_IMAGE = "localhost/bookworm-minbase-python3:stand-in"
# ROOTFS_IMAGE without Debian's own python3: the base of every amd64 stand-in.
NOPYTHON_IMAGE = "localhost/bookworm-minbase-nopython:stand-in"

PYENV_VERSIONS = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
# The real CPython each amd64 stand-in carries (pyenv builds; they link only against libc and
# the shared libraries of this Debian release).
PYENV_PYTHONS = {"3.11": "3.11.7", "3.12": "3.12.1", "3.13": "3.13.0"}
# Debian release whose arm64 python3 is the version: bookworm's is 3.11, trixie's 3.13.
ARM64_SUITES = {"3.11": "bookworm", "3.13": "trixie"}
ARCHES = ("x86_64", "arm64")
OCI_ARCH = {"x86_64": "amd64", "arm64": "arm64"}
# What each name is built for; ensure_* refuses anything else with a clear message.
SLIM_STANDINS = {("3.11", "x86_64"), ("3.12", "x86_64"), ("3.13", "x86_64"), ("3.11", "arm64")}
LAMBDA_STANDINS = {
    ("3.11", "x86_64"),
    ("3.12", "x86_64"),
    ("3.13", "x86_64"),
    ("3.11", "arm64"),
    ("3.13", "arm64"),
}

STANDIN_LABEL = "org.copier-uv-monorepo.stand-in"


class BuilderUnavailable(RuntimeError):
    """The builder tier cannot run on this machine (message says why)."""


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    kw.setdefault("check", True)
    kw.setdefault("text", True)
    kw.setdefault("env", builder_env())
    return subprocess.run(cmd, **kw)


def builder_env() -> dict[str, str]:
    env = dict(os.environ)
    env["CONTAINERS_CONF"] = str(CONF_DIR / "containers.conf")
    env["CONTAINERS_STORAGE_CONF"] = str(CONF_DIR / "storage.conf")
    env["BUILDAH_FORMAT"] = "docker"  # keeps HEALTHCHECK/SHELL-style metadata; matches Docker
    env.pop("DOCKER_HOST", None)
    return env


# --------------------------------------------------------------------------- setup

_lock_depth = 0


@contextlib.contextmanager
def setup_lock() -> Iterator[None]:
    """The machine-wide setup lock (pytest-xdist workers build stand-ins at the same time).

    Re-entrant within a process: ensure_* functions take it and call each other.
    """
    global _lock_depth
    if _lock_depth:
        _lock_depth += 1
        try:
            yield
        finally:
            _lock_depth -= 1
        return
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "setup.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _lock_depth = 1
        try:
            yield
        finally:
            _lock_depth = 0


def _have(tool: str) -> bool:
    return shutil.which(tool) is not None or any(
        Path(d, tool).exists() for d in ("/usr/sbin", "/sbin", "/usr/bin")
    )


def ensure_tools(tools: dict[str, str] = APT_TOOLS) -> None:
    """apt-get install the Debian packages providing any missing tool (root, CI machines)."""
    missing = {tool: pkg for tool, pkg in tools.items() if not _have(tool)}
    if not missing:
        return
    names = ", ".join(missing)
    if os.geteuid() != 0:
        raise BuilderUnavailable(f"missing {names} and not root to apt-get them")
    if shutil.which("apt-get") is None:
        raise BuilderUnavailable(f"missing {names} and no apt-get on this machine")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(
        [
            "apt-get",
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            *sorted(set(missing.values())),
        ],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )


def write_config() -> None:
    CONF_DIR.mkdir(parents=True, exist_ok=True)
    hard_nofile = _hard_nofile()
    (CONF_DIR / "containers.conf").write_text(
        "[containers]\n"
        # The VM has no CAP_SYS_RESOURCE: asking for more than the hard limit fails every RUN.
        f'default_ulimits = ["nofile={hard_nofile}:{hard_nofile}", "nproc=32768:32768"]\n'
        "[engine]\n"
        # crun rejects this machine's cgroup layout; runc works.
        'runtime = "runc"\n'
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n'
    )
    (CONF_DIR / "storage.conf").write_text(
        "[storage]\n"
        'driver = "overlay"\n'
        f'graphroot = "{CACHE / "storage"}"\n'
        f'runroot = "{CACHE / "run"}"\n'
    )


def _hard_nofile() -> int:
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return 1048576 if hard == resource.RLIM_INFINITY else int(hard)


def image_exists(name: str) -> bool:
    return _run(["podman", "image", "exists", name], check=False).returncode == 0


def debian_mirror() -> str:
    """The Debian archive this machine's apt uses (deb822 or one-line sources)."""
    sources = sorted(Path("/etc/apt/sources.list.d").glob("*")) + [Path("/etc/apt/sources.list")]
    for path in sources:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        for uri in re.findall(r"^URIs:\s*(\S+)", text, re.M) + re.findall(
            r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)", text, re.M
        ):
            if uri.rstrip("/").endswith("/debian"):
                return uri.rstrip("/")
    return "http://deb.debian.org/debian"


def ensure_rootfs_tarball() -> Path:
    """debootstrap once per machine (about a minute), cached under ~/.cache."""
    if ROOTFS_TAR.exists():
        return ROOTFS_TAR
    target = CACHE / "rootfs-build"
    shutil.rmtree(target, ignore_errors=True)
    subprocess.run(
        [
            "debootstrap",
            "--variant=minbase",
            "--include=python3,ca-certificates",
            DEBIAN_SUITE,
            str(target),
            debian_mirror(),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return _pack_rootfs(target, ROOTFS_TAR)


def _pack_rootfs(root: Path, out: Path) -> Path:
    """Tar a debootstrapped root into out (atomically), without apt's lists and archives."""
    # apt lists and caches are dead weight in every stand-in image.
    for sub in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for p in (root / sub).glob("*"):
            if p.is_file():
                p.unlink()
    tmp = out.with_suffix(".tmp")
    subprocess.run(["tar", "-C", str(root), "--numeric-owner", "-cf", str(tmp), "."], check=True)
    tmp.rename(out)
    shutil.rmtree(root, ignore_errors=True)
    return out


def arm64_rootfs_tar(suite: str) -> Path:
    """An arm64 Debian root (minbase + python3) made without running anything arm64; cached.

    ``debootstrap --foreign`` only unpacks the essential packages (its second stage would run
    arm64 code); every other downloaded ``.deb`` (python3.X among them) is unpacked here with
    ``dpkg-deb``, keeping the merged-/usr symlinks. No maintainer script runs: the tree is what
    the packages ship, which is all a stand-in needs. About 20 s per suite.
    """
    out = CACHE / f"{suite}-arm64-minbase-python3.tar"
    if out.exists():
        return out
    root = CACHE / f"rootfs-build-{suite}-arm64"
    shutil.rmtree(root, ignore_errors=True)
    subprocess.run(
        [
            "debootstrap",
            "--foreign",
            "--arch=arm64",
            "--variant=minbase",
            "--include=python3",
            suite,
            str(root),
            debian_mirror(),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    archives = root / "var/cache/apt/archives"
    for deb in sorted(archives.glob("*.deb")):
        fsys = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
        subprocess.run(
            ["tar", "-x", "--keep-directory-symlink", "-C", str(root)],
            stdin=fsys.stdout,
            check=True,
        )
        if fsys.wait() != 0:
            raise BuilderUnavailable(f"dpkg-deb could not read {deb.name}")
        deb.unlink()
    # debootstrap's own state, and its /proc symlink to the host's.
    shutil.rmtree(root / "debootstrap", ignore_errors=True)
    if (root / "proc").is_symlink():
        (root / "proc").unlink()
        (root / "proc").mkdir()
    return _pack_rootfs(root, out)


def pyenv_prefix(version: str) -> Path:
    """pyenv's CPython for a minor version (3.11 -> /root/.pyenv/versions/3.11.7)."""
    full = PYENV_PYTHONS.get(version)
    prefix = PYENV_VERSIONS / (full or version)
    if full is None or not (prefix / "bin" / f"python{version}").exists():
        raise BuilderUnavailable(f"no pyenv CPython {full or version} under {PYENV_VERSIONS}")
    return prefix


def cpython_tarball(version: str) -> Path:
    """pyenv's CPython as an install tree (bin/, include/, lib/) to ADD under a prefix; cached.

    Trimmed the way the official python image trims its /usr/local: no test suites
    (``test``, ``tests``, ``idle_test``), no ``.pyc``/``.pyo``, no static ``libpython*.a``; and
    no third-party site-packages (pyenv's global Python holds this machine's tools), which also
    leaves out pip: stricter than the real image, which ships pip. ``bin/`` holds
    ``python3.X`` plus ``python3`` and ``python`` links to it.
    """
    prefix = pyenv_prefix(version)
    out = CACHE / f"cpython-{prefix.name}.tar"
    if out.exists():
        return out
    stdlib = f"lib/python{version}"

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        rel = info.name
        parts = rel.split("/")
        if rel.startswith(stdlib + "/"):
            if {"test", "tests", "idle_test"} & set(parts[2:]) and info.isdir():
                return None
            if rel.startswith(f"{stdlib}/site-packages/"):
                return None
        if rel.endswith((".pyc", ".pyo")) or re.fullmatch(r".*/libpython.*\.a", rel):
            return None
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    tmp = out.with_suffix(".tmp")
    with tarfile.open(tmp, "w") as tf:
        tf.add(prefix / "bin" / f"python{version}", f"bin/python{version}", filter=keep)
        for link in ("python3", "python"):
            info = tarfile.TarInfo(f"bin/{link}")
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, f"python{version}", 0o777
            tf.addfile(info)
        tf.add(prefix / "include", "include", filter=keep)
        for lib in sorted((prefix / "lib").glob("libpython3*.so*")):
            tf.add(lib, f"lib/{lib.name}", filter=keep)
        tf.add(prefix / stdlib, stdlib, filter=keep)
    tmp.rename(out)
    return out


# --------------------------------------------------------------------------- stand-in recipes

# Paths (fnmatch patterns; a directory pattern covers what is below it) removed from every
# Lambda stand-in: Lambda images have no apt/dpkg, and this machine reaches Debian's mirror,
# so a Debian package manager there would be friendlier than any real Lambda base.
PACKAGE_MANAGER_PATHS = (
    "/usr/bin/apt",
    "/usr/bin/apt-*",
    "/usr/bin/dpkg",
    "/usr/bin/dpkg-*",
    "/usr/sbin/dpkg-*",
    "/usr/bin/debconf*",
    "/usr/sbin/debconf*",
    "/usr/lib/apt",
    "/usr/lib/dpkg",
    "/usr/share/dpkg",
    "/usr/share/debconf",
    "/etc/apt",
    "/etc/dpkg",
    "/var/lib/apt",
    "/var/lib/dpkg",
    "/var/cache/apt",
    "/var/cache/debconf",
    "/etc/cron.daily/apt-compat",
    "/etc/cron.daily/dpkg",
)
# AL2023-minimal (the base of the 3.12+ Lambda images) has no findutils
# (aws-lambda-base-images#196); AL2 (3.11) has.
FINDUTILS_PATHS = ("/usr/bin/find", "/usr/bin/xargs")


def lambda_removed_paths(version: str) -> tuple[str, ...]:
    al2023 = tuple(int(p) for p in version.split(".")) >= (3, 12)
    return PACKAGE_MANAGER_PATHS + (FINDUTILS_PATHS if al2023 else ())


def _matches(path: str, patterns: tuple[str, ...]) -> bool:
    return any(
        fnmatch.fnmatchcase(path, p) or fnmatch.fnmatchcase(path, p + "/*") for p in patterns
    )


SSL_ENV = "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"
# What the real Lambda Python images set (aws-lambda-base-images, Dockerfile.python3.X).
LAMBDA_ENV = {
    "LANG": "en_US.UTF-8",
    "TZ": ":/etc/localtime",
    "PATH": "/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin",
    "LD_LIBRARY_PATH": (
        "/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:"
        "/opt/lib"
    ),
    "LAMBDA_TASK_ROOT": "/var/task",
    "LAMBDA_RUNTIME_DIR": "/var/runtime",
}
# The official python:3.X-slim-bookworm's configuration (minus GPG_KEY).
SLIM_PATH = "/usr/local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Debian's own python3 goes: the real slim image has none (only /usr/local's), and the Lambda
# images have theirs under /var/lang only. The libraries it pulled in (libssl3, libffi8,
# libsqlite3, ...) stay, as they do in the real slim image.
NOPYTHON_CONTAINERFILE = """\
FROM {rootfs}
RUN dpkg-query -W -f '${{db:Status-Status}} ${{Package}}\\n' 'python3*' 'libpython3*' \\
    | sed -n 's/^installed //p' | xargs dpkg --purge --force-depends >/dev/null 2>&1 \\
 && test ! -e /usr/bin/python3 && test ! -e /usr/lib/python3.11
"""

# Stands in for python:3.X-slim-bookworm (amd64): Debian bookworm with CPython 3.X installed
# in /usr/local (a shared libpython found through ldconfig, as in the real image). Differs:
# the interpreter is pyenv's build of 3.X (see PYENV_PYTHONS) rather than the latest patch
# release; no pip (stricter); minbase package set, plus the host's CA bundle and
# SSL_CERT_FILE (TLS to the package index goes through an intercepting proxy here).
SLIM_CONTAINERFILE = """\
FROM {nopython}
ADD cpython.tar /usr/local/
RUN ldconfig && /usr/local/bin/python3 -c "import sys; assert sys.version_info[:2] == {info}"
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV PATH={path} LANG=C.UTF-8 PYTHON_VERSION={full} {ssl}
CMD ["python3"]
"""

# Stands in for public.ecr.aws/lambda/python:3.X (x86_64): the real image's configuration,
# CPython 3.X (pyenv's) in /var/lang with libpython in /var/lang/lib found through
# LD_LIBRARY_PATH as in the real image, no package manager, and for 3.12+ no find/xargs
# (AL2023-minimal). Differs: the root is Debian bookworm (glibc 2.36, newer than AL2's 2.26 and
# AL2023's 2.34, so a wheel needing a newer glibc than Lambda's would still install and import
# here), and the runtime interface client is PyPI's (see LAMBDA_BOOTSTRAP). Adds the host CA
# bundle.
LAMBDA_CONTAINERFILE = """\
FROM {nopython}
ADD cpython.tar /var/lang/
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ADD runtime.tar /var/runtime/
COPY bootstrap /var/runtime/bootstrap
COPY aws-lambda-rie /usr/local/bin/aws-lambda-rie
COPY lambda-entrypoint.sh /lambda-entrypoint.sh
RUN mkdir -p /var/task /opt/bin && rm -rf {removed}
ENV {env} {ssl}
WORKDIR /var/task
ENTRYPOINT ["/lambda-entrypoint.sh"]
"""

# The real Lambda base's entry contract (aws-lambda-base-images, lambda-entrypoint.sh): CMD is
# the handler name, exported as _HANDLER; without AWS_LAMBDA_RUNTIME_API (anywhere but AWS) the
# Runtime Interface Emulator at /usr/local/bin/aws-lambda-rie starts the runtime and answers
# invocations over HTTP on :8080; on AWS the runtime starts directly. Same text as the real one.
LAMBDA_ENTRYPOINT = """\
#!/bin/sh
if [ $# -ne 1 ]; then
  echo "entrypoint requires the handler name to be the first argument" 1>&2
  exit 142
fi
export _HANDLER="$1"

RUNTIME_ENTRYPOINT=/var/runtime/bootstrap
if [ -z "${AWS_LAMBDA_RUNTIME_API}" ]; then
  exec /usr/local/bin/aws-lambda-rie $RUNTIME_ENTRYPOINT
else
  exec $RUNTIME_ENTRYPOINT
fi
"""

# Stands in for the real image's /var/runtime/bootstrap: AWS's runtime interface client
# (awslambdaric, under /var/runtime) on the image's own Python, resolving the handler string
# from _HANDLER, with the working directory (WORKDIR /var/task) on sys.path and no site
# processing of it, as on AWS. Differs: the real image's bootstrap is AWS's own build of the
# client, and this one is PyPI's awslambdaric (LAMBDA_RIC_VERSION).
LAMBDA_BOOTSTRAP = """\
#!/bin/sh
export AWS_EXECUTION_ENV=AWS_Lambda_python{version}
export PYTHONPATH=/var/runtime
exec /var/lang/bin/python{version} -m awslambdaric "$_HANDLER"
"""

# Stands in for ghcr.io/astral-sh/uv:<ver> (amd64 and arm64 instances, see ensure_uv): FROM
# scratch with /uv and /uvx from the uv wheel, the same binaries the official image carries.
UV_CONTAINERFILE = """\
FROM scratch
COPY uv uvx /
"""


def slim_image(python_version: str = PYTHON_VERSION, arch: str = "x86_64") -> str:
    """The ECS base name; one name for every architecture (a manifest list, see ensure_slim)."""
    _check_arch(arch)
    return f"python:{python_version}-slim-{DEBIAN_SUITE}"


def slim_instance(python_version: str, arch: str) -> str:
    """The single-architecture image behind slim_image(python_version) for arch."""
    return f"localhost/stand-in/python:{python_version}-slim-{DEBIAN_SUITE}-{OCI_ARCH[arch]}"


def lambda_image(python_version: str = PYTHON_VERSION, arch: str = "x86_64") -> str:
    _check_arch(arch)
    suffix = "-arm64" if arch == "arm64" else ""
    return f"public.ecr.aws/lambda/python:{python_version}{suffix}"


def uv_image(uv_version: str) -> str:
    return f"ghcr.io/astral-sh/uv:{uv_version}"


def _check_arch(arch: str) -> None:
    if arch not in ARCHES:
        raise ValueError(f"arch must be one of {ARCHES}, not {arch!r}")


def _file_key(path: Path) -> bytes:
    """Content key of a stand-in input: small files by content, big cached ones by stat."""
    st = path.stat()
    if st.st_size > 1 << 20:
        return f"{path}:{st.st_size}:{st.st_mtime_ns}".encode()
    return path.read_bytes()


def _standin_digest(recipe: str, files: dict[str, str | bytes | Path]) -> str:
    h = hashlib.sha256(recipe.encode())
    for fname in sorted(files):
        content = files[fname]
        data = _file_key(content) if isinstance(content, Path) else content
        h.update(fname.encode() + (data if isinstance(data, bytes) else data.encode()))
    return h.hexdigest()[:16]


def _standin_is_current(name: str, digest: str) -> bool:
    """True if the image is ours and up to date, or a real image someone pulled (use that)."""
    if not image_exists(name):
        return False
    labels = inspect(name).get("Config", {}).get("Labels") or {}
    return labels.get(STANDIN_LABEL, digest) == digest


def _build_standin(
    name: str, containerfile: str, files: dict[str, str | bytes | Path], arch: str = "x86_64"
) -> bool:
    """buildah bud a stand-in unless current; True if it was (re)built.

    An arm64 one must be COPY/ENV/LABEL only: a RUN there fails (nothing emulates arm64).
    """
    digest = _standin_digest(f"{containerfile}{arch}", files)
    if _standin_is_current(name, digest):
        return False
    ctx = CACHE / "standin-ctx" / name.replace("/", "_").replace(":", "_")
    shutil.rmtree(ctx, ignore_errors=True)
    ctx.mkdir(parents=True)
    (ctx / "Containerfile").write_text(f"{containerfile}LABEL {STANDIN_LABEL}={digest}\n")
    for fname, content in files.items():
        dest = ctx / fname
        if isinstance(content, Path):
            # Hard links: the CPython tarballs are big, and buildah only reads them.
            try:
                os.link(content, dest)
            except OSError:
                shutil.copy2(content, dest)
        elif isinstance(content, bytes):
            dest.write_bytes(content)
        else:
            dest.write_text(content)
        if fname.endswith(".sh") or fname in ("uv", "uvx", "bootstrap", "aws-lambda-rie"):
            dest.chmod(0o755)
    _run(
        [
            "buildah",
            "bud",
            "--pull=never",
            "--layers",
            "--platform",
            f"linux/{OCI_ARCH[arch]}",
            "-q",
            "-t",
            name,
            "-f",
            str(ctx / "Containerfile"),
            str(ctx),
        ],
        stdout=subprocess.DEVNULL,
    )
    shutil.rmtree(ctx, ignore_errors=True)
    return True


@dataclass
class RootfsEdit:
    """How an arm64 stand-in's root differs from the Debian root it is made from."""

    drop: tuple[str, ...] = ()  # fnmatch patterns of absolute paths (directories: recursive)
    files: dict[str, tuple[bytes, int]] | None = None  # path -> (content, mode)
    symlinks: dict[str, str] | None = None  # path -> target
    dirs: tuple[str, ...] = ()


def _derive_tar(base: Path, out: Path, edit: RootfsEdit) -> None:
    """Copy a root filesystem tarball with edits applied, streaming (nothing is unpacked)."""
    files = edit.files or {}
    symlinks = edit.symlinks or {}
    replaced = set(files) | set(symlinks)
    with tarfile.open(base) as src, tarfile.open(out, "w") as dst:
        for member in src:
            name = member.name[2:] if member.name.startswith("./") else member.name
            path = "/" + name.strip("/")
            if path != "/" and (_matches(path, edit.drop) or path in replaced):
                continue
            dst.addfile(member, src.extractfile(member) if member.isreg() else None)

        def new(path: str, kind: bytes, mode: int) -> tarfile.TarInfo:
            info = tarfile.TarInfo("." + path)
            info.type, info.mode, info.mtime = kind, mode, 0
            info.uname = info.gname = "root"
            return info

        for path in edit.dirs:
            dst.addfile(new(path, tarfile.DIRTYPE, 0o755))
        for path, target in symlinks.items():
            info = new(path, tarfile.SYMTYPE, 0o777)
            info.linkname = target
            dst.addfile(info)
        for path, (data, mode) in files.items():
            info = new(path, tarfile.REGTYPE, mode)
            info.size = len(data)
            dst.addfile(info, io.BytesIO(data))


def _import_standin(
    name: str, base: Path, edit: RootfsEdit, changes: list[str], arch: str = "arm64"
) -> bool:
    """podman import a root derived from base, with Dockerfile-style changes; no RUN at all.

    The way to layer on an arm64 root here: running anything arm64 fails (no emulator).
    True if the image was (re)made.
    """
    recipe = json.dumps([str(base), _file_key(base).decode(), repr(edit), changes, arch])
    digest = _standin_digest(recipe, {})
    if _standin_is_current(name, digest):
        return False
    tmp = CACHE / f"import-{digest}.tar"
    try:
        _derive_tar(base, tmp, edit)
        cmd = ["podman", "import", "--arch", OCI_ARCH[arch], "--os", "linux"]
        for change in [*changes, f"LABEL {STANDIN_LABEL}={digest}"]:
            cmd += ["--change", change]
        _run([*cmd, str(tmp), name], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    finally:
        tmp.unlink(missing_ok=True)
    return True


def _env_change(env: dict[str, str]) -> list[str]:
    return [f"ENV {key}={value}" for key, value in env.items()]


def _ensure_nopython() -> None:
    if not image_exists(ROOTFS_IMAGE):
        _run(
            ["podman", "import", str(ensure_rootfs_tarball()), ROOTFS_IMAGE],
            stdout=subprocess.DEVNULL,
        )
    _build_standin(NOPYTHON_IMAGE, NOPYTHON_CONTAINERFILE.format(rootfs=ROOTFS_IMAGE), {})


def _publish_manifest(name: str, instances: list[str]) -> None:
    """Point name at a local manifest list over instances, unless it already lists them.

    buildah 1.28 resolves such a name per stage platform with --pull=never (FROM
    --platform=linux/arm64 gets the arm64 instance), and podman run/inspect get the host's.
    """
    digests = {
        _run(
            ["podman", "image", "inspect", "--format", "{{.Digest}}", i], capture_output=True
        ).stdout.strip(): i
        for i in instances
    }
    probe = _run(["podman", "manifest", "inspect", name], capture_output=True, check=False)
    if probe.returncode == 0:
        listed = {m["digest"] for m in json.loads(probe.stdout).get("manifests", [])}
        if listed == set(digests):
            return
    if probe.returncode == 0:
        # A stale list (an instance was rebuilt or added): the instances keep their own names.
        _run(["podman", "manifest", "rm", name], capture_output=True)
    elif image_exists(name):
        # An image tagged with the name by an older setup: only the tag goes.
        _run(["podman", "untag", name, name], capture_output=True)
    _run(["podman", "manifest", "create", name], stdout=subprocess.DEVNULL)
    for instance in digests.values():
        _run(
            ["podman", "manifest", "add", name, f"containers-storage:{instance}"],
            stdout=subprocess.DEVNULL,
        )


def ensure_slim(version: str = PYTHON_VERSION, arch: str = "x86_64") -> str:
    """Build the python:X-slim-bookworm stand-in for arch if needed; returns the name.

    The name is a manifest list over every architecture built so far for it.
    """
    _check_arch(arch)
    if (version, arch) not in SLIM_STANDINS:
        raise BuilderUnavailable(f"no stand-in for {slim_image(version)} on {arch}")
    with setup_lock():
        if arch == "x86_64":
            _ensure_nopython()
            info = tuple(int(p) for p in version.split("."))
            _build_standin(
                slim_instance(version, arch),
                SLIM_CONTAINERFILE.format(
                    nopython=NOPYTHON_IMAGE,
                    info=info,
                    path=SLIM_PATH,
                    full=PYENV_PYTHONS[version],
                    ssl=SSL_ENV,
                ),
                {"cpython.tar": cpython_tarball(version), "ca-certificates.crt": HOST_CA},
            )
        else:
            _ensure_arm64_slim(version)
        instances = [slim_instance(version, a) for a in ARCHES if (version, a) in SLIM_STANDINS]
        _publish_manifest(slim_image(version), [i for i in instances if image_exists(i)])
    return slim_image(version)


def _ensure_arm64_slim(version: str) -> None:
    """Stands in for python:3.11-slim-bookworm (arm64): bookworm arm64 with Debian's python3.11.

    /usr/local/bin/python3.11 (+ python3, python) link to Debian's /usr/bin/python3.11, so a
    venv made by the amd64 builder (bin/python -> /usr/local/bin/python3.11) resolves here;
    /usr/bin/python3 is removed so nothing can lean on Debian's generic name. Differs: Debian's
    3.11 patch release and Debian's stdlib layout (/usr/lib/python3.11, dist-packages) instead
    of a /usr/local build. Built by podman import: it can never RUN anything.
    """
    edit = RootfsEdit(
        drop=("/usr/bin/python3",),
        files={"/etc/ssl/certs/ca-certificates.crt": (HOST_CA.read_bytes(), 0o644)},
        dirs=("/etc/ssl", "/etc/ssl/certs"),
        symlinks={
            f"/usr/local/bin/python{version}": f"/usr/bin/python{version}",
            "/usr/local/bin/python3": f"python{version}",
            "/usr/local/bin/python": f"python{version}",
        },
    )
    changes = [
        *_env_change({"PATH": SLIM_PATH, "LANG": "C.UTF-8"}),
        f"ENV {SSL_ENV}",
        'CMD ["python3"]',
    ]
    _import_standin(
        slim_instance(version, "arm64"), arm64_rootfs_tar(ARM64_SUITES[version]), edit, changes
    )


def ensure_lambda(version: str = PYTHON_VERSION, arch: str = "x86_64") -> str:
    """Build the public.ecr.aws/lambda/python:X[-arm64] stand-in if needed; returns the name."""
    _check_arch(arch)
    if (version, arch) not in LAMBDA_STANDINS:
        raise BuilderUnavailable(f"no stand-in for {lambda_image(version, arch)}")
    name = lambda_image(version, arch)
    with setup_lock():
        entry = lambda_entry_files(version, arch)
        if arch == "x86_64":
            _ensure_nopython()
            _build_standin(
                name,
                LAMBDA_CONTAINERFILE.format(
                    nopython=NOPYTHON_IMAGE,
                    removed=" ".join(lambda_removed_paths(version)),
                    env=" ".join(f"{k}={v}" for k, v in LAMBDA_ENV.items()),
                    ssl=SSL_ENV,
                ),
                {
                    "cpython.tar": cpython_tarball(version),
                    "ca-certificates.crt": HOST_CA,
                    "runtime.tar": lambda_ric_tarball(version, arch),
                    "bootstrap": entry["/var/runtime/bootstrap"],
                    "aws-lambda-rie": entry["/usr/local/bin/aws-lambda-rie"],
                    "lambda-entrypoint.sh": entry["/lambda-entrypoint.sh"],
                },
            )
        else:
            # Stands in for public.ecr.aws/lambda/python:3.X-arm64: the real configuration,
            # layout (/var/lang/bin/python3.X, /var/task, /var/runtime) and entry contract
            # (the entrypoint, the arm64 emulator, the runtime interface client for aarch64),
            # no package manager, no find/xargs for 3.12+. Differs: a Debian arm64 root
            # (ARM64_SUITES) whose python3.X /var/lang/bin links to, Debian's patch release.
            # Built by podman import: nothing arm64 RUNs.
            ric_files, ric_dirs = _tree_entries(lambda_ric_dir(version, arch), "/var/runtime")
            edit = RootfsEdit(
                drop=(*lambda_removed_paths(version), "/usr/bin/python3"),
                files={
                    "/etc/ssl/certs/ca-certificates.crt": (HOST_CA.read_bytes(), 0o644),
                    **{path: (Path(src).read_bytes(), 0o755) for path, src in entry.items()},
                    **ric_files,
                },
                symlinks={
                    f"/var/lang/bin/python{version}": f"/usr/bin/python{version}",
                    "/var/lang/bin/python3": f"python{version}",
                    "/var/lang/bin/python": f"python{version}",
                },
                dirs=(
                    "/etc/ssl",
                    "/etc/ssl/certs",
                    "/var/lang",
                    "/var/lang/bin",
                    "/var/lang/lib",
                    "/var/task",
                    "/var/runtime",
                    "/opt/bin",
                    *ric_dirs,
                ),
            )
            changes = [
                *_env_change(LAMBDA_ENV),
                f"ENV {SSL_ENV}",
                "WORKDIR /var/task",
                'ENTRYPOINT ["/lambda-entrypoint.sh"]',
            ]
            _import_standin(name, arm64_rootfs_tar(ARM64_SUITES[version]), edit, changes)
    return name


# --------------------------------------------------------------------------- Lambda entry contract

# The Runtime Interface Emulator ships, as static binaries for both architectures, inside the
# aws-sam-cli wheel (samcli/local/rapid/aws-lambda-rie-<arch>); only the wheel is downloaded.
AWS_SAM_CLI_VERSION = "1.170.0"
# AWS's runtime interface client for Python (manylinux2014 wheels; it needs simplejson).
LAMBDA_RIC_VERSION = "4.2.2"
# pip, pinned, only to download the aws-sam-cli wheel (uv has no download command).
PIP_VERSION = "25.3"
RIE_ARCH = {"x86_64": "x86_64", "arm64": "arm64"}
WHEEL_MACHINE = {"x86_64": "x86_64", "arm64": "aarch64"}


def rie_binary(arch: str = "x86_64") -> Path:
    """The Runtime Interface Emulator for arch, extracted from the aws-sam-cli wheel; cached.

    Downloads the wheel alone (no dependencies, nothing installed) the first time.
    Raises BuilderUnavailable if the wheel does not hold the binary.
    """
    _check_arch(arch)
    folder = CACHE / f"aws-sam-cli-{AWS_SAM_CLI_VERSION}"
    out = folder / f"aws-lambda-rie-{RIE_ARCH[arch]}"
    if out.exists():
        return out
    with setup_lock():
        wheels = sorted(folder.glob("aws_sam_cli-*.whl"))
        if not wheels:
            subprocess.run(
                [
                    "uvx", "--from", f"pip=={PIP_VERSION}", "pip", "download", "--quiet",
                    "--no-deps", "--only-binary=:all:", "--dest", str(folder),
                    f"aws-sam-cli=={AWS_SAM_CLI_VERSION}",
                ],
                check=True,
            )  # fmt: skip
            wheels = sorted(folder.glob("aws_sam_cli-*.whl"))
        member = f"samcli/local/rapid/aws-lambda-rie-{RIE_ARCH[arch]}"
        with zipfile.ZipFile(wheels[0]) as wheel:
            if member not in wheel.namelist():
                raise BuilderUnavailable(f"{wheels[0].name} holds no {member}")
            tmp = out.with_suffix(".tmp")
            tmp.write_bytes(wheel.read(member))
        tmp.chmod(0o755)
        tmp.rename(out)
    return out


def lambda_ric_dir(version: str, arch: str) -> Path:
    """awslambdaric and its dependencies for (Python version, arch), as /var/runtime holds them.

    uv's equivalent of ``pip install --target DIR --platform manylinux2014_<machine>
    --only-binary=:all: --python-version <version> awslambdaric==<pin>``, byte-compiled by
    pyenv's CPython of that version (bytecode depends on the version, not the machine), as
    the real image ships its runtime: an uncompiled one would add its compile time to every
    cold start under a read-only root. Cached.
    """
    _check_arch(arch)
    target = CACHE / f"awslambdaric-{LAMBDA_RIC_VERSION}-py{version}-{arch}"
    if (target / "awslambdaric" / "__pycache__").is_dir():
        return target
    with setup_lock():
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run(
            [
                "uv", "pip", "install", "--quiet", "--no-build", "--no-compile",
                "--python", sys.executable,
                "--python-platform", f"{WHEEL_MACHINE[arch]}-manylinux_2_17",
                "--python-version", version, "--target", str(tmp),
                f"awslambdaric=={LAMBDA_RIC_VERSION}",
            ],
            check=True,
        )  # fmt: skip
        (tmp / ".lock").unlink(missing_ok=True)  # uv's own, left in every --target
        python = pyenv_prefix(version) / "bin" / f"python{version}"
        subprocess.run(
            [str(python), "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash",
             str(tmp)],
            check=True,
        )  # fmt: skip
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    return target


def lambda_ric_tarball(version: str, arch: str) -> Path:
    """lambda_ric_dir as a tarball to ADD under /var/runtime (root-owned); cached."""
    folder = lambda_ric_dir(version, arch)
    out = folder.with_name(folder.name + ".tar")
    if not out.exists() or out.stat().st_mtime < folder.stat().st_mtime:
        tmp = out.with_suffix(".tmp")

        def owned_by_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            return info

        with tarfile.open(tmp, "w") as tf:
            for child in sorted(folder.iterdir()):
                tf.add(child, child.name, filter=owned_by_root)
        tmp.rename(out)
    return out


def lambda_entry_files(version: str, arch: str) -> dict[str, Path]:
    """Image path -> host file of the entry contract: the entrypoint, the bootstrap, the RIE."""
    folder = CACHE / "lambda-entry" / version
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "/lambda-entrypoint.sh": LAMBDA_ENTRYPOINT,
        "/var/runtime/bootstrap": LAMBDA_BOOTSTRAP.format(version=version),
    }
    out = {}
    for path, text in files.items():
        host = folder / Path(path).name
        if not host.exists() or host.read_text() != text:
            host.write_text(text)
        out[path] = host
    out["/usr/local/bin/aws-lambda-rie"] = rie_binary(arch)
    return out


def _tree_entries(folder: Path, under: str) -> tuple[dict[str, tuple[bytes, int]], list[str]]:
    """A host folder as RootfsEdit files and dirs below the image path `under`."""
    files: dict[str, tuple[bytes, int]] = {}
    dirs: list[str] = []
    for path in sorted(folder.rglob("*")):
        inside = f"{under}/{path.relative_to(folder)}"
        if path.is_dir():
            dirs.append(inside)
        else:
            files[inside] = (path.read_bytes(), 0o755 if path.stat().st_mode & 0o111 else 0o644)
    return files, dirs


def _uv_binaries(uv_version: str, arch: str = "x86_64") -> dict[str, Path]:
    """uv and uvx from the PyPI wheel for arch: the same binaries the official image carries."""
    target = CACHE / (f"uv-{uv_version}" if arch == "x86_64" else f"uv-{uv_version}-{arch}")
    if not (target / "bin" / "uv").exists():
        shutil.rmtree(target, ignore_errors=True)
        platform = [] if arch == "x86_64" else ["--python-platform", "aarch64-manylinux_2_28"]
        subprocess.run(
            [
                "uv",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--python",
                sys.executable,
                *platform,
                "--target",
                str(target),
                f"uv=={uv_version}",
            ],
            check=True,
        )
    bins = {name: target / "bin" / name for name in ("uv", "uvx")}
    missing = [name for name, p in bins.items() if not p.exists()]
    if missing:
        raise BuilderUnavailable(f"uv=={uv_version} wheel installed without {missing}")
    return bins


def uv_instance(uv_version: str, arch: str) -> str:
    """The single-architecture image behind uv_image(uv_version) for arch."""
    return f"localhost/stand-in/uv:{uv_version}-{OCI_ARCH[arch]}"


def ensure_uv(uv_version: str, arch: str = "x86_64") -> str:
    """Build the ghcr.io/astral-sh/uv:<ver> stand-in for arch if needed; returns the name.

    Like the real multi-arch tag, the name is a manifest list (over the architectures built so
    far): buildah 1.28 looks a COPY --from image up for the stage's platform, and an
    amd64-only image is "not found" from an arm64 stage. The arm64 instance carries the
    aarch64 binaries of the uv wheel; made with COPY only, it never RUNs.
    """
    _check_arch(arch)
    with setup_lock():
        _build_standin(
            uv_instance(uv_version, arch),
            UV_CONTAINERFILE,
            _uv_binaries(uv_version, arch),
            arch=arch,
        )
        instances = [uv_instance(uv_version, a) for a in ARCHES]
        _publish_manifest(uv_image(uv_version), [i for i in instances if image_exists(i)])
    return uv_image(uv_version)


def ensure_images(
    uv_version: str,
    python_version: str = PYTHON_VERSION,
    *,
    slim: tuple[str, ...] = ("x86_64",),
    lambdas: tuple[str, ...] = ("x86_64",),
) -> None:
    """The stand-ins the container tests use by default (x86_64, one Python version).

    Anything else is built on first use by ensure_slim/ensure_lambda, so a session only pays
    for what it uses.
    """
    with setup_lock():
        for arch in slim:
            ensure_slim(python_version, arch)
        for arch in lambdas:
            ensure_lambda(python_version, arch)
        ensure_uv(uv_version)


def setup(uv_version: str) -> None:
    """Everything the tier needs, idempotent; the first run on a machine takes about a minute.

    Serialised with a file lock: pytest-xdist workers reach this at the same time.
    """
    with setup_lock():
        ensure_tools()
        write_config()
        ensure_images(uv_version)


def template_uv_version() -> str:
    """The template's one uv pin (extensions/context.py), so stand-ins match the Dockerfiles."""
    text = (Path(__file__).resolve().parents[1] / "extensions" / "context.py").read_text()
    for line in text.splitlines():
        if line.startswith("UV_VERSION = "):
            return line.split("=", 1)[1].strip().strip('"')
    raise RuntimeError("UV_VERSION not found in extensions/context.py")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run the container tier)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def container_builder() -> ModuleType:
    """Set up the builder tier once per session; skip with the reason, but never in CI."""
    if sys.platform != "linux":
        _unavailable(f"container tier needs Linux with buildah/podman, not {sys.platform}")
    try:
        setup(template_uv_version())
    except (BuilderUnavailable, subprocess.CalledProcessError, OSError) as err:
        _unavailable(f"container tier setup failed: {err}")
    return sys.modules[__name__]


@pytest.fixture(scope="session")
def arm64_builder(container_builder: ModuleType) -> ModuleType:
    """The builder tier plus qemu-user-static, for tests that rely on there being NO emulation.

    Fails in CI (skips elsewhere) if this machine has an aarch64 binfmt_misc handler: then a
    RUN in an arm64 stage would silently run emulated, and the arm64 tests would prove nothing.
    """
    if aarch64_binfmt_registered():
        _unavailable(
            "an aarch64 binfmt_misc handler is registered: arm64 tests rely on no emulation"
        )
    try:
        with setup_lock():
            ensure_tools(QEMU_TOOLS)
    except (BuilderUnavailable, subprocess.CalledProcessError, OSError) as err:
        _unavailable(f"qemu-user-static setup failed: {err}")
    return container_builder


# --------------------------------------------------------------------------- arm64, no emulation

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
# ELF64, little endian, e_machine EM_AARCH64 (0xb7): what a handler for aarch64 matches on.
_AARCH64_MAGIC = "7f454c460201010000000000000000000200b700"


def aarch64_binfmt_registered() -> bool:
    """True if binfmt_misc holds an enabled handler for aarch64 ELF binaries.

    Reads /proc/sys/fs/binfmt_misc when it is mounted; when it is not, nothing can be read and
    the answer is False: the "RUN fails with exec format error" test is the real proof.
    """
    status = BINFMT_DIR / "status"
    try:
        if status.exists() and status.read_text().strip() == "disabled":
            return False
        entries = [p for p in BINFMT_DIR.iterdir() if p.name not in ("register", "status")]
    except OSError:
        return False
    for entry in entries:
        try:
            text = entry.read_text()
        except OSError:
            continue
        lines = text.splitlines()
        if not lines or lines[0].strip() != "enabled":
            continue
        magic = next((ln.split()[1] for ln in lines if ln.startswith("magic ")), "")
        if magic.lower().startswith(_AARCH64_MAGIC) or "aarch64" in entry.name:
            return True
    return False


def export_rootfs(image: str, arch: str | None = None, dest: Path | None = None) -> Path:
    """The image's whole filesystem unpacked in a directory (podman create + export).

    Cached by image ID under the cache dir (treat it as read-only), or unpacked into dest (a
    new directory) for throwaway images. With arch, a manifest-list name resolves to that
    architecture's instance.
    """
    if arch:
        image = image_for_arch(image, arch)
    ctr = (
        _run(["podman", "create", "--pull=never", image, "/none"], capture_output=True)
        .stdout.strip()
        .splitlines()[-1]
    )
    try:
        image_id = _run(
            ["podman", "container", "inspect", "--format", "{{.Image}}", ctr], capture_output=True
        ).stdout.strip()
        root = Path(dest) if dest else CACHE / "rootfs" / image_id
        if root.is_dir():
            return root
        if not dest:
            _prune_rootfs_cache()
        # pytest-xdist workers may export the same image at once: each unpacks into its own
        # folder (<id>.<random>), and the first rename wins.
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{root.name}.", dir=root.parent))
        export = subprocess.Popen(
            ["podman", "export", ctr], stdout=subprocess.PIPE, env=builder_env()
        )
        subprocess.run(
            ["tar", "-x", "--numeric-owner", "-C", str(tmp)], stdin=export.stdout, check=True
        )
        if export.wait() != 0:
            raise BuilderUnavailable(f"podman export of {image} failed")
        try:
            tmp.rename(root)
        except OSError:  # another worker's export landed first
            shutil.rmtree(tmp, ignore_errors=True)
        return root
    finally:
        _run(["podman", "rm", "-f", ctr], capture_output=True, check=False)


def list_images(*args: str) -> str:
    """`podman images <args>`'s output. Another xdist worker may remove an image while podman
    lists them (exit 125, seen in CI): then it lists again, up to three times."""
    for attempt in range(3):
        listing = _run(["podman", "images", *args], capture_output=True, check=False)
        if listing.returncode == 0 or attempt == 2:
            listing.check_returncode()
            break
    return listing.stdout


def _prune_rootfs_cache() -> None:
    """Drop exported roots of images that no longer exist (rebuilt stand-ins): ~250 MB each."""
    cached = CACHE / "rootfs"
    if not cached.is_dir():
        return
    ids = set(list_images("-a", "--no-trunc", "--format", "{{.ID}}").replace("sha256:", "").split())
    for entry in cached.iterdir():
        # <id>.<random> folders are exports still being unpacked by another xdist worker.
        if "." not in entry.name and entry.name not in ids:
            shutil.rmtree(entry, ignore_errors=True)


def image_for_arch(name: str, arch: str) -> str:
    """The image ID name stands for on arch: a manifest list's instance, or name itself.

    Needed because podman 4.3's ``create --arch`` does not pick an instance out of a local
    manifest list (it returns the host's); buildah's FROM --platform does.
    """
    probe = _run(["podman", "manifest", "inspect", name], capture_output=True, check=False)
    if probe.returncode != 0:
        return name
    wanted = [
        m["digest"]
        for m in json.loads(probe.stdout).get("manifests", [])
        if m.get("platform", {}).get("architecture") == OCI_ARCH[arch]
    ]
    images = json.loads(list_images("--format", "json"))
    for img in images:
        digests = {img.get("Digest")} | {d.split("@")[-1] for d in img.get("RepoDigests") or []}
        if digests & set(wanted):
            return img["Id"]
    raise BuilderUnavailable(f"{name} lists no local image for {arch}")


def resolve_in_root(root: Path, path: str) -> Path:
    """path as the image would see it, symlinks (absolute ones too) resolved inside root."""
    parts = [p for p in path.split("/") if p]
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == ".":
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = root.joinpath(*resolved, part)
        if candidate.is_symlink():
            hops += 1
            if hops > 40:
                raise OSError(f"too many symlinks resolving {path} in {root}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p] + parts
            continue
        resolved.append(part)
    return root.joinpath(*resolved)


def qemu_aarch64() -> str:
    path = shutil.which("qemu-aarch64-static") or "/usr/bin/qemu-aarch64-static"
    if not Path(path).exists():
        raise BuilderUnavailable("qemu-aarch64-static is missing (use the arm64_builder fixture)")
    return path


def run_arm64(
    rootfs: Path,
    argv: list[str],
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess:
    """Run one arm64 program of rootfs in qemu user mode: no binfmt_misc, no container.

    ``qemu-aarch64-static -L ROOT ROOT/<argv[0]> argv[1:]``: the dynamic loader and libraries
    come from ROOT, and qemu looks absolute paths up in ROOT first. One process only: an exec
    of another arm64 program inside fails (nothing is registered to run it). The environment is
    exactly env (default: a minimal PATH and LANG), never the host's.
    """
    program = resolve_in_root(rootfs, argv[0])
    cmd = [qemu_aarch64(), "-L", str(rootfs), str(program), *argv[1:]]
    env = dict(env) if env is not None else {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    proc = subprocess.run(cmd, env=env, input=stdin, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


# Python that calls lambda_function.handler with the JSON event on stdin and a context object
# carrying what Lambda's does (the request id, the function's name, memory and ARN: Powertools'
# Logger reads them), and prints the answer as the last stdout line.
LAMBDA_REQUEST_ID = "8f5a0c1e-0000-4000-8000-00000000cafe"
CALL_HANDLER = (
    "import json, sys, types; sys.path.insert(0, '/var/task'); import lambda_function;"
    "{checks}"
    "context = types.SimpleNamespace(aws_request_id='" + LAMBDA_REQUEST_ID + "',"
    " function_name='function', memory_limit_in_mb=128,"
    " invoked_function_arn='arn:aws:lambda:eu-west-1:123456789012:function:function');"
    "print(json.dumps(lambda_function.handler(json.loads(sys.stdin.read()), context)))"
)


def call_handler_arm64(root: Path, python: str, event: dict, checks: str = "") -> dict:
    """Call an exported arm64 Lambda image's handler with the image's own Python, in qemu
    user mode, as the runtime would: /var/task first on the path, LAMBDA_TASK_ROOT and LANG
    set as Lambda sets them, a context object as Lambda passes one. `checks` is Python run
    first, after the handler's import.
    """
    code = CALL_HANDLER.format(checks=checks)
    result = run_arm64(
        root,
        [f"/var/lang/bin/python{python}", "-c", code],
        env={"LAMBDA_TASK_ROOT": "/var/task", "LANG": "en_US.UTF-8"},
        stdin=json.dumps(event),
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- build/run


@dataclass
class BuildResult:
    image: str | None
    output: str  # combined stdout/stderr of the build
    steps_total: int
    steps_cached: int

    @property
    def cache_lines(self) -> list[str]:
        return [line for line in self.output.splitlines() if "Using cache" in line]


def build(
    context: Path,
    dockerfile: str | Path,
    *,
    tag: str | None = None,
    build_args: dict[str, str] | None = None,
    target: str | None = None,
    output: Path | None = None,
    extra: list[str] | None = None,
    platform: str = "linux/amd64",
) -> BuildResult:
    """Build as BuildKit would with ``--platform``, on this amd64 machine.

    buildah 1.28 does not predefine BUILDPLATFORM/TARGETPLATFORM for FROM lines, so they are
    passed as build args (BuildKit sets them itself).
    """
    cmd = ["buildah", "bud", "--pull=never", "--layers", "-f", str(Path(context) / dockerfile)]
    cmd += ["--platform", platform]
    build_args = {"BUILDPLATFORM": "linux/amd64", "TARGETPLATFORM": platform, **(build_args or {})}
    for key, value in build_args.items():
        cmd += ["--build-arg", f"{key}={value}"]
    if tag:
        cmd += ["-t", tag]
    if target:
        cmd += ["--target", target]
    if output:
        cmd += ["--output", f"type=local,dest={output}"]
    cmd += [*(extra or []), str(context)]
    proc = _run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"build failed ({' '.join(cmd)}):\n{proc.stdout[-6000:]}")
    steps = [line for line in proc.stdout.splitlines() if "STEP " in line and ": FROM " not in line]
    cached = proc.stdout.count("--> Using cache")
    return BuildResult(image=tag, output=proc.stdout, steps_total=len(steps), steps_cached=cached)


def run(
    image: str,
    *args: str,
    entrypoint: str | None = None,
    env: dict[str, str] | None = None,
    volumes: dict[Path | str, str] | None = None,
    stdin: str | None = None,
    user: str | None = None,
    network: str | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess:
    cmd = ["podman", "run", "--rm", "--pull=never"]
    if stdin is not None:
        cmd.append("-i")
    if entrypoint is not None:
        cmd += ["--entrypoint", entrypoint]
    for key, value in (env or {}).items():
        cmd += ["-e", f"{key}={value}"]
    for host, inside in (volumes or {}).items():
        cmd += ["-v", f"{host}:{inside}"]
    if user:
        cmd += ["--user", user]
    if network:
        cmd += ["--network", network]
    cmd += [image, *args]
    proc = _run(cmd, input=stdin, capture_output=True, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def inspect(image: str) -> dict:
    out = _run(["podman", "image", "inspect", image], capture_output=True).stdout
    return json.loads(out)[0]


def layers(image: str) -> list[str]:
    """Diff IDs of the image's layers, base first."""
    return list(inspect(image)["RootFS"]["Layers"])


def size(image: str) -> int:
    return int(inspect(image)["Size"])


def remove_image(image: str) -> None:
    _run(["podman", "rmi", "-f", image], capture_output=True, check=False)


# --------------------------------------------------------------------------- Docker Engine

# CD builds with BuildKit (docker build through setup-buildx); these let the same command lines
# run here. Debian 12's docker.io (20.10) has BuildKit built into dockerd and no buildx plugin;
# the static docker CLI 28.2 some machine images carry at /usr/local/bin/docker wants buildx
# for BuildKit, so Debian's own CLI is used by full path.
DOCKER_TOOLS = {"dockerd": "docker.io"}
DOCKER_CLI = "/usr/bin/docker"
ENGINE_DIR = CACHE / "dockerd"


class Engine:
    """A private Docker Engine: its own data root, exec root and socket under the test cache.

    Started by start_engine and stopped by stop(); nothing else on the machine talks to it,
    and it never touches a system dockerd's socket or storage.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.socket = root / "docker.sock"
        self.process: subprocess.Popen | None = None
        self._lock: io.TextIOWrapper | None = None

    def env(self) -> dict[str, str]:
        """os.environ with the CLI pointed at this engine, BuildKit on, a private CLI config."""
        env = dict(os.environ)
        env.update(
            DOCKER_HOST=f"unix://{self.socket}",
            DOCKER_BUILDKIT="1",
            DOCKER_CONFIG=str(self.root / "cli-config"),
        )
        return env

    def docker(self, *args: str, **kw) -> subprocess.CompletedProcess:
        """Run Debian's docker CLI against this engine; raises AssertionError with the output."""
        check = kw.pop("check", True)
        kw.setdefault("capture_output", True)
        proc = subprocess.run([DOCKER_CLI, *args], env=self.env(), text=True, check=False, **kw)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"docker {' '.join(args)} exited {proc.returncode}:\n"
                f"{(proc.stdout or '')[-6000:]}\n{(proc.stderr or '')[-6000:]}"
            )
        return proc

    def version(self) -> str:
        """The engine's version (20.10.24+dfsg1 on Debian 12). Its BuildKit reports none."""
        return self.docker("version", "--format", "{{.Server.Version}}").stdout.strip()

    def load(self, podman_name: str, name: str | None = None) -> str:
        """Copy a podman image into the engine (``podman save | docker load``), as name.

        Skipped when the engine already holds that name with the same stand-in label, so a
        persistent data root loads each stand-in once. Returns the name.
        """
        name = name or podman_name
        wanted = (inspect(podman_name).get("Config", {}).get("Labels") or {}).get(STANDIN_LABEL)
        have = self.docker("image", "inspect", name, check=False)
        if have.returncode == 0 and wanted:
            labels = json.loads(have.stdout)[0].get("Config", {}).get("Labels") or {}
            if labels.get(STANDIN_LABEL) == wanted:
                return name
        save = subprocess.Popen(
            ["podman", "save", podman_name], stdout=subprocess.PIPE, env=builder_env()
        )
        loaded = self.docker("load", stdin=save.stdout)
        if save.wait() != 0:
            raise BuilderUnavailable(f"podman save {podman_name} failed")
        image_id = re.findall(r"Loaded image(?: ID)?: (\S+)", loaded.stdout)
        if not image_id:
            raise BuilderUnavailable(f"docker load of {podman_name} said: {loaded.stdout}")
        if image_id[-1] != name:
            self.docker("tag", image_id[-1], name)
        return name

    def layers(self, image: str) -> list[str]:
        """Diff IDs of the image's layers, base first."""
        out = self.docker("image", "inspect", image).stdout
        return list(json.loads(out)[0]["RootFS"]["Layers"])

    def copy_out(self, image: str, path: str, dest: Path) -> Path:
        """path of the image (any architecture: nothing runs) unpacked into dest/<basename>."""
        ctr = self.docker("create", image, "/none").stdout.strip().splitlines()[-1]
        try:
            dest.mkdir(parents=True, exist_ok=True)
            cp = subprocess.Popen(
                [DOCKER_CLI, "cp", f"{ctr}:{path}", "-"], stdout=subprocess.PIPE, env=self.env()
            )
            subprocess.run(["tar", "-x", "-C", str(dest)], stdin=cp.stdout, check=True)
            if cp.wait() != 0:
                raise AssertionError(f"docker cp {image}:{path} failed")
        finally:
            self.docker("rm", "-f", ctr, check=False)
        return dest / Path(path).name

    def stop(self) -> None:
        """SIGTERM the engine (SIGKILL after 60 s) and release the machine-wide engine lock."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        # dockerd bind-mounts its data root onto itself and leaves it when it fails to start.
        data = str(self.root / "data")
        if any(line.split()[1] == data for line in Path("/proc/mounts").read_text().splitlines()):
            subprocess.run(["umount", data], check=False, capture_output=True)
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def _stop_orphan(root: Path) -> None:
    """Stop a dockerd a killed session left running on root (the engine lock is ours, so no
    live session uses it): a new one would refuse to start over its pidfile."""
    try:
        pid = int((root / "dockerd.pid").read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return
    if str(root / "data").encode() not in cmdline:
        return
    os.kill(pid, 15)
    deadline = time.monotonic() + 60
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.5)


def start_engine(root: Path = ENGINE_DIR, timeout: float = 90) -> Engine:
    """Install docker.io if needed and start a private dockerd; returns it once it answers.

    ``dockerd --data-root <root>/data --exec-root <root>/exec -H unix://<root>/docker.sock``,
    with an empty config file (the machine's /etc/docker/daemon.json stays out) and its own
    pidfile. One engine per machine at a time: another test session waits for the lock (they
    would share the docker0 bridge and its iptables chains). Raises BuilderUnavailable with
    the engine's last log lines if it does not answer within timeout seconds.
    """
    with setup_lock():
        ensure_tools(DOCKER_TOOLS)
    if not Path(DOCKER_CLI).exists():
        raise BuilderUnavailable(f"docker.io is installed but {DOCKER_CLI} is missing")
    engine = Engine(root)
    root.mkdir(parents=True, exist_ok=True)
    # Held open (and flock'd) until stop(): the lock lives as long as the engine.
    engine._lock = open(root / "engine.lock", "w")  # noqa: SIM115
    fcntl.flock(engine._lock, fcntl.LOCK_EX)
    try:
        (root / "cli-config").mkdir(exist_ok=True)
        (root / "cli-config" / "config.json").write_text("{}\n")
        (root / "daemon.json").write_text("{}\n")
        _stop_orphan(root)
        engine.socket.unlink(missing_ok=True)
        with open(root / "dockerd.log", "w") as log:
            engine.process = subprocess.Popen(
                [
                    shutil.which("dockerd") or "/usr/sbin/dockerd",
                    "--data-root",
                    str(root / "data"),
                    "--exec-root",
                    str(root / "exec"),
                    "--pidfile",
                    str(root / "dockerd.pid"),
                    "--config-file",
                    str(root / "daemon.json"),
                    "-H",
                    f"unix://{engine.socket}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while engine.docker("version", check=False).returncode != 0:
            if engine.process.poll() is not None or time.monotonic() > deadline:
                log_lines = (root / "dockerd.log").read_text(errors="replace").splitlines()
                tail = " | ".join(line.strip() for line in log_lines[-3:])
                raise BuilderUnavailable(f"dockerd did not start (its log ends: {tail})")
            time.sleep(0.5)
    except BaseException:
        engine.stop()
        raise
    return engine
# --------------------------------------------------------------------------- Lambda invocations

# The path every Lambda image's emulator answers invocations on.
INVOKE_PATH = "/2015-03-31/functions/function/invocations"
_INIT_REPORT = re.compile(r"INIT REPORT\(durationMs: ?([0-9.]+)\)")


@dataclass
class Invocation:
    """One invocation through the Runtime Interface Emulator: HTTP status, answer, logs."""

    status: int
    answer: object  # the JSON response (the handler's return value, or Lambda's error object)
    log: str  # the emulator's and the runtime's output so far

    @property
    def init_ms(self) -> float | None:
        """The init duration the emulator reported (INIT REPORT), None before any init."""
        found = _INIT_REPORT.findall(self.log)
        return float(found[-1]) if found else None


def _post(port: int, event: object, timeout: float) -> tuple[int, object]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{INVOKE_PATH}", data=json.dumps(event).encode(), method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as err:
        status, body = err.code, err.read()
    return status, json.loads(body) if body.strip() else None


def _wait_for_port(port: int, alive, timeout: float) -> None:
    import socket
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise AssertionError("the Lambda emulator exited before it listened")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"the Lambda emulator did not listen on {port} in {timeout} s")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def lambda_container(
    image: str,
    *args: str,
    env: dict[str, str] | None = None,
    volumes: dict[Path | str, str] | None = None,
    timeout: float = 60,
) -> Iterator[Callable[[object], Invocation]]:
    """Run a Lambda image as `docker run -p 9000:8080 IMAGE` would, read-only, and yield
    invoke(event) -> Invocation over HTTP.

    The image's own ENTRYPOINT and CMD (args replace CMD) start its emulator; the root
    filesystem is read-only, with podman's tmpfs /tmp as Lambda's writable /tmp. The
    container is removed on exit. AssertionError if the emulator never listens.
    """
    port = _free_port()
    cmd = ["podman", "run", "-d", "--rm", "--pull=never", "--read-only"]
    cmd += ["-p", f"127.0.0.1:{port}:8080"]
    for key, value in (env or {}).items():
        cmd += ["-e", f"{key}={value}"]
    for host, inside in (volumes or {}).items():
        cmd += ["-v", f"{host}:{inside}"]
    ctr = _run([*cmd, image, *args], capture_output=True).stdout.strip().splitlines()[-1]

    def alive() -> bool:
        state = _run(
            ["podman", "container", "inspect", "--format", "{{.State.Running}}", ctr],
            capture_output=True,
            check=False,
        )
        return state.stdout.strip() == "true"

    def logs() -> str:
        out = _run(["podman", "logs", ctr], capture_output=True, check=False)
        return out.stdout + out.stderr

    def invoke(event: object) -> Invocation:
        status, answer = _post(port, event, timeout)
        return Invocation(status, answer, logs())

    try:
        _wait_for_port(port, alive, timeout)
        yield invoke
    finally:
        _run(["podman", "rm", "-f", "-t", "0", ctr], capture_output=True, check=False)


@contextlib.contextmanager
def lambda_rie_arm64(
    root: Path,
    python: str,
    handler: str = "lambda_function.handler",
    env: dict[str, str] | None = None,
    task: Path | None = None,
    timeout: float = 120,
) -> Iterator[Callable[[object], Invocation]]:
    """An exported arm64 Lambda image run the way its entrypoint runs it, under user-mode qemu.

    No binfmt_misc handler runs arm64 programs here, so the host's x86_64 emulator (the same
    release as the image's) starts ``qemu-aarch64-static -L ROOT ROOT/var/lang/bin/python<v>
    -m awslambdaric <handler>`` with the image's /var/runtime on PYTHONPATH and ROOT/var/task
    as working directory (or task), as the image's bootstrap does. Yields invoke(event) -> Invocation.
    Init durations measure qemu, not Graviton.
    """
    port, api_port = _free_port(), _free_port()
    program = resolve_in_root(root, f"/var/lang/bin/python{python}")
    log = tempfile.TemporaryFile(mode="w+")
    child_env = {
        **LAMBDA_ENV,
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": "/var/runtime",
        "_HANDLER": handler,
        **(env or {}),
    }
    proc = subprocess.Popen(
        [
            str(rie_binary("x86_64")),
            "--runtime-interface-emulator-address",
            f"127.0.0.1:{port}",
            "--runtime-api-address",
            f"127.0.0.1:{api_port}",
            qemu_aarch64(),
            "-L",
            str(root),
            str(program),
            "-m",
            "awslambdaric",
            handler,
        ],
        cwd=task or root / "var" / "task",
        env=child_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )

    def logs() -> str:
        log.flush()
        log.seek(0)
        return log.read()

    def invoke(event: object) -> Invocation:
        status, answer = _post(port, event, timeout)
        return Invocation(status, answer, logs())

    try:
        _wait_for_port(port, lambda: proc.poll() is None, timeout)
        yield invoke
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
