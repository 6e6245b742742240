"""Derived names and pinned versions for every template file.

Template files read these values instead of computing names themselves, so a naming rule or a
version pin lives here once.
"""

from __future__ import annotations

import os
from typing import Any

from copier_template_extensions import ContextHook

# The one place the template pins uv. A generated repo uses it twice, for two audiences:
# people get a floor (`[tool.uv] required-version = ">=X"`), so a uv installed later still runs
# every command; machines get one exact uv, written once in `.github/uv/requirements.txt`
# (setup-uv's version-file; make and CD pass it to the Dockerfiles, whose UV_VERSION default
# must match; Dependabot moves it). The uv_build backend is held to the same minor series.
UV_VERSION = "0.13.8"
UV_MINOR = ".".join(UV_VERSION.split(".")[:2])
UV_NEXT_MINOR = f"0.{int(UV_VERSION.split('.')[1]) + 1}"

# Generated repos run Copier through uvx at these versions (make new-package / update); a test
# checks they match the template's own dev environment.
COPIER_VERSION = "9.19.1"
COPIER_EXTENSIONS_VERSION = "0.3.4"

# The Debian release of the ECS images. Dockerfile.venv's builder and Dockerfile.runtime must
# be the same Python on the same Debian (a venv's bin/python links to that interpreter), so
# the suite is pinned in the tag, and its glibc sets the manylinux level of the ECS wheels.
DEBIAN_SUITE = "bookworm"
DEBIAN_GLIBC = {"bookworm": "2_36", "trixie": "2_41"}

# The glibc of each Lambda Python runtime: 3.11 runs on Amazon Linux 2 (glibc 2.26), 3.12
# and later on Amazon Linux 2023 (glibc 2.34). uv's highest manylinux target not above 2.26
# is manylinux_2_17 (manylinux2014). Dockerfile.lambda picks the level from the Python version
# it is built for, so a repo that moves Python needs no other edit.
LAMBDA_GLIBC = {"3.11": "2_17"}
LAMBDA_GLIBC_AL2023 = "2_34"
# What those runtimes are, for scripts/wheel_check.py's messages: a dependency without a wheel
# for the level above is named with the OS and glibc that set it.
LAMBDA_OS = {"3.11": "Amazon Linux 2, glibc 2.26"}
LAMBDA_OS_AL2023 = "Amazon Linux 2023, glibc 2.34"

# Answer (AWS's name for the CPU) -> Docker platform and the machine name in wheel tags.
PLATFORMS = {"x86_64": "linux/amd64", "arm64": "linux/arm64"}
WHEEL_MACHINES = {"x86_64": "x86_64", "arm64": "aarch64"}
# GitHub-hosted runners of each architecture: CI runs a built Lambda image on its own CPU.
RUNNERS = {"x86_64": "ubuntu-24.04", "arm64": "ubuntu-24.04-arm"}


