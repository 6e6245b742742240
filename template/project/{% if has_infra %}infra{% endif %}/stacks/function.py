"""One stack per Lambda package: its function, execution role and log group.

The function runs the package's image from its ECR repository (pushed by CD) at
`<repository>@<ImageDigest>`, or at the tag `<Version>` until a digest is given (the first
deploy by hand). CD's deploy sets both parameters and nothing else.
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacks.repo import Deployable, Settings
from stacks.roles import trust

ARCHITECTURES = {"x86_64": "x86_64", "arm64": "arm64"}


class FunctionStack(cdk.Stack):
    """Parameters: Version, ImageDigest. Output: FunctionName."""

    def __init__(
        self,
        scope: Construct,
        settings: Settings,
        package: Deployable,
        python: str,
        **kwargs: Any,
    ) -> None:
        name = settings.stack_name(package.name)
        super().__init__(scope, name, **kwargs)
        version = cdk.CfnParameter(
            self,
            "Version",
            type="String",
            default=package.version,
            allowed_pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}$",
            description="The released version of the package: its image's tag",
        )
        digest = cdk.CfnParameter(
            self,
            "ImageDigest",
            type="String",
            default="",
            allowed_pattern=r"^(sha256:[0-9a-f]{64})?$",
            description="The image's digest (sha256:...); empty: the image tagged Version",
        )
        has_digest = cdk.CfnCondition(
            self,
            "HasImageDigest",
            expression=cdk.Fn.condition_not(cdk.Fn.condition_equals(digest.value_as_string, "")),
        )
        repository = (
            f"{self.account}.dkr.ecr.{self.region}.{self.url_suffix}/"
            f"{settings.ecr_repository_prefix}{package.name}"
        )
        image_uri = cdk.Fn.condition_if(
            has_digest.logical_id,
            f"{repository}@{digest.value_as_string}",
            f"{repository}:{version.value_as_string}",
        )

        log_group = logs.CfnLogGroup(
            self,
            "LogGroup",
            log_group_name=f"/aws/lambda/{name}",
            retention_in_days=settings.log_retention_days,
        )
        role = iam.CfnRole(
            self,
            "ExecutionRole",
            path=settings.role_path,
            description=f"Lambda function {name}",
            assume_role_policy_document=trust("lambda.amazonaws.com"),
            policies=[
                iam.CfnRole.PolicyProperty(
                    policy_name="logs",
                    policy_document={
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                                "Resource": f"{log_group.attr_arn}",
                            }
                        ],
                    },
                )
            ],
        )
        function = lambda_.CfnFunction(
            self,
            "Function",
            function_name=name,
            description=f"{package.name} (Python {python}, {settings.lambda_architecture})",
            package_type="Image",
            code=lambda_.CfnFunction.CodeProperty(image_uri=image_uri.to_string()),
            architectures=[ARCHITECTURES[settings.lambda_architecture]],
            memory_size=int(package.settings["memory_size"]),
            timeout=int(package.settings["timeout"]),
            role=role.attr_arn,
            logging_config=lambda_.CfnFunction.LoggingConfigProperty(log_group=log_group.ref),
        )
        cdk.CfnOutput(self, "FunctionName", value=function.ref)
