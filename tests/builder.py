"""Container builder tier: real buildah/podman, local stand-ins for the pulled images.

No Docker engine and no registry are reachable from the test machines, so this module:

* installs Debian's buildah/podman/runc/iptables/debootstrap when they are missing (we run
  as root on a fresh machine in CI; nothing is installed by hand),
* points buildah/podman at our own containers.conf/storage.conf (runc, because crun rejects
  this machine's cgroup layout; ulimits the VM can actually grant),
* builds stand-ins for the images the generated Dockerfiles name (``python:X-slim``, the
  Lambda base, ``ghcr.io/astral-sh/uv:<ver>``) from a debootstrap rootfs and the uv wheel,
  so every Dockerfile builds unchanged with ``--pull=never``.

Images are tagged with the exact names the Dockerfiles use; nothing is ever pulled.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

APT_PACKAGES = ["buildah", "podman", "runc", "iptables", "debootstrap", "uidmap"]
TOOLS = ["buildah", "podman", "runc", "iptables", "debootstrap"]

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "copier-uv-monorepo"
CONF_DIR = CACHE / "containers"
ROOTFS_TAR = CACHE / "bookworm-minbase-python3.tar"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
# Debian bookworm ships Python 3.11: the only version the stand-in images can carry.
PYTHON_VERSION = "3.11"
ROOTFS_IMAGE = "localhost/bookworm-minbase-python3:stand-in"


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


def ensure_tools() -> None:
    missing = [t for t in TOOLS if shutil.which(t) is None and not Path(f"/usr/sbin/{t}").exists()]
    if not missing:
        return
    if os.geteuid() != 0:
        raise BuilderUnavailable(f"missing {', '.join(missing)} and not root to apt-get them")
    if shutil.which("apt-get") is None:
        raise BuilderUnavailable(f"missing {', '.join(missing)} and no apt-get on this machine")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *APT_PACKAGES],
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
            "bookworm",
            str(target),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    # apt lists and caches are dead weight in every stand-in image.
    for sub in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for p in (target / sub).glob("*"):
            if p.is_file():
                p.unlink()
    tmp = ROOTFS_TAR.with_suffix(".tmp")
    subprocess.run(["tar", "-C", str(target), "--numeric-owner", "-cf", str(tmp), "."], check=True)
    tmp.rename(ROOTFS_TAR)
    shutil.rmtree(target, ignore_errors=True)
    return ROOTFS_TAR


# Stand-ins for the real images: same interpreter paths, env and workdir as the originals.
SLIM_CONTAINERFILE = """\
FROM {rootfs}
RUN ln -sf /usr/bin/python3.11 /usr/local/bin/python3.11 \\
 && ln -sf python3.11 /usr/local/bin/python3 \\
 && ln -sf python3.11 /usr/local/bin/python
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt LANG=C.UTF-8
CMD ["python3"]
"""

# The real Lambda base runs /lambda-entrypoint.sh with CMD as the handler name. The stand-in
# entrypoint imports that handler and calls it with the JSON event read from stdin, which is
# what a Lambda invocation exercises (import path, handler name, return value).
LAMBDA_CONTAINERFILE = """\
FROM {rootfs}
RUN mkdir -p /var/lang/bin /var/task /var/runtime \\
 && ln -sf /usr/bin/python3.11 /var/lang/bin/python3.11 \\
 && ln -sf python3.11 /var/lang/bin/python3 \\
 && ln -sf python3.11 /var/lang/bin/python
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY fake_rie.py /var/runtime/fake_rie.py
COPY lambda-entrypoint.sh /lambda-entrypoint.sh
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt LANG=C.UTF-8 \\
    PATH=/var/lang/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \\
    LAMBDA_TASK_ROOT=/var/task LAMBDA_RUNTIME_DIR=/var/runtime
