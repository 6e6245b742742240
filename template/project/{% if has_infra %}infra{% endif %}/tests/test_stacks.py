"""The stacks as synthesized from this repo: what CloudFormation would be asked to create.

One app is synthesized for the module (CDK's library starts Node.js once), with a
github_repository for the foundation stack. Each test reads one stack's template with
aws_cdk.assertions; cfn-lint checks every template against CloudFormation's resource specs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import monorepo
import pytest
from aws_cdk import App, Stack
from aws_cdk.assertions import Match, Template
from stacks import ROOT
from stacks.app import build
from stacks.job import JobStack
from stacks.repo import ConfigError, Deployable, Settings, deployables

CONTEXT = json.loads((ROOT / "infra" / "cdk.json").read_text())["context"]
PROJECT = CONTEXT["project"]
PACKAGES = deployables()
LAMBDAS = [p for p in PACKAGES if p.kind == "lambda"]
JOBS = [p for p in PACKAGES if p.kind == "ecs"]


@pytest.fixture(scope="module")
def outdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cdk.out")


@pytest.fixture(scope="module")
def templates(outdir: Path) -> dict[str, Template]:
    app = build({"github_repository": "acme/monorepo"}, outdir=str(outdir))
    app.synth()
    return {
        child.stack_name: Template.from_stack(child)
        for child in app.node.children
        if isinstance(child, Stack)
    }


def test_templates_pass_cfn_lint(templates: dict[str, Template], outdir: Path) -> None:
    files = sorted(str(path) for path in outdir.glob("*.template.json"))
    assert len(files) == len(templates)
    result = subprocess.run(
        [str(Path(sys.executable).with_name("cfn-lint")), *files],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_one_stack_per_deployable_package_and_the_foundation(
    templates: dict[str, Template],
) -> None:
    expected = {monorepo.stack_name(PROJECT, p.name) for p in PACKAGES}
    assert set(templates) == expected | {monorepo.stack_name(PROJECT, monorepo.FOUNDATION)}


def test_no_bootstrap_and_no_custom_resources(templates: dict[str, Template]) -> None:
    """Deployable without `cdk bootstrap`, and nothing runs a Lambda of CDK's own."""
    for template in templates.values():
        body = template.to_json()
        assert "BootstrapVersion" not in body.get("Parameters", {})
        assert not [r for r in body["Resources"].values() if r["Type"].startswith("Custom::")]


@pytest.mark.parametrize("package", LAMBDAS, ids=lambda p: p.name)
def test_function_runs_its_image_by_digest(
    templates: dict[str, Template], package: Deployable
) -> None:
    template = templates[monorepo.stack_name(PROJECT, package.name)]
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "PackageType": "Image",
            "Architectures": [CONTEXT["lambda_architecture"]],
            "FunctionName": monorepo.stack_name(PROJECT, package.name),
            "MemorySize": package.settings["memory_size"],
            "Timeout": package.settings["timeout"],
            "Code": {
                "ImageUri": {"Fn::If": ["HasImageDigest", Match.any_value(), Match.any_value()]}
            },
        },
    )
    parameters = template.to_json()["Parameters"]
    assert parameters["Version"]["Default"] == package.version
    template.has_output("FunctionName", {})


@pytest.mark.parametrize("package", JOBS, ids=lambda p: p.name)
def test_job_task_role_reads_its_own_tarballs_only(
    templates: dict[str, Template], package: Deployable
) -> None:
    import iam_policy  # scripts/iam_policy.py: in repos with ECS jobs only

    template = templates[monorepo.stack_name(PROJECT, package.name)]
    policy = iam_policy.task_role_policy(CONTEXT["artifacts_bucket"], package.name)
    template.has_resource_properties(
        "AWS::IAM::Role",
        {"Policies": [{"PolicyName": "own-venv-tarballs", "PolicyDocument": policy}]},
    )
    template.has_resource_properties(
        "AWS::ECS::TaskDefinition",
        {
            "Family": monorepo.stack_name(PROJECT, package.name),
            "RuntimePlatform": {"CpuArchitecture": CONTEXT["ecs_architecture"].upper()},
            "ContainerDefinitions": [
                Match.object_like(
                    {
                        "Command": [package.name],
                        "LinuxParameters": {"InitProcessEnabled": True},
                        "Environment": Match.array_with(
                            [
                                {"Name": "PACKAGE_VERSION", "Value": {"Ref": "PackageVersion"}},
                                {"Name": "PACKAGE_SHA256", "Value": {"Ref": "PackageSha256"}},
                            ]
                        ),
                    }
                )
            ],
        },
    )
    template.has_output("TaskDefinitionArn", {})


def test_foundation_holds_the_documented_policies(templates: dict[str, Template]) -> None:
    template = templates[monorepo.stack_name(PROJECT, monorepo.FOUNDATION)]
    roles = template.find_resources("AWS::IAM::Role")
    (cd_role,) = roles.values()
    statements = cd_role["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    documented = json.loads((ROOT / "deploy" / "iam" / "cd-role-policy.json").read_text())
    assert [s.get("Sid") for s in statements] == [s.get("Sid") for s in documented["Statement"]]
    template.has_output("CdRoleArn", {})
    if JOBS:
        written_once = json.loads(
            (ROOT / "deploy" / "iam" / "artifacts-bucket-policy.json").read_text()
        )["Statement"]
        policy: dict[str, Any] = next(
            iter(template.find_resources("AWS::S3::BucketPolicy").values())
        )["Properties"]["PolicyDocument"]
        for statement in written_once:
            assert statement in policy["Statement"]
        template.has_output("ArtifactsBucketName", {})
        template.has_output("ClusterName", {})


def test_without_github_repository_the_foundation_asks_for_it(tmp_path: Path) -> None:
    """Left blank in infra/cdk.json, the repository is the stack parameter GitHubRepository,
    and the CD role's trust names whatever it is given."""
    app = build({"github_repository": ""}, outdir=str(tmp_path))
    foundation = next(
        child
        for child in app.node.children
        if isinstance(child, Stack)
        and child.stack_name == monorepo.stack_name(PROJECT, monorepo.FOUNDATION)
    )
    template = Template.from_stack(foundation)
    template.has_parameter("GitHubRepository", {"Type": "String"})
    trust = json.dumps(template.find_resources("AWS::IAM::Role"))
    assert '{"Ref": "GitHubRepository"}' in trust


@pytest.mark.parametrize("package", JOBS, ids=lambda p: p.name)
def test_a_schedule_needs_subnets(package: Deployable) -> None:
    scheduled = replace(package, settings={**package.settings, "schedule": "rate(1 hour)"})
    settings = Settings.from_context({**CONTEXT, "ecs_subnets": []}.get)
    with pytest.raises(ConfigError, match="ecs_subnets"):
        JobStack(App(), settings, scheduled)
