"""What the stacks are made from: infra/cdk.json's context, the packages under src/, and the
IAM documents under deploy/iam/.

Context (infra/cdk.json, `"context"`; `-c key=value` overrides one for a run):

- project: the repo's slug, first part of every stack and resource name.
- region: where the stacks live.
- lambda_architecture, ecs_architecture: the CPU of the functions and of the tasks.
- artifacts_bucket: the bucket of the venv tarballs (ECS).
- ecs_subnets, ecs_security_groups: where scheduled tasks run (needed by a schedule only);
  ecs_assign_public_ip: true for public subnets without a NAT gateway (a default VPC's), or a
  task cannot reach ECR and S3.
- ecr_repository_prefix: put before every ECR repository name (CD's ECR_REPOSITORY_PREFIX).
- github_repository: `owner/name`, the only repository whose `release` environment may assume
  the CD role. Left blank, the foundation stack asks for it as its parameter GitHubRepository
  at the first deploy instead.
- github_oidc_provider_arn: an account has one GitHub OIDC provider; name an existing one here
  and the foundation stack uses it instead of creating it.
- log_retention_days: how long function and task logs are kept.

Per package, in its pyproject.toml (all optional):

    [tool.monorepo.lambda]
    memory_size = 512     # MB, 128 to 10240 (default 512)
    timeout = 30          # seconds, 1 to 900 (default 30)

    [tool.monorepo.ecs]
    cpu = 256             # Fargate CPU units (default 256)
    memory = 512          # MB, a size Fargate allows for that CPU (default 512)
    schedule = "rate(1 hour)"   # or "cron(0 6 * * ? *)": run on EventBridge Scheduler
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import monorepo

from stacks import ROOT

IAM_DOCS = ROOT / "deploy" / "iam"
LAMBDA_DEFAULTS = {"memory_size": 512, "timeout": 30}
ECS_DEFAULTS = {"cpu": 256, "memory": 512}
SCHEDULE_RE = re.compile(r"(rate|cron|at)\(.+\)")


class ConfigError(Exception):
    """The repo asks for something the stacks cannot make; the message says what to change."""


@dataclass(frozen=True)
class Settings:
    """infra/cdk.json's context, checked."""

    project: str
    region: str
    ecr_repository_prefix: str
    github_repository: str
    github_oidc_provider_arn: str
    log_retention_days: int
    lambda_architecture: str
    ecs_architecture: str
    artifacts_bucket: str
    ecs_subnets: tuple[str, ...]
    ecs_security_groups: tuple[str, ...]
    ecs_assign_public_ip: bool

    @classmethod
    def from_context(cls, get: Any) -> Settings:
        """`get` is `node.try_get_context`; a missing key takes its default."""

        def text(key: str, default: str = "") -> str:
            value = get(key)
            return default if value is None else str(value)

        def strings(key: str) -> tuple[str, ...]:
            value = get(key) or []
            if isinstance(value, str):  # `-c ecs_subnets=a,b` on the command line
                value = [v for v in value.split(",") if v]
            return tuple(str(v) for v in value)

        project = text("project")
        if not project:
            raise ConfigError('infra/cdk.json: set "project" (the repo\'s slug) in "context"')
        repository = text("github_repository")
        if repository and not re.fullmatch(r"[\w.-]+/[\w.-]+", repository):
            raise ConfigError(f"infra/cdk.json: github_repository {repository!r} is not owner/name")
        provider = text("github_oidc_provider_arn")
        if provider and not provider.endswith(":oidc-provider/token.actions.githubusercontent.com"):
            raise ConfigError(
                f"infra/cdk.json: github_oidc_provider_arn {provider!r} is not GitHub's provider "
                "(arn:aws:iam::<account>:oidc-provider/token.actions.githubusercontent.com)"
            )
        for key in ("lambda_architecture", "ecs_architecture"):
            if text(key, "x86_64") not in ("x86_64", "arm64"):
                raise ConfigError(f"infra/cdk.json: {key} must be x86_64 or arm64")
        return cls(
            project=project,
            region=text("region", "eu-west-1"),
            ecr_repository_prefix=text("ecr_repository_prefix"),
            github_repository=repository,
            github_oidc_provider_arn=provider,
            log_retention_days=int(text("log_retention_days", "30")),
            lambda_architecture=text("lambda_architecture", "x86_64"),
            ecs_architecture=text("ecs_architecture", "x86_64"),
            artifacts_bucket=text("artifacts_bucket"),
            ecs_subnets=strings("ecs_subnets"),
            ecs_security_groups=strings("ecs_security_groups"),
            ecs_assign_public_ip=text("ecs_assign_public_ip", "false").lower() == "true",
        )

    def stack_name(self, package: str) -> str:
        return monorepo.stack_name(self.project, package)

    @property
    def foundation_stack(self) -> str:
        return monorepo.stack_name(self.project, monorepo.FOUNDATION)

    @property
    def role_path(self) -> str:
        """The path of every role the stacks create: CD may pass exactly these."""
        return f"/{self.project}/"

    @property
    def runtime_repository(self) -> str:
        return self.ecr_repository_prefix + monorepo.runtime_repository(self.project)

    @property
    def cluster_name(self) -> str:
        return self.project


