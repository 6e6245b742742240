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
from urllib.parse import parse_qs, urlsplit
from urllib.request import Request, urlopen

import boto3
import gha
import pytest
import yaml
from botocore.exceptions import ClientError
from conftest import aws_env, boto_credentials, copy_template, run
from gitrepo import commit_all
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


def task_policy(repo: Path, package: str = PKG) -> dict:
    """The task role policy of one ECS job, as the generated script prints it."""
    cmd = [sys.executable, "scripts/iam_policy.py", "task-role", package]
    return json.loads(run(cmd, cwd=repo).stdout)


def start_job(
    repo: Path, creds: dict[str, str], venvs: Path, package: str = PKG, *args: str
) -> subprocess.CompletedProcess[str]:
    env = aws_env(creds, ARTIFACTS_URI=f"s3://{BUCKET}/venvs", VENVS_DIR=str(venvs))
    cmd = [sys.executable, "docker/runtime/run_venv.py", package, *args]
    return run(cmd, cwd=repo, check=False, env=env)


def release_twice(repo: Path, creds: dict[str, str], tmp_path: Path) -> list[int]:
    """A new version released, then the same release repeated (a re-run tag): exit codes."""
    dist = tmp_path / "dist"
    venv_tarball(dist / f"{PKG}__venv_3.{uuid.uuid4().int % 10**9}.tar.gz")
    return [release(repo, creds, dist).returncode, release(repo, creds, dist).returncode]


def test_shipped_policies_allow_releasing_and_running(repo: Path, admin, tmp_path: Path) -> None:
    cd = user_with(admin, policy(repo, "cd-role-policy.json"))
    task = user_with(admin, task_policy(repo))
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
    reduced = user_with(admin, without(task_policy(repo), action))
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
    """A lambda-only repo has no bucket: no S3 in CD's policy, no bucket policy and no task
    role policies."""
    repo = render(deploy_targets=["lambda"])
    names = sorted(p.name for p in (repo / "deploy" / "iam").glob("*.json"))
    assert names == ["cd-role-policy.json", "github-oidc-trust-policy.json"]
    assert not (repo / "scripts" / "iam_policy.py").exists()
    cd = policy(repo, "cd-role-policy.json")
    assert not [s for s in cd["Statement"] if "s3" in json.dumps(s["Action"])]


# --------------------------------------------------------------------------- S3 write-once

# What S3 puts in the request context of each call that needs s3:PutObject on the object
# (S3 user guide, "Enforce conditional writes": the three multipart calls that take no
# conditional header carry s3:ObjectCreationOperation = false; CopyObject needs s3:PutObject
# on its destination and S3 refuses it under an enforced condition).
S3_WRITES = {
    "PutObject If-None-Match: *": {"s3:if-none-match": "*", "s3:ObjectCreationOperation": "true"},
    "PutObject": {"s3:ObjectCreationOperation": "true"},
    "PutObject If-Match: <etag>": {"s3:if-match": '"etag"', "s3:ObjectCreationOperation": "true"},
    "CopyObject": {"s3:ObjectCreationOperation": "true"},
    "CreateMultipartUpload": {"s3:ObjectCreationOperation": "false"},
    "UploadPart": {"s3:ObjectCreationOperation": "false"},
    "UploadPartCopy": {"s3:ObjectCreationOperation": "false"},
    "CompleteMultipartUpload": {"s3:ObjectCreationOperation": "true"},
    "CompleteMultipartUpload If-None-Match: *": {
        "s3:if-none-match": "*",
        "s3:ObjectCreationOperation": "true",
    },
}
WRITE_ONCE = {
    "PutObject If-None-Match: *",
    "CreateMultipartUpload",
    "UploadPart",
    "UploadPartCopy",
    "CompleteMultipartUpload If-None-Match: *",
}


def _values(value) -> list:
    return value if isinstance(value, list) else [value]


def _condition_holds(condition: dict, context: dict[str, str]) -> bool:
    """IAM's condition operators these documents use, evaluated as AWS documents them."""
    for operator, keys in condition.items():
        for key, expected in keys.items():
            expected = _values(expected)
            if operator == "Null":
                holds = (key not in context) == (expected == ["true"])
            elif operator == "Bool":
                holds = key in context and context[key] in expected
            elif operator == "StringEquals":
                holds = key in context and context[key] in expected
            elif operator == "StringLike":
                holds = key in context and any(
                    fnmatch.fnmatchcase(context[key], pattern) for pattern in expected
                )
            else:
                raise AssertionError(f"{operator} is not modelled here")
            if not holds:
                return False
    return True


