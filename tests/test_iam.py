"""The IAM policies a generated repo ships (deploy/iam/), proven against moto's server with
IAM enforcement on: the release and runtime scripts work under exactly these permissions, and
stop working when any one action they need is taken away.

moto enforces identity policies of users, so an IAM user holding the shipped permissions
document stands in for the role (CD's, the ECS task's) that would hold it in AWS. Tarballs
are stand-ins (tests/venv_tarballs.py). CD's ECR tag check (scripts/ecr_tag_free.sh) runs
the pinned AWS CLI v1 from PyPI against moto's ECR.
"""

from __future__ import annotations

import fnmatch
import json
import os
import string
import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import pytest
import yaml
from botocore.exceptions import ClientError
from conftest import boto_credentials, aws_env, copy_template, run
from venv_tarballs import venv_tarball

BUCKET = "iam-artifacts"
PKG = "nt_api"
# What a team substitutes before applying the documents (deploy/iam/README.md).
PLACEHOLDERS = {
    "AWS_ACCOUNT_ID": "123456789012",
    "ECR_REPOSITORY_PREFIX": "",
    "GITHUB_REPOSITORY": "acme/monorepo",
}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_template(
        tmp_path_factory.mktemp("iam") / "repo", tasks=False, artifacts_bucket=BUCKET
    )


@pytest.fixture(scope="module")
def admin(moto_iam: dict[str, str]) -> dict[str, str]:
    s3 = boto3.client(
        "s3", endpoint_url=moto_iam["AWS_ENDPOINT_URL"], **boto_credentials(moto_iam)
    )
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    return moto_iam


def policy(repo: Path, name: str) -> dict:
    text = (repo / "deploy" / "iam" / name).read_text()
    return json.loads(string.Template(text).substitute(PLACEHOLDERS))


def without(document: dict, action: str) -> dict:
    """The document with one action taken out of every statement (and empty ones dropped)."""
    statements = []
    for statement in document["Statement"]:
        actions = (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        kept = [a for a in actions if a != action]
        if kept:
            statements.append({**statement, "Action": kept})
    assert statements != document["Statement"], f"{action} is not in the policy"
    return {**document, "Statement": statements}


def user_with(admin: dict[str, str], document: dict) -> dict[str, str]:
    """Credentials of a new IAM user holding exactly `document`, as script environment."""
    iam = boto3.client("iam", endpoint_url=admin["AWS_ENDPOINT_URL"], **boto_credentials(admin))
    name = f"user-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="shipped", PolicyDocument=json.dumps(document))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return {
        **admin,
        "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
    }


def release(repo: Path, creds: dict[str, str], dist: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "scripts/upload_all.py", f"s3://{BUCKET}/venvs", "--dist", str(dist)]
    return run(cmd, cwd=repo, check=False, env=aws_env(creds))


def start_job(repo: Path, creds: dict[str, str], venvs: Path) -> subprocess.CompletedProcess[str]:
    env = aws_env(creds, ARTIFACTS_URI=f"s3://{BUCKET}/venvs", VENVS_DIR=str(venvs))
    cmd = [sys.executable, "docker/runtime/run_venv.py", PKG]
    return run(cmd, cwd=repo, check=False, env=env)


def release_twice(repo: Path, creds: dict[str, str], tmp_path: Path) -> list[int]:
    """A new version released, then the same release repeated (a re-run tag): exit codes."""
    dist = tmp_path / "dist"
    venv_tarball(dist / f"{PKG}__venv_{uuid.uuid4().hex[:8]}.tar.gz")
    return [release(repo, creds, dist).returncode, release(repo, creds, dist).returncode]


def test_shipped_policies_allow_releasing_and_running(repo: Path, admin, tmp_path: Path) -> None:
    cd = user_with(admin, policy(repo, "cd-role-policy.json"))
    task = user_with(admin, policy(repo, "ecs-task-role-policy.json"))
    dist = tmp_path / "dist"
    venv_tarball(dist / f"{PKG}__venv_1.0.{uuid.uuid4().int % 1000}.tar.gz")
    first, again = release(repo, cd, dist), release(repo, cd, dist)
    assert first.returncode == 0 and first.stdout.startswith("released"), first.stderr
    assert again.returncode == 0 and again.stdout.startswith("unchanged"), again.stderr

    started = start_job(repo, task, tmp_path / "venvs")
    assert started.returncode == 0, started.stderr
    assert json.loads(started.stdout.splitlines()[-1])["job"] == PKG

    # And nothing more: the task role reads only; CD writes only under the prefix.
    s3 = boto3.client("s3", endpoint_url=admin["AWS_ENDPOINT_URL"], **boto_credentials(task))
    with pytest.raises(ClientError, match="AccessDenied"):
        s3.put_object(Bucket=BUCKET, Key="venvs/x.tar.gz", Body=b"x")
    s3 = boto3.client("s3", endpoint_url=admin["AWS_ENDPOINT_URL"], **boto_credentials(cd))
    with pytest.raises(ClientError, match="AccessDenied"):
        s3.put_object(Bucket=BUCKET, Key="elsewhere/x.tar.gz", Body=b"x")


