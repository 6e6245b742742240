"""Shared fixtures: render the template from this checkout, and run the generated repo's tools.

Everything runs for real: Copier's Python API renders, the generated repo's own uv and pytest
run in it. The environment is pinned at import so every test (and the uv processes it starts)
sees the same Pythons and never tries to download one.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uv_index
from copier import run_copy
from gitrepo import commit_all
from plumbum import local

TEMPLATE = Path(__file__).resolve().parents[1]

# uv cannot download Pythons here; pyenv serves every supported version when they are listed.
# Set, not defaulted: a pyenv shim in front of uv exports its own single PYENV_VERSION.
os.environ["UV_PYTHON_DOWNLOADS"] = "never"
os.environ["PYENV_VERSION"] = "3.11.7:3.12.1:3.13.0:3.10.13"
# The template's dev venv must not leak into the generated repos' own uv projects.
os.environ.pop("VIRTUAL_ENV", None)
for _key, _value in {
    "GIT_AUTHOR_NAME": "Template Tests",
    "GIT_AUTHOR_EMAIL": "tests@copier-uv-monorepo.invalid",
    "GIT_COMMITTER_NAME": "Template Tests",
    "GIT_COMMITTER_EMAIL": "tests@copier-uv-monorepo.invalid",
}.items():
    os.environ.setdefault(_key, _value)
# Copier starts its tasks (git init, uv lock, the first commit) with plumbum's environment, a
# copy of os.environ taken when plumbum was first imported (by pytest-copie's plugin, before
# this file ran): bring that copy in line, or the tasks miss the settings above.
local.env.clear()
local.env.update(os.environ)


@pytest.fixture(autouse=True, scope="session")
def _isolated_copier_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep a developer's own Copier settings (defaults, trust list) out of the tests."""
    settings = tmp_path_factory.mktemp("copier-settings") / "settings.yml"
    settings.write_text("{}\n")
    previous = os.environ.get("COPIER_SETTINGS_PATH")
    os.environ["COPIER_SETTINGS_PATH"] = str(settings)
    yield
    if previous is None:
        os.environ.pop("COPIER_SETTINGS_PATH", None)
    else:
        os.environ["COPIER_SETTINGS_PATH"] = previous


def copy_template(
    dst: Path, *, tasks: bool, src: Path = TEMPLATE, vcs_ref: str = "HEAD", **answers: Any
) -> Path:
    """Render this checkout (working tree included), or `src` at `vcs_ref`, into `dst`."""
    run_copy(
        str(src),
        dst,
        data=answers,
        defaults=True,
        unsafe=True,
        vcs_ref=vcs_ref,
        skip_tasks=not tasks,
        quiet=True,
    )
    return dst


def run(cmd: list[str], cwd: Path, check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a command, and on failure show its output in the assertion message."""
    result = subprocess.run(cmd, cwd=cwd, text=True, capture_output=True, **kwargs)
    if check and result.returncode != 0:
        pytest.fail(
            f"{' '.join(cmd)} failed in {cwd} with exit code {result.returncode}\n"
            f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
        )
    return result


@pytest.fixture
def render(tmp_path: Path) -> Callable[..., Path]:
    """Render without tasks (fast): for tests that only read the generated files."""
    counter = iter(range(1000))

    def _render(**answers: Any) -> Path:
        return copy_template(tmp_path / f"render{next(counter)}", tasks=False, **answers)

    return _render


@pytest.fixture(scope="session")
def make_project(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Generate a ready repo (git init and locks made by the template's own tasks).

    Session-scoped and cached by answers, so tiers that only read a ready project share one.
    Tests that change files must copy it or make their own with `fresh=True`.
    """
    cache: dict[tuple[tuple[str, str], ...], Path] = {}

    def _make(fresh: bool = False, **answers: Any) -> Path:
        key = tuple(sorted((name, repr(value)) for name, value in answers.items()))
        if fresh or key not in cache:
            dst = tmp_path_factory.mktemp("project") / "repo"
            copy_template(dst, tasks=True, **answers)
            if fresh:
                return dst
            cache[key] = dst
        return cache[key]

    return _make


@pytest.fixture(scope="session")
def uv_from_index() -> Callable[[str], uv_index.Release]:
    """uv as people have it: `uv_from_index("uv")` is the newest release on the package index,
    `uv_from_index("uv<0.13.8")` the newest below a version; each installed once per machine
    beside the global uv (never over it), with an environment that puts it first on PATH."""
    releases: dict[str, uv_index.Release] = {}

    def _release(requirement: str) -> uv_index.Release:
        if requirement not in releases:
            releases[requirement] = uv_index.release(requirement)
        return releases[requirement]

    return _release


def tree_snapshot(root: Path) -> dict[str, bytes]:
    """Every file under `root` (git data, venvs and tool caches aside), for byte-for-byte
    comparisons."""
    caches = {"__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache", ".coverage"}
    skip = {".git", ".venv", *caches}
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not skip & set(path.relative_to(root).parts)
    }