def decision(document: dict, action: str, resource: str, context: dict[str, str]) -> str:
    """"Allow", "Deny" or "implicit deny" for one request, from one document's statements."""
    allowed = False
    for statement in document["Statement"]:
        if not any(fnmatch.fnmatchcase(action, a) for a in _values(statement["Action"])):
            continue
        if not any(fnmatch.fnmatchcase(resource, r) for r in _values(statement["Resource"])):
            continue
        if not _condition_holds(statement.get("Condition", {}), context):
            continue
        if statement["Effect"] == "Deny":
            return "Deny"
        allowed = True
    return "Allow" if allowed else "implicit deny"


def test_cd_role_writes_each_tarball_key_once(repo: Path, admin, tmp_path: Path) -> None:
    """The CD policy lets S3 itself refuse a put over a released tarball: s3:PutObject is
    allowed only with If-None-Match (`s3:if-none-match` present), plus the multipart calls
    that take no conditional header (`s3:ObjectCreationOperation` false), as the S3 user
    guide's "Enforce conditional writes" does. A plain PutObject, a CompleteMultipartUpload
    without the header and a CopyObject into the prefix are refused.

    moto 5.2.5 does not evaluate these condition keys: its policy conditions implement
    StringEquals only and take any other operator as met (moto/iam/policy_conditions.py), so
    under its enforcement a put without If-None-Match still goes through (asserted last: when
    moto learns the keys, that assertion fails and this test should prove the denial there).
    So the statements are checked as documents: their shape, and what AWS decides for each
    kind of write by the documented semantics of Null and Bool. Under moto's enforcement the
    release path itself works: a conditional put, the digest read back, nothing elsewhere.
    """
    cd = policy(repo, "cd-role-policy.json")
    prefix = f"arn:aws:s3:::{BUCKET}/venvs/*"
    puts = [st for st in cd["Statement"] if "s3:PutObject" in _values(st["Action"])]
    assert puts == [
        {
            "Sid": "ReleaseVenvTarballsOnlyUnderNewKeys",
            "Effect": "Allow",
            "Action": "s3:PutObject",
            "Resource": prefix,
            "Condition": {"Null": {"s3:if-none-match": "false"}},
        },
        {
            "Sid": "UploadPartsOfMultipartUploads",
            "Effect": "Allow",
            "Action": "s3:PutObject",
            "Resource": prefix,
            "Condition": {"Bool": {"s3:ObjectCreationOperation": "false"}},
        },
    ]
    key = f"arn:aws:s3:::{BUCKET}/venvs/{PKG}__venv_1.0.0.tar.gz"
    decided = {call: decision(cd, "s3:PutObject", key, ctx) for call, ctx in S3_WRITES.items()}
    assert {call for call, effect in decided.items() if effect == "Allow"} == WRITE_ONCE
    outside = f"arn:aws:s3:::{BUCKET}/elsewhere/x.tar.gz"
    assert decision(cd, "s3:PutObject", outside, S3_WRITES["PutObject If-None-Match: *"]) != "Allow"

    # The allowed path under moto's enforcement: released, repeated, and refused elsewhere.
    creds = user_with(admin, cd)
    assert release_twice(repo, creds, tmp_path) == [0, 0]
    s3 = boto3.client("s3", endpoint_url=admin["AWS_ENDPOINT_URL"], **boto_credentials(creds))
    with pytest.raises(ClientError, match="AccessDenied"):
        s3.put_object(Bucket=BUCKET, Key="elsewhere/x.tar.gz", Body=b"x", IfNoneMatch="*")
    # moto's gap, kept visible (see the docstring).
    s3.put_object(Bucket=BUCKET, Key=f"venvs/moto-{uuid.uuid4().hex[:8]}", Body=b"x")


