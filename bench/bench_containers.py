"""Print size and build-time figures for the deploy artifacts of a generated repo.

Figures, not assertions: run it before and after a change and compare.

    uv run --locked python bench/bench_containers.py [--layout shared|independent]

Uses the container tier's builder (buildah/podman and local stand-in base images, set up on
first use; see tests/builder.py). Renders the default Python (3.13) on this x86_64 machine.

- tarball: size of <prefix>_api's venv tarball, against a tarball of a venv holding the whole
  workspace (every package, no dev tools) built the same way
- lambda: the same service's image built for arm64 (no emulator: the final stage only copies)
  and for x86_64, side by side: first build (`--no-cache`; uv's download cache stays warm),
  rebuild after a code-only change, and size above the base image. Goal: arm64 within 1.3x
- build: first build against a code-only rebuild for the ECS tarball
- buildkit: the same first builds and code-only rebuilds with Docker Engine's BuildKit (Debian's
  docker.io, started privately as tests/test_buildkit.py does), the builder CD uses
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
PYTHON = "3.13"
WHOLE_WORKSPACE_DOCKERFILE = """\
FROM {python_image} AS builder
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


def render(dst: Path, layout: str, lambda_arch: str) -> Path:
    run_copy(
        str(ROOT),
        dst,
        defaults=True,
        unsafe=True,
        vcs_ref="HEAD",
        quiet=True,
        data={
            "python_version": PYTHON,
            "lambda_architecture": lambda_arch,
            "workspace_layout": layout,
        },
    )
    return dst


def lambda_figures(repo: Path, arch: str, service: str) -> tuple[float, float, int]:
    """First build, code-only rebuild (seconds) and size above the base (bytes)."""
    platform = f"linux/{builder.OCI_ARCH[arch]}"
    image = f"localhost/bench-lambda-{arch}"
    build_args = {"SERVICE_NAME": service}
    first = timed_build(
        repo,
        "docker/Dockerfile.lambda",
        tag=image,
        build_args=build_args,
        platform=platform,
        extra=["--no-cache"],
    )
    above_base = builder.size(image) - builder.size(builder.lambda_image(PYTHON, arch))
    touch_code(repo / "src" / service / service / "handler.py")
    rebuild = timed_build(
        repo, "docker/Dockerfile.lambda", tag=image, build_args=build_args, platform=platform
    )
    builder.remove_image(image)
    return first, rebuild, above_base


def buildkit_figures(
    repos: dict[str, Path], api: str, service: str, uv_version: str, tmp: Path
) -> dict[str, tuple[float, float]]:
    """First build (`--no-cache`) and code-only rebuild (seconds) under BuildKit, by artifact:
    the ECS tarball (from the arm64 repo; ECS is x86_64) and the Lambda image per architecture.
    """
    engine = builder.start_engine()
    images = [f"bench-lambda-{arch}" for arch in repos]
    try:
        engine.load(builder.slim_instance(PYTHON, "x86_64"), builder.slim_image(PYTHON))
        engine.load(builder.uv_instance(uv_version, "x86_64"), builder.uv_image(uv_version))
        for arch in repos:
            engine.load(builder.lambda_image(PYTHON, arch))

        def timed(repo: Path, code: Path, *args: str) -> tuple[float, float]:
            times = []
            for extra in (["--no-cache"], []):
                start = time.perf_counter()
                engine.docker("build", *extra, *args, ".", cwd=repo)
                times.append(time.perf_counter() - start)
                touch_code(code)
            return times[0], times[1]

        figures = {
            "ECS tarball": timed(
                repos["arm64"],
                repos["arm64"] / "src" / api / api / "job.py",
                *("-f", "docker/Dockerfile.venv", "--platform", "linux/amd64"),
                *("--build-arg", f"PACKAGE_NAME={api}", "--build-arg", "PACKAGE_VERSION=0.0.0"),
                *("--output", f"type=local,dest={tmp / 'buildkit-dist'}"),
            )
        }
        for arch, repo in repos.items():
            figures[f"lambda {arch} image"] = timed(
                repo,
                repo / "src" / service / service / "handler.py",
                *(
                    "-f",
                    "docker/Dockerfile.lambda",
                    "--platform",
                    f"linux/{builder.OCI_ARCH[arch]}",
                ),
                *("--build-arg", f"SERVICE_NAME={service}", "-t", f"bench-lambda-{arch}"),
            )
        return figures
    finally:
        engine.docker("image", "rm", "-f", *images, check=False)
        engine.docker("builder", "prune", "-af", check=False)
        engine.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layout", choices=["shared", "independent"], default="shared")
    args = parser.parse_args()

    uv_version = builder.template_uv_version()
    builder.setup(uv_version)
    builder.ensure_slim(PYTHON, "x86_64")
    for arch in ("arm64", "x86_64"):
        builder.ensure_lambda(PYTHON, arch)
    api, ingestion = "nt_api", "nt_ingestion"
    with tempfile.TemporaryDirectory() as tmp:
        repo = render(Path(tmp) / "repo", args.layout, "arm64")
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
            ctx.mkdir()
            (repo / "docker" / "Dockerfile.whole").write_text(
                WHOLE_WORKSPACE_DOCKERFILE.format(
                    python_image=builder.slim_image(PYTHON), uv_image=builder.uv_image(uv_version)
                )
            )
            builder.build(repo, "docker/Dockerfile.whole", output=ctx)
            whole_size = (ctx / "whole_workspace.tar.gz").stat().st_size
            whole = f"   whole workspace venv tarball: {kib(whole_size)}"

        lambdas = {"arm64": lambda_figures(repo, "arm64", ingestion)}
        x86_repo = render(Path(tmp) / "repo-x86", args.layout, "x86_64")
        lambdas["x86_64"] = lambda_figures(x86_repo, "x86_64", ingestion)
        try:
            buildkit = buildkit_figures(
                {"arm64": repo, "x86_64": x86_repo}, api, ingestion, uv_version, Path(tmp)
            )
        except builder.BuilderUnavailable as err:
            buildkit = {}
            print(f"buildkit unavailable: {err}", file=sys.stderr)

    print(f"layout: {args.layout}, Python {PYTHON}, built on x86_64 ({os.cpu_count()} cores)")
    print(f"tarball  {api} venv tarball: {kib(api_tarball)}{whole}")
    print(f"build    ECS tarball: first {first_venv:5.1f} s, code-only rebuild {rebuild_venv:5.1f} s")
    for arch, (first, rebuild, above) in lambdas.items():
        print(
            f"lambda   {arch:7} image: first {first:5.1f} s, code-only rebuild {rebuild:5.1f} s,"
            f" {kib(above)} above its base"
        )
    ratio = lambdas["arm64"][0] / lambdas["x86_64"][0]
    print(f"lambda   arm64 / x86_64 first build: {ratio:4.2f}x (goal: within 1.3x, no emulator)")
    for name, (first, rebuild) in buildkit.items():
        print(f"buildkit {name}: first {first:5.1f} s, code-only rebuild {rebuild:5.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