@pytest.mark.parametrize("action", ["s3:PutObject", "s3:GetObject"])
def test_cd_role_needs_every_action_it_holds(repo: Path, admin, tmp_path: Path, action) -> None:
    """PutObject releases; GetObject reads the recorded digest when a release is repeated."""
    assert release_twice(repo, user_with(admin, policy(repo, "cd-role-policy.json")), tmp_path) == [
        0,
        0,
    ]
    reduced = user_with(admin, without(policy(repo, "cd-role-policy.json"), action))
    assert release_twice(repo, reduced, tmp_path) != [0, 0]


@pytest.mark.parametrize("action", ["s3:ListBucket", "s3:GetObject"])
def test_task_role_needs_every_action_it_holds(repo: Path, admin, tmp_path: Path, action) -> None:
    """ListBucket finds the newest version; GetObject downloads it and its digest."""
    dist = tmp_path / "dist"
    venv_tarball(dist / f"{PKG}__venv_2.0.{uuid.uuid4().int % 1000}.tar.gz")
    assert release(repo, admin, dist).returncode == 0
    reduced = user_with(admin, without(policy(repo, "ecs-task-role-policy.json"), action))
    result = start_job(repo, reduced, tmp_path / "venvs")
    assert result.returncode != 0 and "AccessDenied" in result.stderr


def test_oidc_trust_is_bound_to_the_release_environment(repo: Path, admin) -> None:
    """Only this repo's `release` GitHub environment may assume the CD role: not any tag or
    branch, not a fork. moto accepts the document as a role's trust policy."""
    trust = policy(repo, "github-oidc-trust-policy.json")
    (statement,) = trust["Statement"]
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Condition"] == {
        "StringEquals": {
            "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
            "token.actions.githubusercontent.com:sub": "repo:acme/monorepo:environment:release",
        }
    }
    iam = boto3.client("iam", endpoint_url=admin["AWS_ENDPOINT_URL"], **boto_credentials(admin))
    iam.create_role(
        RoleName=f"cd-{uuid.uuid4().hex[:8]}", AssumeRolePolicyDocument=json.dumps(trust)
    )


def test_policies_follow_deploy_targets(render) -> None:
    """A lambda-only repo has no bucket: no S3 in CD's policy and no task role policy."""
    repo = render(deploy_targets=["lambda"])
    names = sorted(p.name for p in (repo / "deploy" / "iam").glob("*.json"))
    assert names == ["cd-role-policy.json", "github-oidc-trust-policy.json"]
    cd = policy(repo, "cd-role-policy.json")
    assert not [s for s in cd["Statement"] if "s3" in json.dumps(s["Action"])]


# --------------------------------------------------------------------------- ECR tags

# AWS CLI v1 from PyPI stands in for the v2 on GitHub's runners: the same ECR API calls and
# the same "An error occurred (<Code>) ..." messages, which scripts/ecr_tag_free.sh reads.
AWSCLI = "awscli==1.46.3"
RUNTIME_REPOSITORY = "my-monorepo-runtime"
LAMBDA_REPOSITORY = "nt_ingestion"