def test_bucket_policy_makes_every_writer_write_once(repo: Path, admin) -> None:
    """deploy/iam/artifacts-bucket-policy.json denies, for every principal, a write into the
    artifacts prefix that could replace an object: an object-creating call (PutObject,
    CompleteMultipartUpload, CopyObject: `s3:ObjectCreationOperation` true) without
    If-None-Match. Multipart parts stay allowed; nothing outside the prefix is touched.

    moto does not evaluate `s3:if-none-match` or `s3:ObjectCreationOperation` (see
    test_cd_role_writes_each_tarball_key_once), and applies bucket policies with conditions
    taken as met: under it this Deny would refuse every put. So the statement is checked as a
    document, and S3's acceptance of it is checked on a bucket of its own.
    """
    document = policy(repo, "artifacts-bucket-policy.json")
    assert document["Statement"] == [
        {
            "Sid": "ReleasedVenvTarballsAreWriteOnce",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:PutObject",
            "Resource": f"arn:aws:s3:::{BUCKET}/venvs/*",
            "Condition": {
                "Null": {"s3:if-none-match": "true"},
                "Bool": {"s3:ObjectCreationOperation": "true"},
            },
        }
    ]
    key = f"arn:aws:s3:::{BUCKET}/venvs/{PKG}/venv_1.0.0.tar.gz"
    denied = {
        call
        for call, ctx in S3_WRITES.items()
        if decision(document, "s3:PutObject", key, ctx) == "Deny"
    }
    # If-Match is a conditional overwrite: refused too, a released key is never replaced.
    assert denied == set(S3_WRITES) - WRITE_ONCE
    outside = f"arn:aws:s3:::{BUCKET}/elsewhere/x"
    assert decision(document, "s3:PutObject", outside, S3_WRITES["PutObject"]) != "Deny"

    s3 = boto3.client("s3", endpoint_url=admin["AWS_ENDPOINT_URL"], **boto_credentials(admin))
    bucket = f"bucket-policy-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    text = json.dumps(document).replace(BUCKET, bucket)
    s3.put_bucket_policy(Bucket=bucket, Policy=text)
    assert json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"]) == json.loads(text)


def test_readmes_tell_a_team_to_apply_the_bucket_policy(repo: Path) -> None:
    """The write-once rule is AWS's only once the bucket policy is applied; versioning keeps
    a replaced or deleted object recoverable."""
    iam_readme = (repo / "deploy" / "iam" / "README.md").read_text()
    assert "aws s3api put-bucket-policy" in iam_readme
    assert "artifacts-bucket-policy.json" in iam_readme
    assert "put-bucket-versioning" in iam_readme and "recover" in iam_readme
    assert "scripts/iam_policy.py task-role" in iam_readme
    readme = (repo / "README.md").read_text()
    assert "deploy/iam/artifacts-bucket-policy.json" in readme
    assert "scripts/iam_policy.py task-role" in readme


# --------------------------------------------------------------------------- one role per job

OTHER = "nt_reports"


@pytest.fixture(scope="module")
def two_jobs(tmp_path_factory: pytest.TempPathFactory, admin) -> Path:
    """A repo with a second ECS job added by the package kind (no hand edit), both jobs
    released by an admin: nt_api in the flat scheme and nested, nt_reports flat."""
    repo = copy_template(
        tmp_path_factory.mktemp("jobs") / "repo", tasks=False, artifacts_bucket=BUCKET
    )
    copy_template(
        repo, tasks=False, template_kind="package", package_name="reports", package_type="ecs"
    )
    dist = tmp_path_factory.mktemp("jobs-dist")
    venv_tarball(dist / f"{PKG}__venv_7.0.0.tar.gz", "api-flat")
    venv_tarball(dist / PKG / "venv_7.1.0.tar.gz", "api-nested")
    venv_tarball(dist / f"{OTHER}__venv_7.0.0.tar.gz", "reports")
    result = release(repo, admin, dist)
    assert result.returncode == 0, result.stderr
    return repo


def test_every_ecs_job_gets_its_own_task_policy(two_jobs: Path) -> None:
    """scripts/iam_policy.py finds the jobs on the filesystem: the added one has a policy at
    once; a library is refused with the list of jobs."""
    assert task_policy(two_jobs, OTHER) != task_policy(two_jobs, PKG)
    # The bucket CI uses when the repository variable ARTIFACTS_BUCKET overrides the answer.
    cmd = [sys.executable, "scripts/iam_policy.py", "task-role", PKG, "--bucket", "other"]
    elsewhere = json.loads(run(cmd, cwd=two_jobs).stdout)
    assert json.dumps(elsewhere) == json.dumps(task_policy(two_jobs, PKG)).replace(BUCKET, "other")
    cmd = [sys.executable, "scripts/iam_policy.py", "task-role", "nt_common"]
    refused = run(cmd, cwd=two_jobs, check=False)
    assert refused.returncode == 2 and not refused.stdout
    assert refused.stderr.strip() == (
        "iam_policy: 'nt_common' is not an ECS job under src/; "
        f"the ECS jobs are: {PKG}, {OTHER}"
    )


