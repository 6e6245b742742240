"""One stack per ECS job: its Fargate task definition, roles, log group and optional schedule.

The task runs the ECS runtime image (`<runtime repository>:<RuntimeImageTag>`, the release
commit CD pushed it under), which fetches the job's venv tarball of `PackageVersion` from the
artifacts bucket, checks it against `PackageSha256` and runs it (docker/runtime/run_venv.py).
CD's deploy sets these three parameters and nothing else. The task role reads this job's
tarballs only: its policy is `scripts/iam_policy.py task-role <pkg>`'s, imported.
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_scheduler as scheduler
from constructs import Construct

from stacks.repo import ConfigError, Deployable, Settings
from stacks.roles import trust

CPU_ARCHITECTURES = {"x86_64": "X86_64", "arm64": "ARM64"}


class JobStack(cdk.Stack):
    """Parameters: PackageVersion, PackageSha256, RuntimeImageTag. Output: TaskDefinitionArn."""

    def __init__(
        self, scope: Construct, settings: Settings, package: Deployable, **kwargs: Any
    ) -> None:
        name = settings.stack_name(package.name)
        super().__init__(scope, name, **kwargs)
        # scripts/iam_policy.py exists in repos with the ecs target only, like ECS jobs.
        import iam_policy

        if not settings.artifacts_bucket:
            raise ConfigError(
                f'{package.name} is an ECS job: set "artifacts_bucket" in infra/cdk.json'
            )
        version = cdk.CfnParameter(
            self,
            "PackageVersion",
            type="String",
            default=package.version,
            allowed_pattern=r"^[A-Za-z0-9][A-Za-z0-9_.!+-]{0,127}$",
            description="The released version of the job (its venv tarball's)",
        )
        sha256 = cdk.CfnParameter(
            self,
            "PackageSha256",
            type="String",
            default="",
            allowed_pattern=r"^([0-9a-f]{64})?$",
            description="The tarball's sha256 as released; empty: the digest recorded with it",
        )
        runtime_tag = cdk.CfnParameter(
            self,
            "RuntimeImageTag",
            type="String",
            allowed_pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$",
            description="The runtime image's tag: the release commit CD pushed it under",
        )
        runtime_arn = (
            f"arn:{self.partition}:ecr:{self.region}:{self.account}:repository/"
            f"{settings.runtime_repository}"
        )
        runtime_uri = (
            f"{self.account}.dkr.ecr.{self.region}.{self.url_suffix}/"
            f"{settings.runtime_repository}:{runtime_tag.value_as_string}"
        )

        log_group = logs.CfnLogGroup(
            self,
            "LogGroup",
            log_group_name=f"/ecs/{name}",
            retention_in_days=settings.log_retention_days,
        )
        task_role = iam.CfnRole(
            self,
            "TaskRole",
            path=settings.role_path,
            description=f"ECS job {name}: reads its own venv tarballs",
            assume_role_policy_document=trust("ecs-tasks.amazonaws.com"),
            policies=[
                iam.CfnRole.PolicyProperty(
                    policy_name="own-venv-tarballs",
                    policy_document=iam_policy.task_role_policy(
                        settings.artifacts_bucket, package.name
                    ),
                )
            ],
        )
        execution_role = iam.CfnRole(
            self,
            "ExecutionRole",
            path=settings.role_path,
            description=f"ECS job {name}: pulls the runtime image, writes logs",
            assume_role_policy_document=trust("ecs-tasks.amazonaws.com"),
            policies=[
                iam.CfnRole.PolicyProperty(
                    policy_name="pull-and-log",
                    policy_document={
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Action": "ecr:GetAuthorizationToken",
                                "Resource": "*",
                            },
                            {
                                "Effect": "Allow",
                                "Action": [
                                    "ecr:BatchCheckLayerAvailability",
                                    "ecr:BatchGetImage",
                                    "ecr:GetDownloadUrlForLayer",
                                ],
                                "Resource": runtime_arn,
                            },
                            {
                                "Effect": "Allow",
                                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                                "Resource": log_group.attr_arn,
                            },
                        ],
                    },
                )
            ],
        )
        task_definition = ecs.CfnTaskDefinition(
            self,
            "TaskDefinition",
            family=name,
            requires_compatibilities=["FARGATE"],
            network_mode="awsvpc",
            cpu=str(package.settings["cpu"]),
            memory=str(package.settings["memory"]),
            runtime_platform=ecs.CfnTaskDefinition.RuntimePlatformProperty(
                cpu_architecture=CPU_ARCHITECTURES[settings.ecs_architecture],
                operating_system_family="LINUX",
            ),
            task_role_arn=task_role.attr_arn,
            execution_role_arn=execution_role.attr_arn,
            container_definitions=[
                ecs.CfnTaskDefinition.ContainerDefinitionProperty(
                    name=package.name,
                    image=runtime_uri,
                    essential=True,
                    # run_venv.py's argument: the job to fetch and run.
                    command=[package.name],
                    environment=[
                        _env("ARTIFACTS_URI", f"s3://{settings.artifacts_bucket}/venvs"),
                        _env("PACKAGE_VERSION", version.value_as_string),
                        _env("PACKAGE_SHA256", sha256.value_as_string),
                    ],
                    # An init process as PID 1 reaps what the job leaves behind and passes
                    # stop signals on, even if the entrypoint changes.
                    linux_parameters=ecs.CfnTaskDefinition.LinuxParametersProperty(
                        init_process_enabled=True
                    ),
                    log_configuration=ecs.CfnTaskDefinition.LogConfigurationProperty(
                        log_driver="awslogs",
                        options={
                            "awslogs-group": log_group.ref,
                            "awslogs-region": self.region,
                            "awslogs-stream-prefix": package.name,
                        },
                    ),
                )
            ],
        )
        cdk.CfnOutput(self, "TaskDefinitionArn", value=task_definition.ref)
        schedule = package.settings.get("schedule")
        if schedule is not None:
            self._schedule(
                settings, name, str(schedule), task_definition, [task_role, execution_role]
            )

    def _schedule(
        self,
        settings: Settings,
        name: str,
        expression: str,
        task_definition: ecs.CfnTaskDefinition,
        roles: list[iam.CfnRole],
    ) -> None:
        if not settings.ecs_subnets:
            raise ConfigError(
                f'{name} has a schedule: set "ecs_subnets" (and "ecs_security_groups") in '
                "infra/cdk.json, where its tasks run"
            )
        family_arn = (
            f"arn:{self.partition}:ecs:{self.region}:{self.account}:task-definition/{name}:*"
        )
        role = iam.CfnRole(
            self,
            "ScheduleRole",
            path=settings.role_path,
            description=f"EventBridge Scheduler: runs {name}",
            assume_role_policy_document=trust("scheduler.amazonaws.com"),
            policies=[
                iam.CfnRole.PolicyProperty(
                    policy_name="run-task",
                    policy_document={
                        "Version": "2012-10-17",
                        "Statement": [
                            {"Effect": "Allow", "Action": "ecs:RunTask", "Resource": family_arn},
                            {
                                "Effect": "Allow",
                                "Action": "iam:PassRole",
                                "Resource": [r.attr_arn for r in roles],
                            },
                        ],
                    },
                )
            ],
        )
        cluster_arn = (
            f"arn:{self.partition}:ecs:{self.region}:{self.account}:cluster/{settings.cluster_name}"
        )
        scheduler.CfnSchedule(
            self,
            "Schedule",
            name=name,
            schedule_expression=expression,
            flexible_time_window=scheduler.CfnSchedule.FlexibleTimeWindowProperty(mode="OFF"),
            target=scheduler.CfnSchedule.TargetProperty(
                arn=cluster_arn,
                role_arn=role.attr_arn,
                ecs_parameters=scheduler.CfnSchedule.EcsParametersProperty(
                    task_definition_arn=task_definition.ref,
                    launch_type="FARGATE",
                    network_configuration=scheduler.CfnSchedule.NetworkConfigurationProperty(
                        awsvpc_configuration=scheduler.CfnSchedule.AwsVpcConfigurationProperty(
                            subnets=list(settings.ecs_subnets),
                            security_groups=list(settings.ecs_security_groups) or None,
                            assign_public_ip=(
                                "ENABLED" if settings.ecs_assign_public_ip else "DISABLED"
                            ),
                        )
                    ),
                ),
            ),
        )


def _env(name: str, value: str) -> ecs.CfnTaskDefinition.KeyValuePairProperty:
    return ecs.CfnTaskDefinition.KeyValuePairProperty(name=name, value=value)