@pytest.fixture(scope="module")
def aws_on_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A PATH whose `aws` is the pinned CLI, run through uvx."""
    bin_dir = tmp_path_factory.mktemp("awscli")
    aws = bin_dir / "aws"
    aws.write_text(f'#!/bin/sh\nexec uvx --quiet --from {AWSCLI} aws "$@"\n')
    aws.chmod(0o755)
    return f"{bin_dir}:{os.environ['PATH']}"


@pytest.fixture(scope="module")
def ecr(admin: dict[str, str]):
    """The two repositories CD pushes to, one image already released in each."""
    client = boto3.client("ecr", endpoint_url=admin["AWS_ENDPOINT_URL"], **boto_credentials(admin))
    manifest = json.dumps(
        {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json"}
    )
    for name in (RUNTIME_REPOSITORY, LAMBDA_REPOSITORY):
        client.create_repository(repositoryName=name)
        client.put_image(repositoryName=name, imageManifest=manifest, imageTag="released")
    return client


def ecr_resources_widened(document: dict) -> dict:
    """The document with its ECR statement's Resource set to "*".

    moto authorizes ECR calls against the resource "*" (it works out resource ARNs for S3,
    SQS, IAM and STS only), so it denies an action granted on repository ARNs that AWS would
    allow. Widened here, the ECR actions are still enforced one by one; the repository ARNs
    are checked against the names CD pushes to by test_cd_policy_names_the_repositories_cd_pushes.
    """
    statements = [
        {**st, "Resource": "*"} if "ecr:DescribeImages" in st["Action"] else st
        for st in document["Statement"]
    ]
    assert statements != document["Statement"]
    return {**document, "Statement": statements}


def tag_free(
    repo: Path, creds: dict[str, str], path: str, repository: str, tag: str, tmp_path: Path
) -> tuple[subprocess.CompletedProcess[str], str]:
    """CD's step, as cd.yml runs it: the exit code, and what it wrote to $GITHUB_OUTPUT."""
    output = tmp_path / f"output-{uuid.uuid4().hex[:8]}"
    output.touch()
    env = aws_env(creds, PATH=path, GITHUB_OUTPUT=str(output))
    cmd = ["bash", "scripts/ecr_tag_free.sh", repository, tag]
    result = run(cmd, cwd=repo, check=False, env=env)
    return result, output.read_text()


@pytest.mark.parametrize("repository", [RUNTIME_REPOSITORY, LAMBDA_REPOSITORY])
def test_cd_role_tells_a_free_tag_from_a_released_one(
    repo: Path, admin, ecr, aws_on_path: str, tmp_path: Path, repository: str
) -> None:
    """Under the shipped CD policy: a new tag is free, a released one is never pushed again."""
    cd = user_with(admin, ecr_resources_widened(policy(repo, "cd-role-policy.json")))
    result, output = tag_free(repo, cd, aws_on_path, repository, "1.0.0", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert output == "free=true\n"
    result, output = tag_free(repo, cd, aws_on_path, repository, "released", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert output == "free=false\n"
    assert "exists" in result.stdout and "Bump the version" in result.stdout


@pytest.mark.parametrize(
    ("reduced", "repository", "error"),
    [
        ("ecr:DescribeImages", RUNTIME_REPOSITORY, "AccessDenied"),
        (None, "no-such-repository", "RepositoryNotFoundException"),
    ],
    ids=["access-denied", "no-repository"],
)
def test_an_unanswerable_tag_check_fails_the_step(
    repo: Path, admin, ecr, aws_on_path: str, tmp_path: Path, reduced, repository, error
) -> None:
    """Any error but ImageNotFoundException fails the step: it is never read as "free"."""
    document = ecr_resources_widened(policy(repo, "cd-role-policy.json"))
    creds = user_with(admin, without(document, reduced) if reduced else document)
    result, output = tag_free(repo, creds, aws_on_path, repository, "1.0.0", tmp_path)
    assert result.returncode == 1
    assert output == ""
    assert "::error::cannot tell whether" in result.stdout and error in result.stdout


def test_cd_policy_names_the_repositories_cd_pushes(repo: Path) -> None:
    """The ECR statement's ARNs cover the runtime repository and every Lambda package's, as
    cd.yml names them (prefix + runtime name, prefix + package), and nothing else."""
    cd = yaml.safe_load((repo / ".github/workflows/cd.yml").read_text())
    runtime = cd["env"]["RUNTIME_REPOSITORY"]
    statements = policy(repo, "cd-role-policy.json")["Statement"]
    (statement,) = [st for st in statements if "ecr:PutImage" in st["Action"]]

    def covered(name: str) -> bool:
        arn = f"arn:aws:ecr:eu-west-1:{PLACEHOLDERS['AWS_ACCOUNT_ID']}:repository/{name}"
        return any(fnmatch.fnmatchcase(arn, pattern) for pattern in statement["Resource"])

    assert runtime == RUNTIME_REPOSITORY and covered(runtime)
    assert covered(LAMBDA_REPOSITORY) and covered("nt_billing")
    assert not covered("other-team-repository") and not covered("ntx_ingestion")