class TemplateReleases:
    """A throwaway git repo of this template with PEP 440 tags, for update paths.

    `release(tag, edit)` commits the checkout's current template, changed by `edit` (to stand
    in for an older version), and tags it. Copier resolves versions from these tags.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True)
        run(["git", "init", "--quiet", "--initial-branch=main"], cwd=path)

    def release(self, tag: str, edit: Callable[[Path], None] | None = None) -> str:
        for child in self.path.iterdir():
            if child.name != ".git":
                run(["rm", "-rf", str(child)], cwd=self.path)
        files = run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=TEMPLATE
        ).stdout.split("\0")
        for name in filter(None, files):
            source, target = TEMPLATE / name, self.path / name
            if not source.exists() and not source.is_symlink():
                continue  # deleted in the working tree, not yet committed
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.is_symlink():
                target.symlink_to(os.readlink(source))
            else:
                target.write_bytes(source.read_bytes())
        if edit is not None:
            edit(self.path)
        commit_all(self.path, f"release {tag}")
        run(["git", "tag", tag], cwd=self.path)
        return tag


@pytest.fixture
def template_releases(tmp_path: Path) -> TemplateReleases:
    return TemplateReleases(tmp_path / "template")


@pytest.fixture(scope="module")
def released_template(tmp_path_factory: pytest.TempPathFactory) -> TemplateReleases:
    """This checkout released once as 0.1.0, shared by a module's tests (none releases again)."""
    releases = TemplateReleases(tmp_path_factory.mktemp("released") / "template")
    releases.release("0.1.0")
    return releases


# --------------------------------------------------------------------------- AWS (moto)

MOTO_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "eu-west-1",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[dict[str, str]]:
    """A real S3 API on 127.0.0.1 (moto in server mode), with throwaway credentials.

    The environment a script needs to reach it: AWS_ENDPOINT_URL and the credentials.
    """
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", **MOTO_CREDENTIALS}
    server.stop()


def aws_env(endpoint: dict[str, str], **overrides: str) -> dict[str, str]:
    """os.environ for a script talking to moto: no profile or real credentials leak in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return {**env, **endpoint, **overrides}


def s3_client(endpoint: dict[str, str]):
    import boto3

    return boto3.client(
        "s3", endpoint_url=endpoint["AWS_ENDPOINT_URL"], **boto_credentials(endpoint)
    )


def new_bucket(endpoint: dict[str, str]) -> str:
    bucket = f"artifacts-{uuid.uuid4().hex[:8]}"
    s3_client(endpoint).create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    return bucket


@pytest.fixture(scope="module")
def moto_iam(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """moto's server with IAM enforcement on, and an admin's credentials to set things up."""
    with moto_iam_server(tmp_path_factory.mktemp("moto-iam")) as endpoint:
        yield endpoint


@contextlib.contextmanager
def moto_iam_server(workdir: Path, **settings: str) -> Iterator[dict[str, str]]:
    """moto's server with IAM enforcement on (and moto `settings` as environment variables),
    and an admin's credentials to set things up.

    `INITIAL_NO_AUTH_ACTION_COUNT` is read when moto starts, so this is a server process of
    its own: the first three calls (create the admin, give it `*`, make its key) run
    unauthenticated; from then on every call is checked against the caller's policies.
    Its request recorder (off until /moto-api/recorder/start-recording) writes to a file in
    `workdir`, not to the working directory.
    """
    import boto3

    port = free_port()
    env = {
        **os.environ,
        "INITIAL_NO_AUTH_ACTION_COUNT": "3",
        "MOTO_RECORDER_FILEPATH": str(workdir / "recording"),
        **settings,
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline or server.poll() is not None:
                pytest.fail("moto's server did not start")
            time.sleep(0.2)
        endpoint = f"http://127.0.0.1:{port}"
        iam = boto3.client("iam", endpoint_url=endpoint, **boto_credentials(MOTO_CREDENTIALS))
        iam.create_user(UserName="admin")
        iam.put_user_policy(
            UserName="admin",
            PolicyName="admin",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
                }
            ),
        )
        key = iam.create_access_key(UserName="admin")["AccessKey"]
        yield {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
            "AWS_DEFAULT_REGION": "eu-west-1",
        }
    finally:
        server.terminate()
        server.wait(timeout=10)


def boto_credentials(endpoint: dict[str, str]) -> dict[str, str]:
    return {
        "region_name": endpoint["AWS_DEFAULT_REGION"],
        "aws_access_key_id": endpoint["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": endpoint["AWS_SECRET_ACCESS_KEY"],
    }
