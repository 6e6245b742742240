"""The container tier's stand-in base images are as strict as what they stand for, and real.

A stand-in that is friendlier than the real image (a tool the real one lacks, an emulator
that quietly runs arm64 code) lets a Dockerfile pass here and fail on AWS. These tests pin the
properties the generated Dockerfiles must not lean on, and prove that the arm64 stand-ins
really are arm64 and that nothing on this machine emulates them.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from types import ModuleType

import artifacts
import builder
import pytest

container_builder = builder.container_builder
arm64_builder = builder.arm64_builder

pytestmark = [pytest.mark.slow, pytest.mark.containers]

LAMBDA_STANDINS = sorted(builder.LAMBDA_STANDINS)
ARM64 = [
    ("lambda", "3.11"),
    ("lambda", "3.13"),
    ("slim", "3.11"),
]
# Where each kind keeps its interpreter.
PYTHON_PATH = {"lambda": "/var/lang/bin/python{v}", "slim": "/usr/local/bin/python{v}"}
FORBIDDEN_AL2023 = {"find", "xargs", "apt", "apt-get", "dpkg", "dpkg-deb", "microdnf", "yum"}


def _image(kind: str, version: str, arch: str) -> str:
    ensure = builder.ensure_lambda if kind == "lambda" else builder.ensure_slim
    return ensure(version, arch)


def _rootfs(kind: str, version: str, arch: str) -> Path:
    name = _image(kind, version, arch)
    return builder.export_rootfs(name, arch=arch)


def _executables(root: Path) -> dict[str, list[str]]:
    """basename -> paths (inside the image) of every program: executable files or symlinks
    in any bin/, sbin/ or libexec/ directory (merged-/usr links included)."""
    found: dict[str, list[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath).name not in ("bin", "sbin", "libexec"):
            continue
        for name in filenames + [d for d in dirnames if (Path(dirpath) / d).is_symlink()]:
            path = Path(dirpath) / name
            try:
                mode = path.lstat().st_mode
            except OSError:
                continue
            if stat.S_ISLNK(mode) or mode & 0o111:
                found.setdefault(name, []).append("/" + str(path.relative_to(root)))
    return found


# --------------------------------------------------------------------------- Lambda


@pytest.mark.parametrize(
    ("version", "arch"),
    [("3.12", "x86_64"), ("3.13", "x86_64"), ("3.13", "arm64")],
    ids=lambda v: v,
)
def test_al2023_lambda_standins_have_no_find_xargs_or_package_manager(
    version: str, arch: str, arm64_builder: ModuleType
) -> None:
    """AL2023-minimal (Lambda 3.12+) has no findutils and only an offline-useless microdnf."""
    present = FORBIDDEN_AL2023 & set(_executables(_rootfs("lambda", version, arch)))
    assert not present, f"{builder.lambda_image(version, arch)} has {sorted(present)}"
    if arch == "x86_64":
        shell = arm64_builder.run(
            builder.lambda_image(version, arch),
            "-c",
            "command -v find xargs apt-get dpkg microdnf; echo END",
            entrypoint="/bin/sh",
        )
        assert shell.stdout.split() == ["END"], shell.stdout


def test_al2_lambda_standin_has_find_but_no_package_manager(container_builder: ModuleType) -> None:
    """Lambda 3.11 is Amazon Linux 2: findutils yes; apt/dpkg never (it has yum, not apt)."""
    found = _executables(_rootfs("lambda", "3.11", "x86_64"))
    assert "find" in found and "xargs" in found
    present = {"apt", "apt-get", "dpkg"} & set(found)
    assert not present, f"{builder.lambda_image('3.11')} has {sorted(present)}"


@pytest.mark.parametrize(("version", "arch"), LAMBDA_STANDINS, ids=lambda v: v)
def test_lambda_standins_carry_the_real_configuration(
    version: str, arch: str, arm64_builder: ModuleType
) -> None:
    name = _image("lambda", version, arch)
    info = builder.inspect(name)
    config = info["Config"]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert {k: env.get(k) for k in builder.LAMBDA_ENV} == builder.LAMBDA_ENV
    assert config["WorkingDir"] == "/var/task"
    assert config["Entrypoint"] == ["/lambda-entrypoint.sh"]
    assert info["Architecture"] == builder.OCI_ARCH[arch]
    root = builder.export_rootfs(name, arch=arch)
    for link in (f"python{version}", "python3"):
        python = builder.resolve_in_root(root, f"/var/lang/bin/{link}")
        assert artifacts.elf_machine(python) == {"x86_64": "x86_64", "arm64": "aarch64"}[arch]
    # No Debian python3 behind /var/lang's back.
    assert not os.path.lexists(root / "usr/bin/python3")


# A handler that reports what the runtime gave it, and whether a .pth file next to it ran: on
# AWS /var/task is on sys.path but not a site directory, so it must not have.
PROBE_APP = """\
import os, sys
def handler(event, context):
    return {
        "version": list(sys.version_info[:2]),
        "got": event,
        "exe": sys.executable,
        "handler": os.environ.get("_HANDLER"),
        "pth_ran": "PTH_RAN" in os.environ,
        "request_id": context.aws_request_id,
    }
