"""Derived names and pinned versions for every template file.

Template files read these values instead of computing names themselves, so a naming rule or a
version pin lives here once.
"""

from __future__ import annotations

from typing import Any

from copier_template_extensions import ContextHook

# The one place the template pins uv: the uv image and setup-uv use it, and the uv_build
# backend is held to the same minor series.
UV_VERSION = "0.13.8"
UV_MINOR = ".".join(UV_VERSION.split(".")[:2])
UV_NEXT_MINOR = f"0.{int(UV_VERSION.split('.')[1]) + 1}"

# Generated repos run Copier through uvx at these versions (make new-package / update); a test
# checks they match the template's own dev environment.
COPIER_VERSION = "9.19.1"
COPIER_EXTENSIONS_VERSION = "0.3.4"


class MonorepoContext(ContextHook):
    """Add derived names (packages, dists, images) to the Copier context."""

    def __init__(self, environment) -> None:
        super().__init__(environment)
        environment.filters["dist"] = dist_name

    def hook(self, context: dict[str, Any]) -> None:
        # Copier also renders question defaults before these answers exist.
        if "package_prefix" not in context or "python_version" not in context:
            return
        prefix = context["package_prefix"]
        python = context["python_version"]
        targets = context.get("deploy_targets") or []
        arch_suffix = "-arm64" if context.get("lambda_architecture") == "arm64" else ""

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
            python_floor=f">={python}",
            ruff_target=f"py{python.replace('.', '')}",
            uv_version=UV_VERSION,
            copier_version=COPIER_VERSION,
            copier_extensions_version=COPIER_EXTENSIONS_VERSION,
            uv_build_requirement=f"uv_build>={UV_MINOR}.0,<{UV_NEXT_MINOR}",
            uv_image=f"ghcr.io/astral-sh/uv:{UV_VERSION}",
            ecs_base_image=f"python:{python}-slim",
            lambda_base_image=f"public.ecr.aws/lambda/python:{python}{arch_suffix}",
        )
        # Deploy targets (issue 3): the docker --platform matching the Lambda architecture.
        context["lambda_platform"] = (
            "linux/arm64" if context.get("lambda_architecture") == "arm64" else "linux/amd64"
        )
        if context.get("template_kind") == "package":
            package = f"{prefix}_{context['package_name']}"
            context.update(package_pkg=package, package_dist=dist_name(package))
        # Deploy targets (issue 3): the docker --platform matching the Lambda architecture.
        context["lambda_platform"] = (
            "linux/arm64" if context.get("lambda_architecture") == "arm64" else "linux/amd64"
        )


def dist_name(package: str) -> str:
    """The distribution name of an import package: `nt_api` -> `nt-api`."""
    return package.replace("_", "-")


def slugify(name: str) -> str:
    """A lowercase, dash-separated name usable as a root project name."""
    words = "".join(ch.lower() if ch.isalnum() else " " for ch in name).split()
    return "-".join(words) or "monorepo"