WORKDIR /var/task
ENTRYPOINT ["/lambda-entrypoint.sh"]
"""

FAKE_RIE = """\
import importlib, json, os, sys
sys.path.insert(0, os.environ.get("LAMBDA_TASK_ROOT", "/var/task"))
module_name, _, func = sys.argv[1].rpartition(".")
handler = getattr(importlib.import_module(module_name), func)
raw = sys.stdin.read().strip()
print(json.dumps(handler(json.loads(raw) if raw else {}, None)))
"""

LAMBDA_ENTRYPOINT = """\
#!/bin/sh
exec /var/lang/bin/python3 /var/runtime/fake_rie.py "$@"
"""

UV_CONTAINERFILE = """\
FROM scratch
COPY uv uvx /
"""


def slim_image(python_version: str = PYTHON_VERSION) -> str:
    return f"python:{python_version}-slim"


def lambda_image(python_version: str = PYTHON_VERSION, arch: str = "x86_64") -> str:
    suffix = "-arm64" if arch == "arm64" else ""
    return f"public.ecr.aws/lambda/python:{python_version}{suffix}"


def uv_image(uv_version: str) -> str:
    return f"ghcr.io/astral-sh/uv:{uv_version}"


STANDIN_LABEL = "org.copier-uv-monorepo.stand-in"


def _standin_digest(containerfile: str, files: dict[str, str | bytes | Path]) -> str:
    h = hashlib.sha256(containerfile.encode())
    for fname in sorted(files):
        content = files[fname]
        data = content.read_bytes() if isinstance(content, Path) else content
        h.update(fname.encode() + (data if isinstance(data, bytes) else data.encode()))
    return h.hexdigest()[:16]


def _standin_is_current(name: str, digest: str) -> bool:
    """True if the image is ours and up to date, or a real image someone pulled (use that)."""
    if not image_exists(name):
        return False
    labels = inspect(name).get("Config", {}).get("Labels") or {}
    return labels.get(STANDIN_LABEL, digest) == digest


def _build_standin(name: str, containerfile: str, files: dict[str, str | bytes | Path]) -> None:
    digest = _standin_digest(containerfile, files)
    if _standin_is_current(name, digest):
        return
    ctx = CACHE / "standin-ctx" / name.replace("/", "_").replace(":", "_")
    shutil.rmtree(ctx, ignore_errors=True)
    ctx.mkdir(parents=True)
    (ctx / "Containerfile").write_text(f"{containerfile}LABEL {STANDIN_LABEL}={digest}\n")
    for fname, content in files.items():
        dest = ctx / fname
        if isinstance(content, Path):
            shutil.copy2(content, dest)
        elif isinstance(content, bytes):
            dest.write_bytes(content)
        else:
            dest.write_text(content)
        if fname.endswith(".sh") or fname in ("uv", "uvx"):
            dest.chmod(0o755)
    _run(
        [
            "buildah",
            "bud",
            "--pull=never",
            "--layers",
            "-q",
            "-t",
            name,
            "-f",
            str(ctx / "Containerfile"),
            str(ctx),
        ],
        stdout=subprocess.DEVNULL,
    )


def _uv_binaries(uv_version: str) -> dict[str, Path]:
    """uv and uvx from the PyPI wheel: the same binaries the official image carries."""
    target = CACHE / f"uv-{uv_version}"
    if not (target / "bin" / "uv").exists():
        shutil.rmtree(target, ignore_errors=True)
        subprocess.run(
            [
                "uv",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--python",
                sys.executable,
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


def ensure_images(uv_version: str, python_version: str = PYTHON_VERSION) -> None:
    if not image_exists(ROOTFS_IMAGE):
        _run(
            ["podman", "import", str(ensure_rootfs_tarball()), ROOTFS_IMAGE],
            stdout=subprocess.DEVNULL,
        )
    common = {"ca-certificates.crt": HOST_CA}
    _build_standin(
        slim_image(python_version), SLIM_CONTAINERFILE.format(rootfs=ROOTFS_IMAGE), common
    )
    # x86_64 only: this machine cannot run arm64 images, so the -arm64 tag is never stood in.
    _build_standin(
        lambda_image(python_version),
        LAMBDA_CONTAINERFILE.format(rootfs=ROOTFS_IMAGE),
        {**common, "fake_rie.py": FAKE_RIE, "lambda-entrypoint.sh": LAMBDA_ENTRYPOINT},
    )
    _build_standin(uv_image(uv_version), UV_CONTAINERFILE, _uv_binaries(uv_version))


def setup(uv_version: str) -> None:
    """Everything the tier needs, idempotent; the first run on a machine takes about a minute.

    Serialised with a file lock: pytest-xdist workers reach this at the same time.
    """
    import fcntl

    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "setup.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
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


@pytest.fixture(scope="session")
def container_builder() -> ModuleType:
    """Set up the builder tier once per session; skip with the reason, but never in CI."""
    reason = None
    if sys.platform != "linux":
        reason = f"container tier needs Linux with buildah/podman, not {sys.platform}"
    else:
        try:
            setup(template_uv_version())
        except (BuilderUnavailable, subprocess.CalledProcessError, OSError) as err:
            reason = f"container tier setup failed: {err}"
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI must run the container tier)")
        pytest.skip(reason)
    return sys.modules[__name__]


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
) -> BuildResult:
    cmd = ["buildah", "bud", "--pull=never", "--layers", "-f", str(Path(context) / dockerfile)]
    for key, value in (build_args or {}).items():
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