"""


def _probe_task(folder: Path) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "app.py").write_text(PROBE_APP)
    (folder / "probe.pth").write_text("import os; os.environ['PTH_RAN'] = '1'\n")
    folder.chmod(0o755)
    for path in folder.iterdir():
        path.chmod(0o644)
    return folder


def _check_probe_answer(answer: builder.Invocation, version: str) -> None:
    assert answer.status == 200, answer.log
    got = answer.answer
    assert got["version"] == [int(p) for p in version.split(".")]
    assert got["got"] == {"n": 1} and got["handler"] == "app.handler"
    assert got["exe"].startswith("/var/lang/bin/")
    assert got["request_id"], got
    assert got["pth_ran"] is False, "the task folder must not be a site directory"
    assert answer.init_ms is not None and answer.init_ms > 0, answer.log


@pytest.mark.parametrize(("version", "arch"), LAMBDA_STANDINS, ids=lambda v: v)
def test_lambda_standins_carry_the_real_entry_contract(
    version: str, arch: str, arm64_builder: ModuleType
) -> None:
    """The emulator, the runtime interface client for the image's machine and Python, the
    entrypoint and bootstrap, where the real image has them."""
    root = _rootfs("lambda", version, arch)
    machine = {"x86_64": "x86_64", "arm64": "aarch64"}[arch]
    assert artifacts.elf_machine(root / "usr/local/bin/aws-lambda-rie") == machine
    runtime = root / "var" / "runtime"
    assert (runtime / "awslambdaric" / "__main__.py").is_file()
    assert (runtime / "simplejson").is_dir()
    tag = f"cpython-{version.replace('.', '')}"
    natives = [p for p in runtime.rglob("*.so") if tag in p.name]
    assert natives and {artifacts.elf_machine(p) for p in natives} == {machine}, natives
    entrypoint = (root / "lambda-entrypoint.sh").read_text()
    assert 'export _HANDLER="$1"' in entrypoint
    assert "exec /usr/local/bin/aws-lambda-rie $RUNTIME_ENTRYPOINT" in entrypoint
    bootstrap = (runtime / "bootstrap").read_text()
    assert f"/var/lang/bin/python{version} -m awslambdaric" in bootstrap
    for program in ("lambda-entrypoint.sh", "var/runtime/bootstrap", "usr/local/bin/aws-lambda-rie"):
        assert (root / program).stat().st_mode & 0o111, program


@pytest.mark.parametrize("version", ["3.11", "3.12", "3.13"])
def test_x86_lambda_standins_invoke_a_handler_over_http(
    version: str, container_builder: ModuleType, tmp_path: Path
) -> None:
    """`docker run -p 9000:8080 IMAGE app.handler`, read-only: the entrypoint starts the
    emulator, the client resolves the handler, and .pth files in the task folder stay inert."""
    task = _probe_task(tmp_path / "task")
    with container_builder.lambda_container(
        builder.ensure_lambda(version, "x86_64"), "app.handler", volumes={task: "/var/task:ro"}
    ) as invoke:
        answer = invoke({"n": 1})
    _check_probe_answer(answer, version)


def test_lambda_entrypoint_wants_one_handler_name(container_builder: ModuleType) -> None:
    """As the real entrypoint: no handler (no CMD) is refused with its message and code 142."""
    image = builder.ensure_lambda("3.13", "x86_64")
    refused = container_builder.run(image, "a.handler", "extra", check=False)
    assert refused.returncode == 142
    assert "entrypoint requires the handler name" in refused.stderr


# --------------------------------------------------------------------------- ECS slim


@pytest.mark.parametrize("version", ["3.11", "3.12", "3.13"])
def test_slim_standins_carry_real_cpython_in_usr_local(
    version: str, container_builder: ModuleType
) -> None:
    name = builder.ensure_slim(version, "x86_64")
    assert name == f"python:{version}-slim-{builder.DEBIAN_SUITE}" == builder.slim_image(version)
    uv = builder.CACHE / f"uv-{builder.template_uv_version()}" / "bin" / "uv"
    script = (
        "set -e; for p in python3 python python$1; do /usr/local/bin/$p -c"
        " 'import sys; print(\".\".join(map(str, sys.version_info[:2])))'; done;"
        " test ! -e /usr/local/lib/python$1/test && test ! -e /usr/bin/python3 && echo NOTEST;"
        " UV_PYTHON_DOWNLOADS=never uv venv -q --python /usr/local/bin/python3 /opt/venv;"
        " /opt/venv/bin/python -c 'import sys, ssl, sqlite3, ctypes; print(sys.version_info[:2])'"
    )
    out = container_builder.run(
        name, "-c", script, "sh", version, entrypoint="/bin/sh", volumes={uv: "/bin/uv:ro"}
    ).stdout.split("\n")
    major, minor = version.split(".")
    assert out[:5] == [version, version, version, "NOTEST", f"({major}, {minor})"], out
    assert builder.inspect(name)["Architecture"] == "amd64"


# --------------------------------------------------------------------------- arm64


@pytest.mark.parametrize(("kind", "version"), ARM64, ids=lambda v: v)
def test_arm64_standins_are_arm64(kind: str, version: str, arm64_builder: ModuleType) -> None:
    name = _image(kind, version, "arm64")
    instance = builder.slim_instance(version, "arm64") if kind == "slim" else name
    assert builder.inspect(instance)["Architecture"] == "arm64"
    root = builder.export_rootfs(name, arch="arm64")
    python = builder.resolve_in_root(root, PYTHON_PATH[kind].format(v=version))
    assert artifacts.elf_machine(python) == "aarch64"


def test_run_in_an_arm64_stage_fails_because_nothing_emulates(
    arm64_builder: ModuleType, tmp_path: Path
) -> None:
    assert not builder.aarch64_binfmt_registered()
    base = builder.ensure_lambda("3.13", "arm64")
    (tmp_path / "Dockerfile").write_text(f"FROM {base}\nRUN true\n")
    with pytest.raises(AssertionError, match="exec format error"):
        builder.build(tmp_path, "Dockerfile", platform="linux/arm64")


@pytest.mark.parametrize(("kind", "version"), ARM64, ids=lambda v: v)
def test_run_arm64_runs_the_standins_python_in_user_mode_qemu(
    kind: str, version: str, arm64_builder: ModuleType, tmp_path: Path
) -> None:
    root = _rootfs(kind, version, "arm64")
    code = (
        "import platform, sys, _ctypes, _ssl, json, zlib;"
        " print(json.dumps([platform.machine(), list(sys.version_info[:2])]))"
    )
    python = PYTHON_PATH[kind].format(v=version)
    out = builder.run_arm64(root, [python, "-c", code]).stdout
    assert json.loads(out) == ["aarch64", [int(p) for p in version.split(".")]]

    if kind == "lambda":
        # The image's own runtime interface client, started by the host's emulator through
        # qemu the way the image's bootstrap starts it.
        task = _probe_task(tmp_path / "task")
        with builder.lambda_rie_arm64(root, version, "app.handler", task=task) as invoke:
            answer = invoke({"n": 1})
        # qemu runs /var/lang/bin/python3.X's target as a host path: ROOT/usr/bin/python3.X.
        assert answer.answer["exe"] == f"{root}/usr/bin/python{version}", answer.answer
        answer.answer["exe"] = f"/var/lang/bin/python{version}"
        _check_probe_answer(answer, version)


CROSS_DOCKERFILE = """\
FROM --platform=$BUILDPLATFORM {slim} AS builder
COPY --from={uv} /uv /bin/uv
RUN uname -m > /built-on && python3 -c "import platform; print(platform.machine())" >> /built-on \\
 && uv --version >> /built-on

