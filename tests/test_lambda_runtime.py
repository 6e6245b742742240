"""Lambda images run the way AWS runs them, and .pth files work in them.

AWS starts a Lambda image through its entrypoint: /lambda-entrypoint.sh takes CMD as the
handler name, the runtime interface client (awslambdaric) resolves it, with /var/task on
sys.path but not a site directory, and reports the init time. Off AWS the same entrypoint
starts the Runtime Interface Emulator, which answers invocations over HTTP. The stand-in bases
(tests/builder.py, ensure_lambda) carry that contract with AWS's own emulator and client; the
images built here run read-only, as Lambda's root filesystem is, and are invoked over HTTP.

Field report behind the .pth tests: a Lambda package that imports distutils (gone from the
standard library in Python 3.12) through setuptools' `distutils-precedence.pth` passed its
tests in its venv, where site-packages is a site directory, and failed in the image with
`Runtime.ImportModuleError: No module named 'distutils'`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import builder
import gha
import pytest
from conftest import run
from gitrepo import commit_all

container_builder = builder.container_builder

pytestmark = [pytest.mark.slow, pytest.mark.containers]

INGESTION = "nt_ingestion"
# test_containers.py's shared variant: the same answers give the same (session-cached) repo,
# and the image build reuses that module's layers.
SAMPLE_ANSWERS = {
    "python_version": "3.11",
    "lambda_architecture": "x86_64",
    "package_prefix": "nt",
    "workspace_layout": "shared",
    "artifact_naming": "flat",
}
# distutils left the standard library in 3.12: there the shim is what makes it importable.
PTH_PYTHON = "3.12"
SETUPTOOLS = "setuptools==80.9.0"


def _event(repo: Path, package: str = INGESTION) -> dict:
    return json.loads((repo / "src" / package / "events" / "s3-put.json").read_text())


@pytest.fixture(scope="module")
def sample_image(container_builder: ModuleType, make_project) -> Iterator[tuple[Path, str]]:
    """The sample Lambda (Python 3.11, x86_64) built from the generated Dockerfile."""
    repo = make_project(**SAMPLE_ANSWERS)
    image = "localhost/cumt-rie-sample"
    container_builder.build(
        repo, "docker/Dockerfile.lambda", tag=image, build_args={"SERVICE_NAME": INGESTION}
    )
    yield repo, image
    container_builder.remove_image(image)


def test_sample_image_answers_over_http_from_a_read_only_root(
    sample_image: tuple[Path, str], container_builder: ModuleType
) -> None:
    repo, image = sample_image
    assert container_builder.inspect(image)["Config"]["Cmd"] == ["lambda_function.handler"]
    with container_builder.lambda_container(image) as invoke:
        first = invoke(_event(repo))
        second = invoke({"Records": []})
    assert first.status == 200, first.log
    assert first.answer["statusCode"] == 200
    assert json.loads(first.answer["body"])["ingested"] == ["landing/2026/01/data.csv"]
    # One cold start, reported by the emulator; the second invocation is warm.
    assert first.init_ms is not None and first.init_ms > 0, first.log
    assert len(re.findall(r"INIT REPORT", second.log)) == 1, second.log
    assert json.loads(second.answer["body"])["ingested"] == []


def test_cmd_names_the_handler_the_runtime_resolves(
    sample_image: tuple[Path, str], container_builder: ModuleType
) -> None:
    """The runtime interface client resolves CMD's string: a wrong name fails the way AWS
    reports it, not with a Python traceback of our own making."""
    _, image = sample_image
    with container_builder.lambda_container(image, "lambda_function.no_such") as invoke:
        failed = invoke({})
    assert failed.answer["errorType"] == "Runtime.HandlerNotFound", failed.answer


# --------------------------------------------------------------------------- .pth files


def pth_wheel(folder: Path) -> Path:
    """A tiny wheel whose only way in is a .pth file: `pth_probe.pth` adds `pth_probe_lib/`,
    which holds the module `pth_probe_mod`. Built here, byte for byte, as a wheel is."""
    name, version = "pth_probe", "1.0"
    dist_info = f"{name}-{version}.dist-info"
    files = {
        "pth_probe.pth": b"pth_probe_lib\n",
        "pth_probe_lib/pth_probe_mod.py": b"VIA = 'pth'\n",
        f"{dist_info}/METADATA": (
            f"Metadata-Version: 2.1\nName: pth-probe\nVersion: {version}\n".encode()
        ),
        f"{dist_info}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    records = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        records.append(f"{path},sha256={digest},{len(data)}")
    records.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = ("\n".join(records) + "\n").encode()
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return wheel


@pytest.fixture(scope="module")
def pth_repo(make_project) -> Path:
    """A Lambda-only Python 3.12 repo whose function imports distutils (setuptools' shim) and a
    module only a local wheel's .pth file puts on the path; committed, locked."""
    repo = make_project(
        fresh=True,
        python_version=PTH_PYTHON,
        lambda_architecture="x86_64",
        deploy_targets=["lambda"],
    )
    package = repo / "src" / INGESTION
    wheels = package / "wheels"
    wheels.mkdir()
    wheel = pth_wheel(wheels)
    pyproject = package / "pyproject.toml"
    text = pyproject.read_text()
    text = text.replace("dependencies = [", f'dependencies = [\n    "{SETUPTOOLS}",\n    "pth-probe",', 1)
    source = f'pth-probe = {{ path = "wheels/{wheel.name}" }}\n'
    text = text.replace("[tool.uv.sources]\n", f"[tool.uv.sources]\n{source}", 1)
    assert source in text, text
    pyproject.write_text(text)
    handler = package / INGESTION / "handler.py"
    handler.write_text(
        handler.read_text()
        + "\n\n# Importable only through .pth files: setuptools' distutils shim, the probe's path.\n"
        "import distutils.version  # noqa: E402\n"
        "import pth_probe_mod  # noqa: E402\n"
        "\nassert pth_probe_mod.VIA == 'pth' and distutils.version.LooseVersion\n"
    )
    run(["uv", "lock"], cwd=repo)
    commit_all(repo, "a function that needs .pth files")
    return repo


def test_pth_dependent_package_passes_its_own_tests(pth_repo: Path) -> None:
    """Locally the venv's site-packages is a site directory: the field report's green tests."""
    result = run(
        ["uv", "run", "--locked", "--package", INGESTION, "pytest", "-q", f"src/{INGESTION}"],
        cwd=pth_repo,
    )
    assert " passed" in result.stdout


def test_pth_files_run_in_the_lambda_image(
    pth_repo: Path, container_builder: ModuleType
) -> None:
    container_builder.ensure_slim(PTH_PYTHON, "x86_64")
    container_builder.ensure_lambda(PTH_PYTHON, "x86_64")
    image = "localhost/cumt-rie-pth"
    container_builder.build(
        pth_repo,
        "docker/Dockerfile.lambda",
        tag=image,
        build_args={"SERVICE_NAME": INGESTION, "PYTHON_VERSION": PTH_PYTHON},
    )
    try:
        task = container_builder.export_rootfs(image) / "var" / "task"
        assert {p.name for p in task.glob("*.pth")} == {"distutils-precedence.pth", "pth_probe.pth"}
        # The standard library of the image's Python has no distutils to fall back on.
        assert not (task.parents[1] / f"var/lang/lib/python{PTH_PYTHON}/distutils").exists()
        with container_builder.lambda_container(image) as invoke:
            answer = invoke(_event(pth_repo))
    finally:
        container_builder.remove_image(image)
    assert answer.status == 200 and answer.answer.get("statusCode") == 200, (
        answer.answer,
        answer.log,
    )
    assert json.loads(answer.answer["body"])["ingested"] == ["landing/2026/01/data.csv"]


# --------------------------------------------------------------------------- make invoke


def test_ci_invokes_each_affected_function_and_fails_on_a_broken_one(
    sample_image: tuple[Path, str],
    container_builder: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """CI's lambda-invoke job, its `run:` step verbatim (tests/gha.py), for the affected
    function the affected job lists: `make invoke` with podman standing in for the runner's
    docker (the flags above). A handler that cannot be imported in the image turns it red."""
    repo = tmp_path / "repo"
    shutil.copytree(sample_image[0], repo, symlinks=True)
    listed = run(["python3", "scripts/affected.py", "--all", "--deploy-kind", "lambda"], cwd=repo)
    assert json.loads(listed.stdout) == [INGESTION]
    workflow = gha.load(repo / ".github" / "workflows" / "ci.yml")
    assert workflow["jobs"]["lambda-invoke"]["runs-on"] == "ubuntu-24.04"  # x86_64 functions
    for key, value in container_builder.builder_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("DOCKER", "podman")
    monkeypatch.setenv(
        "LAMBDA_BUILD_FLAGS",
        "--platform linux/amd64 --pull=never"
        " --build-arg BUILDPLATFORM=linux/amd64 --build-arg TARGETPLATFORM=linux/amd64",
    )
    monkeypatch.setenv("INVOKE_PORT", str(builder._free_port()))
    expressions = {"matrix.package": INGESTION}
    try:
        results, _ = gha.run_job(repo, workflow, "lambda-invoke", expressions)
        assert [r.returncode for r in results] == [0], gha.describe(results)
        assert "init duration:" in results[0].output

        handler = repo / "src" / INGESTION / INGESTION / "handler.py"
        handler.write_text(handler.read_text() + "\nimport module_only_on_the_laptop  # noqa\n")
        commit_all(repo, "a handler the image cannot import")
        results, _ = gha.run_job(repo, workflow, "lambda-invoke", expressions)
    finally:
        container_builder.remove_image(f"localhost/{INGESTION}")
    assert len(results) == 1 and results[0].returncode != 0, gha.describe(results)
    assert "Runtime.ImportModuleError" in results[0].output, results[0].output


def test_make_invoke_builds_and_invokes_with_the_sample_event(
    sample_image: tuple[Path, str], container_builder: ModuleType, tmp_path: Path
) -> None:
    """The generated repo's own `make invoke`, with DOCKER=podman (the Makefile's builder
    variable) and the flags buildah needs in place of BuildKit's (--provenance is BuildKit's;
    buildah 1.28 predefines no BUILDPLATFORM/TARGETPLATFORM)."""
    repo = tmp_path / "repo"
    shutil.copytree(sample_image[0], repo, symlinks=True)
    flags = (
        "--platform linux/amd64 --pull=never"
        " --build-arg BUILDPLATFORM=linux/amd64 --build-arg TARGETPLATFORM=linux/amd64"
    )
    make = [
        "make",
        "invoke",
        "DOCKER=podman",
        f"LAMBDA_BUILD_FLAGS={flags}",
        f"INVOKE_PORT={builder._free_port()}",
    ]
    try:
        result = run(make, cwd=repo, env=container_builder.builder_env())
    finally:
        container_builder.remove_image(f"localhost/{INGESTION}")
    lines = result.stdout.strip().splitlines()
    answer = json.loads(lines[-2])
    assert answer["statusCode"] == 200, result.stdout
    assert json.loads(answer["body"])["ingested"] == ["landing/2026/01/data.csv"]
    assert re.fullmatch(r"init duration: [0-9]+\.[0-9] ms", lines[-1]), lines[-1]

    # Another event file, and a function that fails: the error object, exit status 1.
    (repo / "bad.json").write_text('{"Records": [{"s3": "not an object"}]}')
    failed = run([*make, "EVENT=bad.json"], cwd=repo, env=container_builder.builder_env(), check=False)
    container_builder.remove_image(f"localhost/{INGESTION}")
    assert failed.returncode != 0
    assert "errorType" in failed.stdout, failed.stdout + failed.stderr
