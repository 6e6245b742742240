"""infrastructure=cdk: the generated CDK app synthesizes, lints, deploys into moto, and follows
the packages in src/ with no edit under infra/.

Answer combinations (a covering set, not the product): every deploy target, both layouts,
both architectures of each kind and three Pythons are each in at least one of

    both-shared       ecs+lambda, shared, Lambda arm64, ECS x86_64, Python 3.13 (the defaults)
    lambda-independent  lambda, independent, Lambda x86_64, Python 3.12, the function's
                      memory and timeout set in its pyproject.toml
    ecs-independent   ecs, independent, ECS arm64, Python 3.11, nested artifact names, the
                      job on a schedule (its pyproject.toml) in subnets (infra/cdk.json)

Each is generated once for the module from this checkout released as 0.1.0 (so `make
new-package` can find it), its infra/ venv made by uv from its cache (hard links, nothing
downloaded again), and synthesized once with `make synth`.

moto (5.2.5, server mode) is lenient or silent on what these checks then read on the
templates instead: its CloudFormation skips AWS::S3::BucketPolicy, AWS::IAM::OIDCProvider
and AWS::Scheduler::Schedule (a warning, no resource), and ignores an ECR repository's
RepositoryPolicyText, LifecyclePolicy and ImageScanningConfiguration and a bucket's
PublicAccessBlockConfiguration and VersioningConfiguration; a task definition keeps its
family, containers and memory only (no task or execution role, runtimePlatform, cpu or network
mode); a function reads back as `PackageType: Zip` and `Architectures: [x86_64]` whatever the
template says.
"""

from __future__ import annotations

import ast
import json
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import gha
import pytest
from conftest import (
    MOTO_CREDENTIALS,
    aws_env,
    boto_credentials,
    copy_template,
    free_port,
    run,
    tree_snapshot,
)
from gitrepo import commit_all, git

pytestmark = pytest.mark.slow

PROJECT = "my-monorepo"
ACCOUNT = "123456789012"  # moto's
GITHUB_REPOSITORY = "acme/monorepo"
COPIER = f"COPIER={Path(sys.executable).with_name('copier')}"
DIGEST = "sha256:" + "ab" * 32
TARBALL_SHA256 = "cd" * 32
RUNTIME_TAG = "0123456789abcdef0123456789abcdef01234567"

# What a team writes in a package's pyproject.toml, and in infra/cdk.json, per combination.
SETTINGS = {
    "lambda-independent": (
        {"nt_ingestion": "[tool.monorepo.lambda]\nmemory_size = 1024\ntimeout = 60\n"},
        {},
    ),
    "ecs-independent": (
        {"nt_api": '[tool.monorepo.ecs]\nschedule = "rate(1 hour)"\n'},
        {"ecs_subnets": ["subnet-0123456789abcdef0"], "ecs_assign_public_ip": True},
    ),
}

COMBOS = {
    "both-shared": {},
    "lambda-independent": {
        "deploy_targets": ["lambda"],
        "workspace_layout": "independent",
        "lambda_architecture": "x86_64",
        "python_version": "3.12",
    },
    "ecs-independent": {
        "deploy_targets": ["ecs"],
        "workspace_layout": "independent",
        "ecs_architecture": "arm64",
        "python_version": "3.11",
        "artifact_naming": "nested",
    },
}


@dataclass
class Synthesized:
    name: str
    answers: dict[str, Any]
    repo: Path

    @property
    def out(self) -> Path:
        return self.repo / "infra" / "cdk.out"

    def template(self, stack: str) -> dict[str, Any]:
        return json.loads((self.out / f"{stack}.template.json").read_text())

    @property
    def lambdas(self) -> list[str]:
        return (
            ["nt_ingestion"] if "lambda" in self.answers.get("deploy_targets", ["lambda"]) else []
        )

    @property
    def jobs(self) -> list[str]:
        return ["nt_api"] if "ecs" in self.answers.get("deploy_targets", ["ecs"]) else []

    def architecture(self, kind: str) -> str:
        return self.answers.get(f"{kind}_architecture", {"lambda": "arm64", "ecs": "x86_64"}[kind])


