"""Typed settings and JSON logs in a generated repo, run for real: `make run` with a `.env`,
the settings classes in the packages' own environments, and the generated tests.

Precedence is environment > `.env` > the packaged defaults.yaml; a missing setting names its
variable; a secret never prints; the reserved namespaces (AWS_*, GITHUB_*, UV_*, ...) are never
read, whatever a class declares.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import run

pytestmark = pytest.mark.slow

TOKEN = "tok-canary-3f9a"
# What the generated Makefile gets from the machine: no NT_* or Powertools variable of ours.
BASE_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("NT_", "POWERTOOLS_", "MAKE"))}


@pytest.fixture(scope="module", params=["shared", "independent"])
def repo(request: pytest.FixtureRequest, make_project) -> Path:
    return make_project(python_version="3.11", workspace_layout=request.param)


def make_run(repo: Path, args: str, check: bool = True, **env: str):
    return run(
        ["make", "--no-print-directory", "run", f"ARGS={args}"],
        cwd=repo,
        check=check,
        env={**BASE_ENV, **env},
    )


def log_lines(stderr: str) -> list[dict]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith('{"level"')]


def test_make_run_reads_dotenv_and_prints_json_logs(repo: Path) -> None:
    env_file = repo / ".env"
    env_file.write_text(f"NT_ENVIRONMENT=local\nNT_API_TOKEN={TOKEN}\nNT_LOG_LEVEL=DEBUG\n")
    try:
        result = make_run(repo, "--records 2")
        from_env = make_run(repo, "--records 1", NT_ENVIRONMENT="staging")
    finally:
        env_file.unlink()
    defaults = make_run(repo, "--records 1")

    assert json.loads(result.stdout.splitlines()[-1]) == {
        "job": "nt_api",
        "environment": "local",
        "processed": 2,
    }
    started, finished = log_lines(result.stderr)
    assert (started["message"], finished["message"]) == ("job started", "job finished")
    assert started["service"] == "nt_api" and started["level"] == "INFO"
    assert started["settings"]["log_level"] == "DEBUG"  # .env
    assert started["settings"]["artifacts_bucket"] == "nt-artifacts"  # packaged defaults
    assert started["settings"]["api_token"] == "**********"
    assert TOKEN not in result.stdout + result.stderr
    # The environment beats .env, .env beats the packaged defaults.
    assert json.loads(from_env.stdout.splitlines()[-1])["environment"] == "staging"
    assert json.loads(defaults.stdout.splitlines()[-1])["environment"] == "dev"


def test_make_run_uses_only_the_jobs_declared_dependencies(repo: Path) -> None:
    """The throwaway environment holds the job and what it declares: no pytest, no mypy, though
    `make sync` put both in the repo's .venv. The job's entry module is swapped for a probe."""
    run(["make", "sync"], cwd=repo, env=BASE_ENV)
    main = repo / "src" / "nt_api" / "nt_api" / "__main__.py"
    text = main.read_text()
    main.write_text(
        "import importlib.util as u\n\nprint(u.find_spec('pytest'), u.find_spec('mypy'))\n"
    )
    try:
        probe = make_run(repo, "")
    finally:
        main.write_text(text)
    assert probe.stdout.split()[-2:] == ["None", "None"]


def test_a_missing_setting_stops_the_job_naming_its_variable(repo: Path) -> None:
    """artifacts_bucket comes from the packaged defaults: with it gone, the variable is named."""
    defaults = repo / "src" / "nt_common" / "nt_common" / "defaults.yaml"
    text = defaults.read_text()
    defaults.write_text(
        "\n".join(line for line in text.splitlines() if not line.startswith("artifacts_bucket:"))
        + "\n"
    )
    try:
        failed = make_run(repo, "--records 1", check=False)
        given = make_run(repo, "--records 1", NT_ARTIFACTS_BUCKET="from-env")
    finally:
        defaults.write_text(text)
    assert failed.returncode != 0
    assert "JobSettings: invalid settings: NT_ARTIFACTS_BUCKET: Field required" in failed.stderr
    assert "KeyError" not in failed.stderr
    assert log_lines(given.stderr)[0]["settings"]["artifacts_bucket"] == "from-env"


READ_RESERVED = """
from nt_common import ServiceSettings

class Sneaky(ServiceSettings):
    region: str = "unset"
    secret_access_key: str = "unset"
    token: str = "unset"

settings = Sneaky.load()
print(settings.region, settings.secret_access_key, settings.token)
"""

DECLARE_RESERVED = """
from pydantic import Field
from pydantic_settings import SettingsConfigDict
from nt_common import ServiceSettings

def refused(make):
    try:
        make()
    except TypeError as error:
        print(error)
    else:
        print("accepted")

def prefix():
    class Leaky(ServiceSettings):
        model_config = SettingsConfigDict(env_prefix="AWS_")
        secret_access_key: str = ""

def alias():
    class Aliased(ServiceSettings):
        key: str = Field("", validation_alias="AWS_SECRET_ACCESS_KEY")

refused(prefix)
refused(alias)
"""


def test_reserved_namespaces_are_never_read(repo: Path) -> None:
    env = {
        **BASE_ENV,
        "AWS_REGION": "us-east-1",
        "AWS_SECRET_ACCESS_KEY": "aws-secret",
        "GITHUB_TOKEN": "gh-token",
        "UV_TOKEN": "uv-token",
    }
    (repo / ".env").write_text("AWS_SECRET_ACCESS_KEY=dotenv-secret\nNT_TOKEN=ours\n")
    try:
        read = run(
            ["uv", "run", "--locked", "--project", "src/nt_common", "python", "-c", READ_RESERVED],
            cwd=repo,
            env=env,
        )
    finally:
        (repo / ".env").unlink()
    assert read.stdout.split() == ["unset", "unset", "ours"]

    declared = run(
        ["uv", "run", "--locked", "--project", "src/nt_common", "python", "-c", DECLARE_RESERVED],
        cwd=repo,
        env=BASE_ENV,
    )
    assert declared.stdout.splitlines() == [
        # The first field a prefix of AWS_ would read (every field is: all are refused).
        "Leaky.environment would read AWS_ENVIRONMENT: that namespace belongs to AWS, CI or the "
        "tools, never to settings",
        "Aliased.key would read AWS_SECRET_ACCESS_KEY: that namespace belongs to AWS, CI or "
        "the tools, never to settings",
    ]


def test_the_env_prefix_comes_from_the_answers(render) -> None:
    """A repo generated with another prefix reads ITS prefix, and its reserved list is the
    template validator's."""
    from by_path import template_validators

    repo = render(package_prefix="acme")
    settings = (repo / "src/acme_common/acme_common/settings.py").read_text()
    assert 'ENV_PREFIX = "ACME_"' in settings
    for namespace in template_validators().RESERVED_ENV_NAMESPACES:
        assert f'    "{namespace.upper()}_",\n' in settings