FROM {final_from}
COPY --from=builder /built-on /built-on
{final_extra}"""


def _cross_build(
    tmp_path: Path, final_from: str, tag: str, slim: str, uv: str, final_extra: str = ""
) -> tuple[dict, Path]:
    (tmp_path / "Dockerfile").write_text(
        CROSS_DOCKERFILE.format(slim=slim, uv=uv, final_from=final_from, final_extra=final_extra)
    )
    builder.build(
        tmp_path,
        "Dockerfile",
        tag=tag,
        platform="linux/arm64",
    )
    try:
        info = builder.inspect(tag)
        return info, builder.export_rootfs(tag, dest=tmp_path / "rootfs")
    finally:
        builder.remove_image(tag)


def test_one_slim_name_serves_both_stages_of_a_cross_build(
    arm64_builder: ModuleType, tmp_path: Path
) -> None:
    """Builder stage on amd64 (it RUNs), final stage arm64, both FROM the same name."""
    builder.ensure_slim("3.11", "x86_64")
    slim = builder.ensure_slim("3.11", "arm64")
    uv = builder.ensure_uv(builder.template_uv_version())
    info, root = _cross_build(
        tmp_path, f"--platform=$TARGETPLATFORM {slim}", "localhost/standins-cross", slim, uv
    )
    assert info["Architecture"] == "arm64"
    built_on = (root / "built-on").read_text().split("\n")
    assert built_on[:2] == ["x86_64", "x86_64"] and built_on[2].startswith("uv ")
    assert artifacts.elf_machine(builder.resolve_in_root(root, "/usr/local/bin/python3")) == "aarch64"
    # podman run (no platform asked) gets the host's instance.
    machine = builder.run(
        slim, "python3", "-c", "import platform; print(platform.machine())"
    ).stdout
    assert machine.strip() == "x86_64"


def test_unpinned_final_stage_inherits_the_build_platform(
    arm64_builder: ModuleType, tmp_path: Path
) -> None:
    """buildah 1.28: a final FROM without --platform, after a $BUILDPLATFORM stage, takes the
    amd64 instance yet labels the image arm64. Why the Dockerfiles pin it (DL3065 ignored)."""
    builder.ensure_slim("3.11", "x86_64")
    slim = builder.ensure_slim("3.11", "arm64")
    uv = builder.ensure_uv(builder.template_uv_version())
    info, root = _cross_build(tmp_path, slim, "localhost/standins-cross-unpinned", slim, uv)
    machine = artifacts.elf_machine(builder.resolve_in_root(root, "/usr/local/bin/python3"))
    assert (info["Architecture"], machine) == ("arm64", "x86_64")


def test_uv_name_serves_an_arm64_stage(arm64_builder: ModuleType, tmp_path: Path) -> None:
    """Like the real multi-arch tag; an amd64-only image is "not found" from an arm64 stage."""
    uv = builder.ensure_uv(builder.template_uv_version(), "arm64")
    base = builder.ensure_lambda("3.13", "arm64")
    (tmp_path / "Dockerfile").write_text(f"FROM {base}\nCOPY --from={uv} /uv /bin/uv\n")
    tag = "localhost/standins-uv-arm64"
    builder.build(tmp_path, "Dockerfile", tag=tag, platform="linux/arm64")
    try:
        root = builder.export_rootfs(tag, dest=tmp_path / "rootfs")
    finally:
        builder.remove_image(tag)
    assert artifacts.elf_machine(root / "bin/uv") == "aarch64"


def test_copy_from_one_image_in_both_stages_reuses_the_first_platform(
    arm64_builder: ModuleType, tmp_path: Path
) -> None:
    """buildah 1.28: an image COPY --from'd in the amd64 stage and again in the arm64 stage
    gives the arm64 stage the amd64 files (the name is resolved once per build). Dockerfiles
    must bring such files into an arm64 stage through a stage of the right platform."""
    builder.ensure_slim("3.11", "x86_64")
    slim = builder.ensure_slim("3.11", "arm64")
    uv = builder.ensure_uv(builder.template_uv_version())
    builder.ensure_uv(builder.template_uv_version(), "arm64")
    info, root = _cross_build(
        tmp_path,
        f"--platform=$TARGETPLATFORM {slim}",
        "localhost/standins-cross-uv",
        slim,
        uv,
        final_extra=f"COPY --from={uv} /uv /uv-for-target\n",
    )
    assert info["Architecture"] == "arm64"
    assert artifacts.elf_machine(root / "uv-for-target") == "x86_64"