def test_a_job_role_reads_its_own_tarballs_only(two_jobs: Path, admin, tmp_path: Path) -> None:
    """Under moto's IAM enforcement, nt_api's task role runs nt_api from either naming scheme
    and reads and lists its keys; nt_reports' tarball is denied to it (the runtime stops with
    AccessDenied), and the other way round."""
    api = user_with(admin, task_policy(two_jobs, PKG))
    reports = user_with(admin, task_policy(two_jobs, OTHER))

    flat = start_job(two_jobs, api, tmp_path / "a", PKG, "--version", "7.0.0")
    assert flat.returncode == 0, flat.stderr
    assert json.loads(flat.stdout.splitlines()[-1])["marker"] == "api-flat"
    nested = start_job(two_jobs, api, tmp_path / "b", PKG, "--version", "7.1.0")
    assert nested.returncode == 0, nested.stderr
    assert json.loads(nested.stdout.splitlines()[-1])["marker"] == "api-nested"
    own = start_job(two_jobs, reports, tmp_path / "c", OTHER)
    assert own.returncode == 0, own.stderr

    for creds, package in ((api, OTHER), (reports, PKG)):
        denied = start_job(two_jobs, creds, tmp_path / f"denied-{package}", package)
        assert denied.returncode != 0 and "AccessDenied" in denied.stderr, denied.stderr

    s3 = boto3.client("s3", endpoint_url=admin["AWS_ENDPOINT_URL"], **boto_credentials(api))
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"venvs/{PKG}/")
    assert [obj["Key"] for obj in listed["Contents"]] == [f"venvs/{PKG}/venv_7.1.0.tar.gz"]
    for key in (f"venvs/{OTHER}__venv_7.0.0.tar.gz", f"venvs/{OTHER}__venv_7.0.0.tar.gz.x"):
        with pytest.raises(ClientError, match="AccessDenied|403"):
            s3.head_object(Bucket=BUCKET, Key=key)
    with pytest.raises(ClientError, match="AccessDenied"):
        s3.get_object(Bucket=BUCKET, Key=f"venvs/{OTHER}__venv_7.0.0.tar.gz")


def test_a_job_role_lists_under_its_own_prefixes_only(two_jobs: Path) -> None:
    """s3:ListBucket is limited by `s3:prefix` to the job's keys in both naming schemes.

    moto does not evaluate `s3:prefix` (its conditions implement StringEquals only, and take
    StringLike as met), so under its enforcement any listing is allowed; the condition is
    checked as a document, by StringLike's documented semantics.
    """
    document = task_policy(two_jobs, PKG)
    (statement,) = [st for st in document["Statement"] if st["Action"] == "s3:ListBucket"]
    assert statement["Resource"] == f"arn:aws:s3:::{BUCKET}"
    assert statement["Condition"] == {
        "StringLike": {"s3:prefix": [f"venvs/{PKG}__venv_*", f"venvs/{PKG}/*"]}
    }
    bucket = f"arn:aws:s3:::{BUCKET}"

    def listing(prefix: str | None) -> str:
        context = {} if prefix is None else {"s3:prefix": prefix}
        return decision(document, "s3:ListBucket", bucket, context)

    for own in (f"venvs/{PKG}__venv_", f"venvs/{PKG}__venv_1", f"venvs/{PKG}/", f"venvs/{PKG}/venv_"):
        assert listing(own) == "Allow", own
    for other in (
        None,
        "",
        "venvs/",
        f"venvs/{OTHER}__venv_",
        f"venvs/{OTHER}/",
        f"venvs/{PKG}_admin__venv_",
        f"venvs/{PKG}_admin/",
    ):
        assert listing(other) == "implicit deny", other
    reads = {
        key: decision(document, "s3:GetObject", f"{bucket}/{key}", {})
        for key in (
            f"venvs/{PKG}__venv_1.0.0.tar.gz",
            f"venvs/{PKG}/venv_1.0.0.tar.gz",
            f"venvs/{OTHER}__venv_1.0.0.tar.gz",
            f"venvs/{OTHER}/venv_1.0.0.tar.gz",
            f"venvs/{PKG}_admin__venv_1.0.0.tar.gz",
        )
    }
    assert [key for key, effect in reads.items() if effect == "Allow"] == [
        f"venvs/{PKG}__venv_1.0.0.tar.gz",
        f"venvs/{PKG}/venv_1.0.0.tar.gz",
    ]