class MonorepoContext(ContextHook):
    """Add derived names (packages, dists, images) to the Copier context."""

    def __init__(self, environment) -> None:
        super().__init__(environment)
        environment.filters["dist"] = dist_name
        environment.filters["recorded_answers"] = recorded_answers

    def hook(self, context: dict[str, Any]) -> None:
        # Copier also renders question defaults before these answers exist.
        if "package_prefix" not in context or "python_version" not in context:
            return
        prefix = context["package_prefix"]
        python = context["python_version"]
        targets = context.get("deploy_targets") or []
        # Unvalidated yet while Copier renders other questions: the questions' choices refuse
        # an unknown architecture with a proper message, so fall back rather than fail here.
        lambda_arch = context.get("lambda_architecture")
        lambda_arch = lambda_arch if lambda_arch in PLATFORMS else "arm64"
        ecs_arch = context.get("ecs_architecture")
        ecs_arch = ecs_arch if ecs_arch in PLATFORMS else "x86_64"
        # AWS tags its arm64 Lambda base images `<python>-arm64`; x86_64 is the bare version.
        lambda_tag_suffix = "-arm64" if lambda_arch == "arm64" else ""

        context.update(
            project_slug=slugify(context.get("project_name", "")),
            common_pkg=f"{prefix}_common",
            api_pkg=f"{prefix}_api",
            ingestion_pkg=f"{prefix}_ingestion",
            common_dist=dist_name(f"{prefix}_common"),
            api_dist=dist_name(f"{prefix}_api"),
            ingestion_dist=dist_name(f"{prefix}_ingestion"),
            has_ecs="ecs" in targets,
            has_lambda="lambda" in targets,
            has_infra=context.get("infrastructure", "none") == "cdk",
            # Examples in the README; the rule itself is the generated scripts/monorepo.py's
            # stack_name() (a test holds the two together).
            foundation_stack=f"{slugify(context.get('project_name', ''))}-foundation",
            api_stack=f"{slugify(context.get('project_name', ''))}-{dist_name(prefix + '_api')}",
            ingestion_stack=(
                f"{slugify(context.get('project_name', ''))}-{dist_name(prefix + '_ingestion')}"
            ),
            python_floor=f">={python}",
            ruff_target=f"py{python.replace('.', '')}",
            uv_version=UV_VERSION,
            uv_floor=f">={UV_VERSION}",
            copier_version=COPIER_VERSION,
            copier_extensions_version=COPIER_EXTENSIONS_VERSION,
            uv_build_requirement=f"uv_build>={UV_MINOR}.0,<{UV_NEXT_MINOR}",
            debian_suite=DEBIAN_SUITE,
            # Builders run on the build machine's platform and install wheels for the target,
            # so one image serves as the ECS builder, the ECS runtime and the Lambda builder.
            python_image=f"python:{python}-slim-{DEBIAN_SUITE}",
            ecs_platform=PLATFORMS[ecs_arch],
            ecs_python_platform=f"{WHEEL_MACHINES[ecs_arch]}-manylinux_{DEBIAN_GLIBC[DEBIAN_SUITE]}",
            lambda_tag_suffix=lambda_tag_suffix,
            lambda_base_image=f"public.ecr.aws/lambda/python:{python}{lambda_tag_suffix}",
            lambda_platform=PLATFORMS[lambda_arch],
            lambda_wheel_machine=WHEEL_MACHINES[lambda_arch],
            lambda_runner=RUNNERS[lambda_arch],
            lambda_glibc=LAMBDA_GLIBC,
            lambda_glibc_default=LAMBDA_GLIBC_AL2023,
            lambda_os=LAMBDA_OS,
            lambda_os_default=LAMBDA_OS_AL2023,
            lambda_python_platform=(
                f"{WHEEL_MACHINES[lambda_arch]}-manylinux_"
                f"{LAMBDA_GLIBC.get(python, LAMBDA_GLIBC_AL2023)}"
            ),
        )
        if context.get("template_kind") == "package":
            package = f"{prefix}_{context['package_name']}"
            context.update(package_pkg=package, package_dist=dist_name(package))


def recorded_answers(answers: dict[str, Any]) -> dict[str, Any]:
    """Copier's answers to record, with a local template source made absolute.

    Copier records the source as typed (copier#335): a `.` typed in a checkout would send the
    generated repo's `make new-package` and `copier update` to the repo itself. A local source
    is relative to where Copier runs, which is this process's directory; a git URL (gh:,
    https://, git@) names no existing path and is kept as typed.
    """
    source = os.path.expanduser(str(answers.get("_src_path") or ""))
    if source and os.path.exists(source):
        return {**answers, "_src_path": os.path.abspath(source)}
    return answers


def dist_name(package: str) -> str:
    """The distribution name of an import package: `nt_api` -> `nt-api`."""
    return package.replace("_", "-")


def slugify(name: str) -> str:
    """A lowercase, dash-separated name usable as a root project name."""
    words = "".join(ch.lower() if ch.isalnum() else " " for ch in name).split()
    return "-".join(words) or "monorepo"
