"""Print the cold-start (init) duration of generated Lambda images, as the emulator reports it.

Figures, not assertions: run it before and after a change and compare.

    uv run --locked python bench/bench_lambda_init.py [--runs 7] [--python 3.13]

Uses the container tier's builder (buildah/podman and the local stand-in Lambda bases, which
carry AWS's Runtime Interface Emulator and runtime interface client; see tests/builder.py).
Renders a Lambda-only repo for x86_64 and builds two functions from its Dockerfile.lambda:

- sample: the generated `<prefix>_ingestion` as it is
- boto3: the same with `boto3` as a dependency, imported at module scope (a heavy import)

Each is also run without its shipped bytecode (every `__pycache__` removed from /var/task in a
derived image): the root filesystem is read-only, as on Lambda, so Python then compiles every
module at every cold start. Each figure is the median init duration (the emulator's `INIT
REPORT`) over --runs fresh containers, each invoked once. x86_64 only: an arm64 image here
runs under user-mode qemu, so its init measures the emulator, not Graviton.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
os.environ["UV_PYTHON_DOWNLOADS"] = "never"
os.environ["PYENV_VERSION"] = "3.11.7:3.12.1:3.13.0:3.10.13"
os.environ.pop("VIRTUAL_ENV", None)

import builder  # noqa: E402
from copier import run_copy  # noqa: E402

SERVICE = "nt_ingestion"
BOTO3 = "boto3==1.44.8"
EVENT = {"Records": [{"s3": {"bucket": {"name": "landing"}, "object": {"key": "in/a.csv"}}}]}
# A derived image without bytecode; python3 does the removal (the 3.12+ bases have no find).
NO_PYC_DOCKERFILE = """\
FROM {image}
RUN ["/var/lang/bin/python3", "-c", "import pathlib, shutil; [shutil.rmtree(p) for p in list(pathlib.Path('/var/task').rglob('__pycache__'))]"]
"""


def machine() -> str:
    model = "unknown CPU"
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if line.startswith("Model name:"):
            model = line.split(":", 1)[1].strip()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{model}, {os.cpu_count()} CPUs, {platform.machine()}, load average {load}"


def render(dest: Path, python: str) -> Path:
    run_copy(
        str(ROOT),
        dest,
        data={
            "python_version": python,
            "lambda_architecture": "x86_64",
            "deploy_targets": ["lambda"],
            "package_prefix": "nt",
        },
        defaults=True,
        unsafe=True,
        vcs_ref="HEAD",
        quiet=True,
    )
    return dest


def add_boto3(repo: Path) -> None:
    package = repo / "src" / SERVICE
    pyproject = package / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace("dependencies = [", f'dependencies = [\n    "{BOTO3}",', 1)
    )
    handler = package / SERVICE / "handler.py"
    handler.write_text(handler.read_text() + "\n\nimport boto3  # noqa: E402,F401\n")
    subprocess.run(["uv", "lock", "--quiet"], cwd=repo, check=True)


def build(repo: Path, tag: str, python: str) -> str:
    builder.build(
        repo,
        "docker/Dockerfile.lambda",
        tag=tag,
        build_args={"SERVICE_NAME": SERVICE, "PYTHON_VERSION": python},
    )
    return tag


def without_bytecode(image: str, work: Path) -> str:
    ctx = work / f"nopyc-{image.rsplit('/', 1)[-1]}"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(NO_PYC_DOCKERFILE.format(image=image))
    tag = f"{image}-nopyc"
    builder.build(ctx, "Dockerfile", tag=tag)
    return tag


def cold_starts(image: str, runs: int) -> list[float]:
    inits = []
    for _ in range(runs):
        with builder.lambda_container(image) as invoke:
            answer = invoke(EVENT)
        if answer.status != 200 or answer.init_ms is None:
            raise SystemExit(f"{image} did not answer:\n{answer.answer}\n{answer.log}")
        inits.append(answer.init_ms)
    return inits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--python", default="3.13")
    args = parser.parse_args()
    builder.setup(builder.template_uv_version())
    builder.ensure_slim(args.python, "x86_64")
    builder.ensure_lambda(args.python, "x86_64")
    images = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sample = render(work / "sample", args.python)
        images["sample"] = build(sample, "localhost/bench-lambda-init-sample", args.python)
        heavy = render(work / "boto3", args.python)
        add_boto3(heavy)
        images["boto3"] = build(heavy, "localhost/bench-lambda-init-boto3", args.python)
        for name in list(images):
            images[f"{name}, no bytecode"] = without_bytecode(images[name], work)
    print(f"Lambda init duration, Python {args.python}, x86_64, median of {args.runs} cold starts")
    print(f"machine: {machine()}")
    print(f"{'function':<22} {'median ms':>10} {'min ms':>8} {'max ms':>8}")
    try:
        for name in ("sample", "sample, no bytecode", "boto3", "boto3, no bytecode"):
            inits = cold_starts(images[name], args.runs)
            print(
                f"{name:<22} {statistics.median(inits):>10.1f} {min(inits):>8.1f}"
                f" {max(inits):>8.1f}",
                flush=True,
            )
    finally:
        for image in images.values():
            builder.remove_image(image)


if __name__ == "__main__":
    main()