@dataclass(frozen=True)
class Deployable:
    """One package that runs on AWS, and its settings from its pyproject.toml."""

    name: str  # folder under src/, e.g. nt_api
    kind: str  # "lambda" or "ecs"
    version: str
    settings: dict[str, Any]


def deployables(root: Path = ROOT) -> list[Deployable]:
    """Every Lambda function and ECS job under src/, as scripts/monorepo.py finds them."""
    found = []
    for package in monorepo.discover(root).values():
        if package.deploy not in ("lambda", "ecs"):
            continue
        project = monorepo.load_toml(package.path / "pyproject.toml")
        table = project.get("tool", {}).get("monorepo", {}).get(package.deploy, {})
        defaults = LAMBDA_DEFAULTS if package.deploy == "lambda" else ECS_DEFAULTS
        settings = {**defaults, **table}
        _check(package.dir_name, package.deploy, settings)
        found.append(Deployable(package.dir_name, package.deploy, package.version, settings))
    return sorted(found, key=lambda d: d.name)


def _check(name: str, kind: str, settings: dict[str, Any]) -> None:
    where = f"src/{name}/pyproject.toml [tool.monorepo.{kind}]"
    if kind == "lambda":
        if not 128 <= int(settings["memory_size"]) <= 10240:
            raise ConfigError(f"{where}: memory_size must be 128 to 10240 (MB)")
        if not 1 <= int(settings["timeout"]) <= 900:
            raise ConfigError(f"{where}: timeout must be 1 to 900 (seconds)")
    schedule = settings.get("schedule")
    if schedule is not None and not SCHEDULE_RE.fullmatch(str(schedule)):
        raise ConfigError(f"{where}: schedule {schedule!r} must be rate(...), cron(...) or at(...)")


def python_version(root: Path = ROOT) -> str:
    """The Python of every image (.python-version, the one place it is written)."""
    return (root / ".python-version").read_text().strip()


def iam_document(name: str, **values: str) -> dict[str, Any]:
    """A deploy/iam/ document with its `${NAME}` placeholders filled from `values`.

    Only the named placeholders are replaced, so IAM's own `${aws:...}` variables stay.
    """
    text = (IAM_DOCS / name).read_text()
    for key, value in values.items():
        text = text.replace("${" + key + "}", value)
    left = sorted(set(re.findall(r"\$\{([A-Z_]+)\}", text)))
    if left:
        raise ConfigError(f"deploy/iam/{name}: no value for {', '.join(left)}")
    return cast(dict[str, Any], json.loads(text))
