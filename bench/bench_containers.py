"""Print size and build-time figures for the deploy artifacts of a generated repo.

Figures, not assertions: run it before and after a change and compare.

    uv run --locked python bench/bench_containers.py [--layout shared|independent]

Uses the container tier's builder (buildah/podman and local stand-in base images, set up on
first use; see tests/builder.py). Renders with python_version=3.11, lambda_architecture=x86_64.

- tarball: size of <prefix>_api's venv tarball, against a tarball of a venv holding the whole
  workspace (every package, no dev tools) built the same way
- lambda: image size above its base image
- build: first build (`--no-cache`; uv's download cache stays warm) against a rebuild after a
  code-only change, for the ECS tarball and the Lambda image
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
os.environ["UV_PYTHON_DOWNLOADS"] = "never"
os.environ["PYENV_VERSION"] = "3.11.7:3.12.1:3.13.0:3.10.13"
os.environ.pop("VIRTUAL_ENV", None)

import builder  # noqa: E402
from copier import run_copy  # noqa: E402

# Builds the whole workspace's venv the way Dockerfile.venv builds one package's, for scale.
WHOLE_WORKSPACE_DOCKERFILE = """\
FROM python:3.11-slim AS builder
COPY --from={uv_image} /uv /bin/uv
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never \\
    UV_PYTHON=/usr/local/bin/python3 UV_PROJECT_ENVIRONMENT=/opt/venv
COPY . /build/
WORKDIR /build
RUN uv venv --relocatable /opt/venv \\
 && uv sync --frozen --no-dev --all-packages --no-editable \\
 && mkdir /dist && tar -C /opt/venv -czf /dist/whole_workspace.tar.gz .
FROM scratch
COPY --from=builder /dist/ /
"""


def kib(size: int) -> str:
    return f"{size / 1024:8.1f} KiB"


def timed_build(*args, **kwargs) -> float:
    start = time.perf_counter()
    builder.build(*args, **kwargs)
    return time.perf_counter() - start


def touch_code(path: Path) -> None:
    path.write_text(path.read_text() + f"\nBUILD_MARKER = {uuid.uuid4().hex!r}\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layout", choices=["shared", "independent"], default="shared")
    args = parser.parse_args()

    uv_version = builder.template_uv_version()
    builder.setup(uv_version)
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        run_copy(
            str(ROOT),
            repo,
            defaults=True,
            unsafe=True,
            vcs_ref="HEAD",
            quiet=True,
            data={
                "python_version": "3.11",
                "lambda_architecture": "x86_64",
                "workspace_layout": args.layout,
            },
        )
        api, ingestion = "nt_api", "nt_ingestion"

        dist = Path(tmp) / "dist"
        venv_args = {"PACKAGE_NAME": api, "PACKAGE_VERSION": "0.0.0"}
        first_venv = timed_build(
            repo, "docker/Dockerfile.venv", build_args=venv_args, output=dist, extra=["--no-cache"]
        )
        api_tarball = next(dist.rglob("*.tar.gz")).stat().st_size
        touch_code(repo / "src" / api / api / "job.py")
        rebuild_venv = timed_build(
            repo, "docker/Dockerfile.venv", build_args=venv_args, output=Path(tmp) / "dist2"
        )

        whole = ""
        if args.layout == "shared":
            ctx = Path(tmp) / "whole"
            (ctx).mkdir()
            (repo / "docker" / "Dockerfile.whole").write_text(
                WHOLE_WORKSPACE_DOCKERFILE.format(uv_image=builder.uv_image(uv_version))
            )
            builder.build(repo, "docker/Dockerfile.whole", output=ctx)
            whole_size = (ctx / "whole_workspace.tar.gz").stat().st_size
            whole = f"   whole workspace venv tarball: {kib(whole_size)}"

        image = f"localhost/bench-lambda-{args.layout}"
        lambda_args = {"SERVICE_NAME": ingestion}
        first_lambda = timed_build(
            repo,
            "docker/Dockerfile.lambda",
            tag=image,
            build_args=lambda_args,
            extra=["--no-cache"],
        )
        above_base = builder.size(image) - builder.size(builder.lambda_image())
        touch_code(repo / "src" / ingestion / ingestion / "handler.py")
        rebuild_lambda = timed_build(
            repo, "docker/Dockerfile.lambda", tag=image, build_args=lambda_args
        )
        builder.remove_image(image)

    print(f"layout: {args.layout}")
    print(f"tarball  {api} venv tarball: {kib(api_tarball)}{whole}")
    print(f"lambda   {ingestion} image above its base: {kib(above_base)}")
    for what, first, rebuild in (
        ("ECS tarball", first_venv, rebuild_venv),
        ("Lambda image", first_lambda, rebuild_lambda),
    ):
        print(f"build    {what}: first {first:5.1f} s, code-only rebuild {rebuild:5.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