def moto_api(endpoint: str, path: str, method: str = "POST") -> str:
    with urlopen(Request(f"{endpoint}/moto-api/{path}", method=method), timeout=10) as answer:
        return answer.read().decode()


def recorded_list_prefixes(endpoint: str, action) -> list[str]:
    """The `prefix` of every ListObjectsV2 call moto received while `action` ran."""
    moto_api(endpoint, "recorder/reset-recording")
    moto_api(endpoint, "recorder/start-recording")
    try:
        action()
    finally:
        moto_api(endpoint, "recorder/stop-recording")
    recording = moto_api(endpoint, "recorder/download-recording", method="GET")
    prefixes = []
    for line in filter(None, recording.splitlines()):
        query = parse_qs(urlsplit(json.loads(line)["url"]).query, keep_blank_values=True)
        if query.get("list-type") == ["2"]:
            prefixes.append(query.get("prefix", [""])[0])
    return prefixes


def test_the_runtime_lists_only_prefixes_its_role_may_list(
    two_jobs: Path, admin, tmp_path: Path
) -> None:
    """What AWS would decide for the listings the runtime really makes: each ListObjectsV2
    prefix the runtime sent to moto (its request recorder) is evaluated against the job's
    s3:prefix condition, which moto itself does not evaluate."""
    api = user_with(admin, task_policy(two_jobs, PKG))
    document = task_policy(two_jobs, PKG)
    prefixes = recorded_list_prefixes(
        admin["AWS_ENDPOINT_URL"],
        lambda: start_job(two_jobs, api, tmp_path / "venvs", PKG),
    )
    assert prefixes, "the runtime listed nothing"
    bucket = f"arn:aws:s3:::{BUCKET}"
    for prefix in prefixes:
        assert decision(document, "s3:ListBucket", bucket, {"s3:prefix": prefix}) == "Allow", (
            prefix
        )


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
    repo: Path,
    creds: dict[str, str],
    path: str,
    repository: str,
    tag: str,
    tmp_path: Path,
    *inputs: str,
) -> tuple[subprocess.CompletedProcess[str], str]:
    """CD's step, as cd.yml runs it: the exit code, and what it wrote to $GITHUB_OUTPUT."""
    output = tmp_path / f"output-{uuid.uuid4().hex[:8]}"
    output.touch()
    env = aws_env(creds, PATH=path, GITHUB_OUTPUT=str(output))
    cmd = ["bash", "scripts/ecr_tag_free.sh", repository, tag, *inputs]
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


# --------------------------------------------------------------------------- Lambda re-release

SUM_A, SUM_B = "a" * 64, "b" * 64


def push_function_image(ecr, config_digit: str, *tags: str) -> None:
    """One image (config digest of `config_digit`s) pushed to the function's repository under
    every tag, as CD's push of a version tag and its inputs tag."""
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"digest": f"sha256:{config_digit * 64}"},
        }
    )
    for tag in tags:
        ecr.put_image(repositoryName=LAMBDA_REPOSITORY, imageManifest=manifest, imageTag=tag)


@pytest.fixture(scope="module")
def released_function(ecr) -> str:
    """nt_ingestion 0.2.0 as CD pushes it: the version tag and its inputs tag on one image."""
    push_function_image(ecr, "1", "0.2.0", f"inputs-{SUM_A}")
    return "0.2.0"