def stack(package: str) -> str:
    return f"{PROJECT}-{package.replace('_', '-')}"


def resources(template: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [r["Properties"] for r in template["Resources"].values() if r["Type"] == kind]


# The combination left exactly as generated: infra/cdk.json untouched, the repository CD runs
# in given at deploy time (the foundation stack's parameter GitHubRepository), as README's
# "First deploy" does. The others name it in infra/cdk.json, the other way README gives.
AS_GENERATED = "both-shared"


def set_context(repo: Path, **context: Any) -> None:
    """Settings of infra/cdk.json a team may change (the repository CD runs in, subnets)."""
    cdk_json = repo / "infra" / "cdk.json"
    config = json.loads(cdk_json.read_text())
    config["context"].update(**context)
    cdk_json.write_text(json.dumps(config, indent=2) + "\n")


# One generated, synthesized repo per combination, for the module (per xdist worker).
_SYNTHESIZED: dict[str, Synthesized] = {}


def synthesize(
    name: str, released_template, tmp_path_factory: pytest.TempPathFactory
) -> Synthesized:
    if name not in _SYNTHESIZED:
        answers = COMBOS[name]
        repo = copy_template(
            tmp_path_factory.mktemp(name) / "repo",
            tasks=True,
            src=released_template.path,
            vcs_ref="0.1.0",
            **answers,
        )
        tables, context = SETTINGS.get(name, ({}, {}))
        for package, table in tables.items():
            with (repo / "src" / package / "pyproject.toml").open("a") as pyproject:
                pyproject.write("\n" + table)
        if name != AS_GENERATED:
            set_context(repo, github_repository=GITHUB_REPOSITORY, **context)
            commit_all(repo, "CD runs in acme/monorepo")
        run(["make", "synth"], cwd=repo)
        _SYNTHESIZED[name] = Synthesized(name, answers, repo)
    return _SYNTHESIZED[name]


@pytest.fixture(scope="module", params=list(COMBOS))
def synthesized(
    request: pytest.FixtureRequest, released_template, tmp_path_factory: pytest.TempPathFactory
) -> Synthesized:
    return synthesize(request.param, released_template, tmp_path_factory)


def test_synth_makes_the_foundation_and_one_stack_per_deployable_package(
    synthesized: Synthesized,
) -> None:
    manifest = json.loads((synthesized.out / "manifest.json").read_text())
    stacks = {
        name for name, a in manifest["artifacts"].items() if a["type"] == "aws:cloudformation:stack"
    }
    expected = {stack("foundation")} | {stack(p) for p in synthesized.lambdas + synthesized.jobs}
    assert stacks == expected
    # Deployable without `cdk bootstrap`: no bootstrap version parameter or rule, no assets
    # (not even the template: the CLI sends it inline), no roles of the bootstrap to assume.
    assert not [a for a in manifest["artifacts"].values() if a["type"] == "cdk:asset-manifest"]
    for name in stacks:
        assert set(manifest["artifacts"][name]["properties"]) <= {
            "templateFile",
            "terminationProtection",
            "validateOnSynth",
        }, name
        template = synthesized.template(name)
        assert "BootstrapVersion" not in template.get("Parameters", {}), name
        assert "Rules" not in template, name
        assert not [r for r in template["Resources"].values() if r["Type"].startswith("Custom::")]
    # README's "First deploy" names the stacks as the app does (scripts/monorepo.py's rule).
    readme = (synthesized.repo / "README.md").read_text()
    for name in stacks:
        assert f"`{name}`" in readme or f"STACKS={name}" in readme, name
    # cdk.out is what `make synth` writes: git ignores it, and the root workspace ignores infra/.
    assert git(synthesized.repo, "status", "--porcelain") == ""


def test_templates_pass_cfn_lint(synthesized: Synthesized) -> None:
    templates = sorted(str(p) for p in synthesized.out.glob("*.template.json"))
    lint = run(
        [str(synthesized.repo / "infra/.venv/bin/cfn-lint"), *templates],
        cwd=synthesized.repo,
        check=False,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_templates_hold_what_moto_ignores(synthesized: Synthesized) -> None:
    """Package type, architectures, the ImageUri by digest, the task role's scope (exactly
    `scripts/iam_policy.py task-role`'s), runtimePlatform, initProcessEnabled, the bucket's
    statements (the write-once document among them), the ECR repositories' settings."""
    repo = synthesized.repo
    prefix_arch = synthesized.architecture
    for package in synthesized.lambdas:
        template = synthesized.template(stack(package))
        (function,) = resources(template, "AWS::Lambda::Function")
        assert function["PackageType"] == "Image"
        assert function["Architectures"] == [prefix_arch("lambda")]
        expected = (1024, 60) if synthesized.name == "lambda-independent" else (512, 30)
        assert (function["MemorySize"], function["Timeout"]) == expected
        condition, by_digest, by_tag = function["Code"]["ImageUri"]["Fn::If"]
        assert condition == "HasImageDigest"
        assert by_digest["Fn::Join"][1][-2:] == [f"/{package}@", {"Ref": "ImageDigest"}]
        assert by_tag["Fn::Join"][1][-2:] == [f"/{package}:", {"Ref": "Version"}]
        assert set(template["Parameters"]) == {"Version", "ImageDigest"}
    for package in synthesized.jobs:
        template = synthesized.template(stack(package))
        (task,) = resources(template, "AWS::ECS::TaskDefinition")
        assert task["RuntimePlatform"] == {
            "CpuArchitecture": {"x86_64": "X86_64", "arm64": "ARM64"}[prefix_arch("ecs")],
            "OperatingSystemFamily": "LINUX",
        }
        (container,) = task["ContainerDefinitions"]
        assert container["LinuxParameters"] == {"InitProcessEnabled": True}
        (task_role,) = [
            r
            for r in resources(template, "AWS::IAM::Role")
            if r["Policies"][0]["PolicyName"] == "own-venv-tarballs"
        ]
        assert task_role["Policies"][0]["PolicyDocument"] == task_role_policy(repo, package)
        assert task["TaskRoleArn"] == {"Fn::GetAtt": ["TaskRole", "Arn"]}
        assert set(template["Parameters"]) == {"PackageVersion", "PackageSha256", "RuntimeImageTag"}
        schedules = resources(template, "AWS::Scheduler::Schedule")
        if synthesized.name == "ecs-independent":
            (schedule,) = schedules
            assert schedule["ScheduleExpression"] == "rate(1 hour)"
            ecs_target = schedule["Target"]["EcsParameters"]
            assert ecs_target["TaskDefinitionArn"] == {"Ref": "TaskDefinition"}
            network = ecs_target["NetworkConfiguration"]["AwsvpcConfiguration"]
            assert network["Subnets"] == ["subnet-0123456789abcdef0"]
            assert network["AssignPublicIp"] == "ENABLED"
        else:
            assert not schedules

    foundation = synthesized.template(stack("foundation"))
    repositories = resources(foundation, "AWS::ECR::Repository")
    expected = set(synthesized.lambdas) | ({f"{PROJECT}-runtime"} if synthesized.jobs else set())
    assert {r["RepositoryName"] for r in repositories} == expected
    for repository in repositories:
        assert repository["ImageTagMutability"] == "IMMUTABLE"
        assert repository["ImageScanningConfiguration"] == {"ScanOnPush": True}
        (rule,) = json.loads(repository["LifecyclePolicy"]["LifecyclePolicyText"])["rules"]
        assert rule["selection"]["tagStatus"] == "untagged"
        pulls = "RepositoryPolicyText" in repository
        assert pulls == (repository["RepositoryName"] in synthesized.lambdas)
    (provider,) = resources(foundation, "AWS::IAM::OIDCProvider")
    assert provider["Url"] == "https://token.actions.githubusercontent.com"
    if synthesized.jobs:
        (bucket,) = resources(foundation, "AWS::S3::Bucket")
        assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
        assert all(bucket["PublicAccessBlockConfiguration"].values())
        assert "BucketEncryption" in bucket
        (policy,) = resources(foundation, "AWS::S3::BucketPolicy")
        statements = policy["PolicyDocument"]["Statement"]
        written_once = json.loads((repo / "deploy/iam/artifacts-bucket-policy.json").read_text())
        for statement in written_once["Statement"]:
            assert statement in statements
        assert {"Bool": {"aws:SecureTransport": "false"}} in [
            s.get("Condition") for s in statements
        ]
        assert len(resources(foundation, "AWS::ECS::Cluster")) == 1
    else:
        assert not resources(foundation, "AWS::S3::Bucket")
        assert not resources(foundation, "AWS::ECS::Cluster")


@pytest.fixture
def moto_server() -> Iterator[dict[str, str]]:
    """A moto server of the test's own, reset (each combination deploys the same names, and
    moto's servers in one process share their state): the environment that points the AWS
    SDKs (boto3, the CDK CLI's) at it."""
    import urllib.request

    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    reset = urllib.request.Request(f"http://127.0.0.1:{port}/moto-api/reset", method="POST")
    urllib.request.urlopen(reset).close()
    yield {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", **MOTO_CREDENTIALS}
    server.stop()


def test_make_deploy_into_moto_then_read_back(synthesized: Synthesized, moto_server: dict) -> None:
    """`make deploy` (the pinned CDK CLI, no bootstrap) creates every stack as a team's first
    deploy does: the foundation, each function at its version's tag, each job at the runtime
    and tarball CD released. Then a function is updated as CD does (previous template, a new
    Version and ImageDigest). The live resources are read back through boto3."""
    env = aws_env(moto_server)
    client = {
        "endpoint_url": moto_server["AWS_ENDPOINT_URL"],
        **boto_credentials(moto_server),
    }
    parameters = [
        f"{stack(job)}:{name}={value}"
        for job in synthesized.jobs
        for name, value in (("RuntimeImageTag", RUNTIME_TAG), ("PackageSha256", TARBALL_SHA256))
    ]
    if synthesized.name == AS_GENERATED:
        parameters.append(f"{stack('foundation')}:GitHubRepository={GITHUB_REPOSITORY}")
    deploy = ["make", "deploy", "APPROVAL=never", f"PARAMETERS={' '.join(parameters)}"]
    run(deploy, cwd=synthesized.repo, env=env)

    cloudformation = boto3.client("cloudformation", **client)
    iam = boto3.client("iam", **client)
    outputs = stack_outputs(cloudformation, stack("foundation"))
    assert outputs["CdRoleArn"] == f"arn:aws:iam::{ACCOUNT}:role/{PROJECT}/{PROJECT}-cd"
    cd_role = iam.get_role(RoleName=f"{PROJECT}-cd")["Role"]
    assert cd_role["AssumeRolePolicyDocument"] == documented(
        synthesized.repo, "github-oidc-trust-policy.json"
    )
    (policy_name,) = iam.list_role_policies(RoleName=f"{PROJECT}-cd")["PolicyNames"]
    granted = iam.get_role_policy(RoleName=f"{PROJECT}-cd", PolicyName=policy_name)
    assert as_json(granted["PolicyDocument"]) == documented(synthesized.repo, "cd-role-policy.json")
    ecr = boto3.client("ecr", **client)
    repositories = {r["repositoryName"]: r for r in ecr.describe_repositories()["repositories"]}
    runtime = {f"{PROJECT}-runtime"} if synthesized.jobs else set()
    assert set(repositories) == set(synthesized.lambdas) | runtime
    assert {r["imageTagMutability"] for r in repositories.values()} == {"IMMUTABLE"}

    functions = boto3.client("lambda", **client)
    for package in synthesized.lambdas:
        name = stack(package)
        assert stack_outputs(cloudformation, name) == {"FunctionName": name}
        registry = f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/{package}"
        function = functions.get_function(FunctionName=name)
        assert function["Code"]["ImageUri"] == f"{registry}:0.1.0"
        configuration = function["Configuration"]
        assert configuration["Role"].startswith(f"arn:aws:iam::{ACCOUNT}:role/{PROJECT}/")
        expected = (1024, 60) if synthesized.name == "lambda-independent" else (512, 30)
        assert (configuration["MemorySize"], configuration["Timeout"]) == expected
        cloudformation.update_stack(
            StackName=name,
            UsePreviousTemplate=True,
            Parameters=[
                {"ParameterKey": "Version", "ParameterValue": "0.2.0"},
                {"ParameterKey": "ImageDigest", "ParameterValue": DIGEST},
            ],
            Capabilities=["CAPABILITY_NAMED_IAM"],
        )
        function = functions.get_function(FunctionName=name)
        assert function["Code"]["ImageUri"] == f"{registry}@{DIGEST}"

    if synthesized.jobs:
        assert outputs["ArtifactsBucketName"] == "nt-artifacts"
        assert outputs["ClusterName"] == PROJECT
        s3 = boto3.client("s3", **client)
        s3.head_bucket(Bucket="nt-artifacts")
        (cluster,) = boto3.client("ecs", **client).describe_clusters(clusters=[PROJECT])["clusters"]
        assert cluster["status"] == "ACTIVE"
    ecs = boto3.client("ecs", **client)
    for package in synthesized.jobs:
        name = stack(package)
        arn = stack_outputs(cloudformation, name)["TaskDefinitionArn"]
        task = ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]
        assert task["family"] == name
        (container,) = task["containerDefinitions"]
        registry = f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com"
        assert container["image"] == f"{registry}/{PROJECT}-runtime:{RUNTIME_TAG}"
        assert container["command"] == [package]
        assert {e["name"]: e["value"] for e in container["environment"]} == {
            "ARTIFACTS_URI": "s3://nt-artifacts/venvs",
            "PACKAGE_VERSION": "0.1.0",
            "PACKAGE_SHA256": TARBALL_SHA256,
        }
        # The roles as the stack made them (moto's task definition drops their ARNs).
        made = {
            r["LogicalResourceId"]: r["PhysicalResourceId"]
            for r in cloudformation.list_stack_resources(StackName=name)["StackResourceSummaries"]
        }
        for logical in ("TaskRole", "ExecutionRole"):
            assert iam.get_role(RoleName=made[logical])["Role"]["Path"] == f"/{PROJECT}/"
        (policy_name,) = iam.list_role_policies(RoleName=made["TaskRole"])["PolicyNames"]
        policy = iam.get_role_policy(RoleName=made["TaskRole"], PolicyName=policy_name)
        assert as_json(policy["PolicyDocument"]) == task_role_policy(synthesized.repo, package)


def as_json(document: str | dict[str, Any]) -> dict[str, Any]:
    """An inline role policy as boto3 returns it. moto's CloudFormation stores one it created
    as the Python text of the template's dict (`{'Version': ...}`), which boto3 hands back as
    a string; AWS returns the JSON document, which boto3 decodes."""
    return ast.literal_eval(document) if isinstance(document, str) else document


def stack_outputs(cloudformation: Any, name: str) -> dict[str, str]:
    (described,) = cloudformation.describe_stacks(StackName=name)["Stacks"]
    assert described["StackStatus"] in ("CREATE_COMPLETE", "UPDATE_COMPLETE"), described
    return {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}


def documented(repo: Path, name: str) -> dict[str, Any]:
    """A deploy/iam/ document filled in as deploy/iam/README.md says (envsubst)."""
    text = (repo / "deploy" / "iam" / name).read_text()
    for key, value in {
        "AWS_ACCOUNT_ID": ACCOUNT,
        "GITHUB_REPOSITORY": GITHUB_REPOSITORY,
        "ECR_REPOSITORY_PREFIX": "",
    }.items():
        text = text.replace("${" + key + "}", value)
    return json.loads(text)


def task_role_policy(repo: Path, package: str) -> dict[str, Any]:
    """What `uv run scripts/iam_policy.py task-role <pkg>` prints in the generated repo."""
    printed = run(["uv", "run", "--quiet", "scripts/iam_policy.py", "task-role", package], cwd=repo)
    return json.loads(printed.stdout)


def test_ci_infra_job_and_lint_pass(released_template, tmp_path_factory) -> None:
    """CI's Infrastructure job, run verbatim on the default answers (make test-infra: the
    generated stack tests with cfn-lint, then mypy strict), and the Lint job's ruff over
    infra/; the root leaves infra/ alone (`uv sync --locked` there installs no CDK)."""
    repo = synthesize("both-shared", released_template, tmp_path_factory).repo
    workflow = gha.load(repo / ".github/workflows/ci.yml")
    assert "infra" in workflow["jobs"]["ci-passed"]["needs"]
    results, _ = gha.run_job(repo, workflow, "infra")
    assert [r.returncode for r in results] == [0], gha.describe(results)
    assert " passed" in results[0].output and "Success: no issues found" in results[0].output
    run(["uv", "run", "--locked", "ruff", "check", "infra"], cwd=repo)
    run(["uv", "run", "--locked", "ruff", "format", "--check", "infra"], cwd=repo)
    run(["uv", "sync", "--locked"], cwd=repo)
    assert not list((repo / ".venv").glob("lib/python*/site-packages/aws_cdk"))
    assert "aws-cdk-lib" not in (repo / "uv.lock").read_text()
    assert git(repo, "status", "--porcelain") == ""


def test_a_new_lambda_package_gets_its_stack_with_no_edit_under_infra(
    released_template, tmp_path_factory, tmp_path: Path
) -> None:
    """`make new-package TYPE=lambda`, then `make synth`: the new function's stack is there,
    and `make test-infra` (the repo's own stack tests, mypy) checks it."""
    base = synthesize("lambda-independent", released_template, tmp_path_factory)
    repo = tmp_path / "repo"
    shutil.copytree(
        base.repo, repo, symlinks=True, ignore=shutil.ignore_patterns(".venv", "cdk.out")
    )
    run(["make", "new-package", "NAME=billing", "TYPE=lambda", COPIER], cwd=repo)
    run(["make", "synth"], cwd=repo)
    added = Synthesized(base.name, base.answers, repo)
    (function,) = resources(added.template(stack("nt_billing")), "AWS::Lambda::Function")
    assert function["FunctionName"] == stack("nt_billing")
    assert function["Architectures"] == ["x86_64"]
    (repository,) = [
        r
        for r in resources(added.template(stack("foundation")), "AWS::ECR::Repository")
        if r["RepositoryName"] == "nt_billing"
    ]
    assert repository["ImageTagMutability"] == "IMMUTABLE"
    # The repo's own infra tests (and mypy) cover the new function too, in a repo without
    # the ecs target (no scripts/iam_policy.py there).
    tested = run(["make", "test-infra"], cwd=repo)
    assert (
        "nt_billing"
        in run(
            ["uv", "run", "--locked", "--directory", "infra", "pytest", "-q", "--collect-only"],
            cwd=repo,
        ).stdout
    )
    assert "Success: no issues found" in tested.stdout
    assert git(repo, "status", "--porcelain", "--", "infra") == ""
    assert git(repo, "diff", "HEAD", "--stat", "--", "infra") == ""


def test_none_generates_no_infrastructure(render) -> None:
    """infrastructure=none: the repo as it was before the answer existed (no file added, none
    mentioning infra/ or CDK); cdk adds infra/ and CD's deploy script, no other file."""
    none, cdk = render(infrastructure="none"), render()
    none_files, cdk_files = set(tree_snapshot(none)), set(tree_snapshot(cdk))
    infra = {f for f in cdk_files if f.startswith("infra/")} | {"scripts/deploy_release.py"}
    assert infra >= {"infra/app.py", "infra/cdk.json", "infra/pyproject.toml"}
    assert none_files == cdk_files - infra
    answers = (none / ".copier-answers.yml").read_text()
    assert "infrastructure: none" in answers
    # scripts/ are the same code in both: they lock and check infra/ only where it exists.
    for path, text in tree_snapshot(none).items():
        if path.startswith("scripts/"):
            continue
        words = text.decode(errors="replace")
        assert "infra/" not in words and "cdk" not in words.lower(), path
