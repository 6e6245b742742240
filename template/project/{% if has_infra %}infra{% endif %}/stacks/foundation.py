"""The foundation stack: what every release needs before it can be published and deployed.

The artifacts bucket (when the repo has ECS jobs), the ECR repositories, the GitHub OIDC
provider, the CD role, and the ECS cluster. The CD role's trust and permissions and the
bucket's write-once rule are the documents under deploy/iam/, read and filled in here: one
source for the repo's documentation, CD's tests and this stack.
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks.repo import ConfigError, Deployable, Settings, iam_document

GITHUB_OIDC_URL = "https://token.actions.githubusercontent.com"
GITHUB_REPOSITORY_PATTERN = r"[\w.-]+/[\w.-]+"
# Untagged images are what a push leaves behind (a tag moved off them never happens: the
# repositories are tag-immutable); released images are all tagged and kept.
UNTAGGED_IMAGE_DAYS = 7


class FoundationStack(cdk.Stack):
    """Outputs: CdRoleArn, and with ECS jobs ClusterName and ArtifactsBucketName."""

    def __init__(
        self, scope: Construct, settings: Settings, packages: list[Deployable], **kwargs: Any
    ) -> None:
        super().__init__(scope, settings.foundation_stack, **kwargs)
        # A repo with the ecs target has the bucket's name in infra/cdk.json, jobs or not.
        has_ecs = bool(settings.artifacts_bucket) or any(p.kind == "ecs" for p in packages)
        if has_ecs:
            self._artifacts_bucket(settings)
        for package in packages:
            if package.kind == "lambda":
                self._repository(settings.ecr_repository_prefix + package.name, lambda_=True)
        if has_ecs:
            self._repository(settings.runtime_repository, lambda_=False)
        self._cd_role(settings)
        if has_ecs:
            cluster = ecs.CfnCluster(self, "Cluster", cluster_name=settings.cluster_name)
            cdk.CfnOutput(self, "ClusterName", value=cluster.ref)

    def _artifacts_bucket(self, settings: Settings) -> None:
        bucket = s3.Bucket(
            self,
            "ArtifactsBucket",
            bucket_name=settings.artifacts_bucket,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=False,  # the TLS-only statement is in the policy below
            versioned=True,
            # Released tarballs are what running tasks fetch: deleting the stack keeps them.
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )
        written_once = iam_document("artifacts-bucket-policy.json")["Statement"]
        for statement in written_once:
            for resource in _as_list(statement.get("Resource")):
                if not resource.startswith(f"arn:aws:s3:::{settings.artifacts_bucket}/"):
                    raise ConfigError(
                        f"deploy/iam/artifacts-bucket-policy.json names {resource}, not the "
                        f"bucket {settings.artifacts_bucket} of infra/cdk.json: make them agree"
                    )
        tls_only = {
            "Sid": "TlsOnly",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [
                f"arn:aws:s3:::{settings.artifacts_bucket}",
                f"arn:aws:s3:::{settings.artifacts_bucket}/*",
            ],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }
        # The statements verbatim (an L1 policy): what deploy/iam/ documents is what AWS holds.
        s3.CfnBucketPolicy(
            self,
            "ArtifactsBucketPolicy",
            bucket=bucket.bucket_name,
            policy_document={"Version": "2012-10-17", "Statement": [tls_only, *written_once]},
        )
        cdk.CfnOutput(self, "ArtifactsBucketName", value=bucket.bucket_name)

    def _repository(self, name: str, lambda_: bool) -> None:
        repository = ecr.Repository(
            self,
            f"Repository-{name}",
            repository_name=name,
            image_tag_mutability=ecr.TagMutability.IMMUTABLE,
            image_scan_on_push=True,
            removal_policy=cdk.RemovalPolicy.RETAIN,
            lifecycle_rules=[
                ecr.LifecycleRule(
                    description="Untagged images are leftovers of pushes",
                    tag_status=ecr.TagStatus.UNTAGGED,
                    max_image_age=cdk.Duration.days(UNTAGGED_IMAGE_DAYS),
                )
            ],
        )
        if not lambda_:
            return
        # Lambda pulls a function's image with the service's own identity: only for functions
        # of this account.
        repository.add_to_resource_policy(
            iam.PolicyStatement(
                sid="LambdaPullsFunctionImagesOfThisAccount",
                principals=[iam.ServicePrincipal("lambda.amazonaws.com")],
                actions=["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
                conditions={
                    "StringLike": {
                        "aws:sourceArn": f"arn:{self.partition}:lambda:{self.region}:"
                        f"{self.account}:function:*"
                    }
                },
            )
        )

    def _github_repository(self, settings: Settings) -> str:
        """owner/name of the repository CD runs in: infra/cdk.json's `github_repository`, or
        else the stack parameter GitHubRepository, given at the first deploy (`make deploy
        PARAMETERS=<stack>:GitHubRepository=owner/name`; later deploys keep it), so the stacks
        synthesize and lint from the answers alone."""
        if settings.github_repository:
            return settings.github_repository
        return cdk.CfnParameter(
            self,
            "GitHubRepository",
            type="String",
            allowed_pattern=GITHUB_REPOSITORY_PATTERN,
            description="owner/name of the GitHub repository whose release environment CD runs in",
        ).value_as_string

    def _cd_role(self, settings: Settings) -> None:
        repository = self._github_repository(settings)
        values = {
            "AWS_ACCOUNT_ID": self.account,
            "GITHUB_REPOSITORY": repository,
            "ECR_REPOSITORY_PREFIX": settings.ecr_repository_prefix,
        }
        trust = iam_document("github-oidc-trust-policy.json", **values)
        permissions = iam_document("cd-role-policy.json", **values)
        role = iam.CfnRole(
            self,
            "CdRole",
            role_name=f"{settings.project}-cd",
            path=settings.role_path,
            description=f"CD of {repository} (GitHub environment release)",
            assume_role_policy_document=trust,
            policies=[iam.CfnRole.PolicyProperty(policy_name="cd", policy_document=permissions)],
        )
        if not settings.github_oidc_provider_arn:
            provider = iam.CfnOIDCProvider(
                self,
                "GitHubOidcProvider",
                url=GITHUB_OIDC_URL,
                client_id_list=["sts.amazonaws.com"],
            )
            role.node.add_dependency(provider)
        cdk.CfnOutput(self, "CdRoleArn", value=role.attr_arn)


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)