def test_a_lambda_re_release_is_compared_by_its_inputs(
    repo: Path, admin, released_function: str, aws_on_path: str, tmp_path: Path
) -> None:
    """Under the shipped CD policy: the same inputs again are a no-op (free=false, exit 0);
    other inputs under a released version fail the step with the tag and both sums, as
    upload_all refuses a venv tarball with other bytes; a tag CD pushed before it recorded
    inputs is left alone, saying it cannot compare; a new version is free."""
    cd = user_with(admin, ecr_resources_widened(policy(repo, "cd-role-policy.json")))
    args = (repo, cd, aws_on_path, LAMBDA_REPOSITORY)

    same, output = tag_free(*args, released_function, tmp_path, SUM_A)
    assert same.returncode == 0 and output == "free=false\n", same.stdout + same.stderr
    assert f"same inputs (sha256 {SUM_A}): nothing to do" in same.stdout

    other, output = tag_free(*args, released_function, tmp_path, SUM_B)
    assert other.returncode == 1 and output == "", other.stdout + other.stderr
    assert other.stdout.strip() == (
        f"::error::{LAMBDA_REPOSITORY}:0.2.0 was released from other inputs (sha256 {SUM_A}); "
        f"this build's are sha256 {SUM_B}. Nothing was pushed: bump the version to release a "
        "change."
    )

    legacy, output = tag_free(*args, "released", tmp_path, SUM_B)
    assert legacy.returncode == 0 and output == "free=false\n"
    assert "cannot compare" in legacy.stdout

    new, output = tag_free(*args, "0.3.0", tmp_path, SUM_B)
    assert new.returncode == 0 and output == "free=true\n", new.stdout + new.stderr


@pytest.fixture(scope="module")
def locked_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated repo with its locks and git history, as CD checks it out."""
    repo = copy_template(
        tmp_path_factory.mktemp("cd-lambda") / "repo",
        tasks=True,
        artifacts_bucket=BUCKET,
        python_version="3.12",
    )
    commit_all(repo, "generated")
    return repo


def lambda_steps(repo: Path, *names: str) -> dict:
    """cd.yml with only the Lambda job's steps named (by id), to run as the runner would."""
    cd = gha.load(repo / ".github" / "workflows" / "cd.yml")
    job = cd["jobs"]["lambda"]
    steps = [step for step in job["steps"] if step.get("id") in names]
    assert [step["id"] for step in steps] == list(names)
    return {**cd, "jobs": {"lambda": {**job, "steps": steps}}}


def test_cd_lambda_job_fails_a_changed_re_release(
    locked_repo: Path, admin, ecr, aws_on_path: str, monkeypatch, tmp_path: Path
) -> None:
    """cd.yml's Lambda steps as a runner runs them (sum the inputs, then the tag check under
    the CD policy against moto's ECR): a released version re-run from the same tree is a
    no-op; after its code changed without a version bump, the job fails naming the image tag
    and both sums. The push itself (docker build --push) is stood in for by put_image with
    the two tags CD gives it."""
    repo = locked_repo
    cd = user_with(admin, ecr_resources_widened(policy(repo, "cd-role-policy.json")))
    for key, value in aws_env(cd, PATH=aws_on_path).items():
        monkeypatch.setenv(key, value)
    expressions = {
        "vars.ARTIFACTS_BUCKET": "",
        "vars.ECR_REPOSITORY_PREFIX": "",
        "env.ECR_REPOSITORY_PREFIX": "",
        "matrix.package": LAMBDA_REPOSITORY,
        "matrix.version": "0.1.0",
        "needs.plan.outputs.uv": "0.13.8",
        "needs.plan.outputs.python": "3.12",
    }

    def sum_inputs() -> str:
        results, outputs = gha.run_job(repo, lambda_steps(repo, "inputs"), "lambda", expressions)
        assert [r.returncode for r in results] == [0], gha.describe(results)
        return outputs["sha256"]

    def check_tag(inputs: str):
        step = {**expressions, "steps.inputs.outputs.sha256": inputs}
        return gha.run_job(repo, lambda_steps(repo, "tag"), "lambda", step)

    released = sum_inputs()
    push_function_image(ecr, "2", "0.1.0", f"inputs-{released}")

    (again,), outputs = check_tag(sum_inputs())
    assert again.returncode == 0 and outputs == {"free": "false"}, again.output

    handler = repo / "src" / LAMBDA_REPOSITORY / LAMBDA_REPOSITORY / "handler.py"
    handler.write_text(handler.read_text() + "\n# changed without a version bump\n")
    commit_all(repo, "change the function, keep 0.1.0")
    changed = sum_inputs()
    assert changed != released
    (refused,), outputs = check_tag(changed)
    assert refused.returncode == 1 and outputs == {}, refused.output
    assert f"::error::{LAMBDA_REPOSITORY}:0.1.0 was released from other inputs" in refused.output
    assert released in refused.output and changed in refused.output
