"""CD's deploy job (cd.yml `deploy`, scripts/deploy_release.py) against moto's CloudFormation,
run as a runner runs it: the plan job's steps, then the deploy step verbatim (`uv run --locked
--no-cache`), under the shipped CD policy with IAM enforcement on.

The package stacks are created first, as an admin, at an earlier release; the artifacts are
released as CD releases them (venv tarballs through scripts/upload_all.py, images put into
moto's ECR under their version tags). Then: a release moves each stack to exactly the released
version and nothing else, a rollback dispatch moves one back without building, a version never
released is refused before anything changes, and a failed update leaves the previous version.

The stacks are the generated repo's own, synthesized by `make synth` (infra/cdk.out), created
in moto as a first `make deploy` would leave them.

moto's gaps, named:

- moto's IAM enforcement checks the calls the script makes (CloudFormation, ECR, S3), not what
  CloudFormation does with the caller's credentials afterwards (Lambda, ECS, iam:PassRole): the
  policy's statements for those are checked with test_iam's evaluator, as AWS documents them.
  moto authorizes CloudFormation and ECR calls against the resource "*", so those statements'
  resources are widened for the moto runs and checked as ARNs by the evaluator. moto's Lambda
  API refuses every signed call under enforcement (SignatureDoesNotMatch): the test's own
  read-backs of the function pass unauthenticated, one call at a time (`function`).
- moto keeps only the parameters a stack was given (UsePreviousValue of a defaulted one fails
  there); the package stacks have no parameter besides the ones CD sets, so only the ECS
  stack's RuntimeImageTag is kept by a rollback, and it is given at creation (it has no
  default).
- moto updates an ECS task definition from the template's keys without mapping them to ECS's
  (moto/ecs/models.py, update_from_cloudformation_json): the new revision has no containers.
  So for ECS the test reads what CloudFormation was told (the stack's parameters, its template
  unchanged) and that a new revision replaced the old, and checks on the synthesized template
  that those parameters are what the container runs (image tag, PACKAGE_VERSION,
  PACKAGE_SHA256; tests/test_infra.py reads the created task definition back). The gap is
  asserted, so a moto that fixes it fails here and this test grows.
- moto updates a stack synchronously, never rolls one back, and fails an update by failing the
  UpdateStack call: the failed-update test makes Lambda reject an image index (a multi-platform
  manifest, which Lambda refuses; moto fails on it for want of `config.size`), and checks the
  function still runs the previous image. moto's stack record keeps the failed update's
  parameters (AWS's rollback restores them), so those are not compared there. Reading
  CloudFormation's reason from the events of an update AWS rolled back is checked on events
  shaped as AWS returns them.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.request import Request, urlopen

import boto3
import gha
import pytest
from conftest import aws_env, boto_credentials, copy_template, moto_iam_server, run
from gitrepo import commit_all, git
from test_iam import PLACEHOLDERS, decision, user_with
from test_iam import policy as iam_policy
from venv_tarballs import sha256, venv_tarball

PROJECT = "my-monorepo"
REGION = "eu-west-1"
ACCOUNT = "123456789012"  # moto's
BUCKET = "cd-deploy-artifacts"
LAMBDA_PKG, ECS_PKG = "nt_ingestion", "nt_api"
LAMBDA_STACK, ECS_STACK = f"{PROJECT}-nt-ingestion", f"{PROJECT}-nt-api"
RUNTIME_REPOSITORY = f"{PROJECT}-runtime"
# Released before the test's release: the stacks start at EARLIER, a rollback goes to OLDEST.
OLDEST, EARLIER = "0.0.8", "0.0.9"
OLD_RUNTIME = "c0ffee" * 6 + "c0ff"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory):
    """moto with IAM enforcement, and Lambda checking that a function's image is in its ECR
    (MOTO_LAMBDA_STUB_ECR=false), as Lambda does."""
    with moto_iam_server(tmp_path_factory.mktemp("moto-cd"), MOTO_LAMBDA_STUB_ECR="false") as env:
        yield env


def client(endpoint: dict[str, str], service: str):
    return boto3.client(
        service, endpoint_url=endpoint["AWS_ENDPOINT_URL"], **boto_credentials(endpoint)
    )


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated repo with its locks (deploy_release.py's among them), as CD checks it out,
    and its stacks synthesized (`make synth`)."""
    repo = copy_template(
        tmp_path_factory.mktemp("cd-deploy") / "repo", tasks=True, artifacts_bucket=BUCKET
    )
    commit_all(repo, "generated")
    git(repo, "update-ref", "refs/remotes/origin/main", "HEAD")
    run(["make", "synth"], cwd=repo)
    return repo


def synthesized(repo: Path, stack: str) -> str:
    return (repo / "infra" / "cdk.out" / f"{stack}.template.json").read_text()


def task_container(repo: Path) -> dict:
    """The ECS job's container definition in its synthesized template."""
    resources = json.loads(synthesized(repo, ECS_STACK))["Resources"].values()
    (task,) = [r for r in resources if r["Type"] == "AWS::ECS::TaskDefinition"]
    (container,) = task["Properties"]["ContainerDefinitions"]
    return container


def version_of(repo: Path, package: str) -> str:
    import tomllib

    return tomllib.loads((repo / "src" / package / "pyproject.toml").read_text())["project"][
        "version"
    ]


def push_image(ecr, repository: str, tag: str, manifest: dict | None = None) -> str:
    """An image (a unique manifest) under `tag`, as CD's push leaves it; its digest."""
    manifest = manifest or {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": f"sha256:{uuid.uuid4().hex * 2}",
            "size": 1234,
        },
        "layers": [],
    }
    answer = ecr.put_image(
        repositoryName=repository,
        imageManifest=json.dumps(manifest),
        imageManifestMediaType=manifest["mediaType"],
        imageTag=tag,
    )
    return answer["image"]["imageId"]["imageDigest"]


@pytest.fixture(scope="module")
def released(repo: Path, moto: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Three releases of each package, published as CD publishes them; the runtime image of an
    old commit and of HEAD. Returns {"image": {version: digest}, "sha256": {version: digest}}."""
    new = version_of(repo, LAMBDA_PKG)
    assert version_of(repo, ECS_PKG) == new and new not in (OLDEST, EARLIER)
    ecr = client(moto, "ecr")
    for repository in (LAMBDA_PKG, RUNTIME_REPOSITORY):
        ecr.create_repository(repositoryName=repository)
    images = {version: push_image(ecr, LAMBDA_PKG, version) for version in (OLDEST, EARLIER, new)}
    for tag in (OLD_RUNTIME, git(repo, "rev-parse", "HEAD")):
        push_image(ecr, RUNTIME_REPOSITORY, tag)

    client(moto, "s3").create_bucket(
        Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    dist = tmp_path_factory.mktemp("dist")
    sums = {}
    for version in (OLDEST, EARLIER, new):
        sums[version] = sha256(venv_tarball(dist / f"{ECS_PKG}__venv_{version}.tar.gz", version))
    upload = [sys.executable, "scripts/upload_all.py", f"s3://{BUCKET}/venvs", "--dist", str(dist)]
    result = run(upload, cwd=repo, env=aws_env(moto))
    assert result.stdout.count("released ") == 3, result.stdout
    return {"image": images, "sha256": sums, "new": new}


@pytest.fixture(scope="module")
def stacks(repo: Path, moto: dict[str, str], released: dict) -> None:
    """The two package stacks from the synthesized templates, created by an admin at the
    EARLIER release."""
    cloudformation = client(moto, "cloudformation")
    parameters = {
        LAMBDA_STACK: {"Version": EARLIER, "ImageDigest": released["image"][EARLIER]},
        ECS_STACK: {
            "PackageVersion": EARLIER,
            "PackageSha256": released["sha256"][EARLIER],
            "RuntimeImageTag": OLD_RUNTIME,
        },
    }
    for stack, given in parameters.items():
        cloudformation.create_stack(
            StackName=stack,
            TemplateBody=synthesized(repo, stack),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in given.items()],
            Capabilities=["CAPABILITY_NAMED_IAM"],
        )
        (described,) = cloudformation.describe_stacks(StackName=stack)["Stacks"]
        assert described["StackStatus"] == "CREATE_COMPLETE"


def policy(repo: Path) -> dict:
    return iam_policy(repo, "cd-role-policy.json")


def for_moto(document: dict) -> dict:
    """The document with its CloudFormation and ECR statements' resources widened to "*":
    moto authorizes those services' calls against "*" (module docstring). Their actions are
    still enforced one by one; the ARNs are checked by test_cd_policy_scopes_the_deploy."""

    def widened(statement: dict) -> dict:
        actions = (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        if statement["Effect"] == "Allow" and any(
            a.startswith(("cloudformation:", "ecr:")) for a in actions
        ):
            return {**statement, "Resource": "*"}
        return statement

    return {**document, "Statement": [widened(st) for st in document["Statement"]]}


@pytest.fixture(scope="module")
def cd(repo: Path, moto: dict[str, str]) -> dict[str, str]:
    return user_with(moto, for_moto(policy(repo)))


# --------------------------------------------------------------------------- the jobs


def expressions(**inputs: str) -> dict[str, str]:
    return {
        "vars.AWS_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/{PROJECT}/cd",
        "vars.ARTIFACTS_BUCKET": BUCKET,
        "vars.ECR_REPOSITORY_PREFIX": "",
        "github.ref_type == 'tag' && github.ref_name || ''": inputs.get("tag", ""),
        "inputs.packages": inputs.get("packages", ""),
        "inputs.rollback_package": inputs.get("rollback_package", ""),
        "inputs.rollback_version": inputs.get("rollback_version", ""),
    }


def cd_workflow(repo: Path) -> dict:
    return gha.load(repo / ".github" / "workflows" / "cd.yml")


def plan(repo: Path, monkeypatch, **inputs: str) -> dict[str, list]:
    """cd.yml's plan job, its steps run verbatim: the ecs, lambda and deploy lists."""
    monkeypatch.setenv("GITHUB_SHA", git(repo, "rev-parse", "HEAD"))
    results, outputs = gha.run_job(repo, cd_workflow(repo), "plan", expressions(**inputs))
    assert all(r.returncode == 0 for r in results), gha.describe(results)
    return {key: json.loads(outputs[key]) for key in ("ecs", "lambda", "deploy")}


def deploy(repo: Path, creds: dict[str, str], monkeypatch, entry: dict) -> gha.StepRun:
    """One leg of cd.yml's deploy job (its matrix entry `entry`), the step run verbatim with
    the CD role's credentials."""
    for key, value in aws_env(creds).items():
        monkeypatch.setenv(key, value)
    matrix = {f"matrix.{key}": value for key, value in {"absent": "refuse", **entry}.items()}
    (result,), _ = gha.run_job(repo, cd_workflow(repo), "deploy", {**expressions(), **matrix})
    return result


def script_lines(result: gha.StepRun) -> list[str]:
    """What the script printed: the step's output without uv's own lines (installing boto3)."""
    uv = ("Downloading ", "Downloaded ", "Installed ", "Resolved ", "Prepared ", "Building ")
    return [
        line
        for line in result.output.splitlines()
        if line.strip() and not line.strip().startswith(uv)
    ]


def stack_state(admin: dict[str, str], stack: str) -> dict:
    """What a stack is now: status, parameters, template, outputs, number of events."""
    cloudformation = client(admin, "cloudformation")
    (described,) = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    return {
        "status": described["StackStatus"],
        "parameters": {p["ParameterKey"]: p["ParameterValue"] for p in described["Parameters"]},
        "outputs": {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])},
        "template": cloudformation.get_template(StackName=stack)["TemplateBody"],
        "events": len(cloudformation.describe_stack_events(StackName=stack)["StackEvents"]),
    }


def function(admin: dict[str, str]) -> dict:
    """The function as Lambda describes it. moto's Lambda API answers every signed call with
    SignatureDoesNotMatch while IAM is enforced, so this one read (the admin's, never CD's) is
    let through unauthenticated (moto-api/reset-auth: the next call only)."""
    url = f"{admin['AWS_ENDPOINT_URL']}/moto-api/reset-auth"
    request = Request(url, data=b"1", method="POST", headers={"Content-Type": "text/plain"})
    with urlopen(request, timeout=10):
        pass
    return client(admin, "lambda").get_function(FunctionName=LAMBDA_STACK)


def function_image(admin: dict[str, str]) -> str:
    return function(admin)["Code"]["ImageUri"]


def image_uri(digest: str) -> str:
    return f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{LAMBDA_PKG}@{digest}"


# --------------------------------------------------------------------------- tests


def test_a_release_deploys_exactly_what_it_released(
    repo: Path, moto, released, stacks, cd, monkeypatch
) -> None:
    """A release tag: the plan lists both packages for the deploy job; each leg points its
    stack at the released version (the function at the image digest of its tag, the task
    definition at the tarball's recorded sha256 and this commit's runtime image), keeps every
    other parameter and the template, and says what changed. Run again: nothing to do."""
    new = released["new"]
    head = git(repo, "rev-parse", "HEAD")
    planned = plan(repo, monkeypatch, tag=f"v{new}")
    assert planned["deploy"] == [
        {"package": ECS_PKG, "version": new, "runtime_tag": head, "absent": "skip"},
        {"package": LAMBDA_PKG, "version": new, "runtime_tag": "", "absent": "skip"},
    ]
    before = {stack: stack_state(moto, stack) for stack in (LAMBDA_STACK, ECS_STACK)}
    configuration = function(moto)["Configuration"]
    before_function = (configuration["MemorySize"], configuration["Timeout"])
    for entry in planned["deploy"]:
        result = deploy(repo, cd, monkeypatch, entry)
        assert result.returncode == 0, result.output
        stack = ECS_STACK if entry["package"] == ECS_PKG else LAMBDA_STACK
        previous = (
            before[stack]["parameters"].get("Version")
            or before[stack]["parameters"]["PackageVersion"]
        )
        assert f"updated {stack}: {previous} -> {new}" in result.output

    after = {stack: stack_state(moto, stack) for stack in (LAMBDA_STACK, ECS_STACK)}
    assert after[LAMBDA_STACK]["parameters"] == {
        **before[LAMBDA_STACK]["parameters"],
        "Version": new,
        "ImageDigest": released["image"][new],
    }
    assert function_image(moto) == image_uri(released["image"][new])
    configuration = function(moto)["Configuration"]
    assert (configuration["MemorySize"], configuration["Timeout"]) == before_function
    assert after[ECS_STACK]["parameters"] == {
        **before[ECS_STACK]["parameters"],
        "PackageVersion": new,
        "PackageSha256": released["sha256"][new],
        "RuntimeImageTag": head,
    }
    for stack in (LAMBDA_STACK, ECS_STACK):
        assert after[stack]["template"] == before[stack]["template"]
        assert after[stack]["status"] == "UPDATE_COMPLETE"
    # A new task definition revision replaced the old one (moto's gap: its containers are
    # lost; module docstring).
    old_arn, new_arn = (
        before[ECS_STACK]["outputs"]["TaskDefinitionArn"],
        after[ECS_STACK]["outputs"]["TaskDefinitionArn"],
    )
    assert (
        new_arn.rsplit(":", 1)[0]
        == old_arn.rsplit(":", 1)[0]
        == (f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{ECS_STACK}")
    )
    assert int(new_arn.rsplit(":", 1)[1]) > int(old_arn.rsplit(":", 1)[1])
    revision = client(moto, "ecs").describe_task_definition(taskDefinition=new_arn)[
        "taskDefinition"
    ]
    assert "image" not in revision["containerDefinitions"][0], "moto maps the keys now: check them"
    # What that revision runs, as the synthesized template wires the parameters in.
    container = task_container(repo)
    assert container["Image"]["Fn::Join"][1][-2:] == [
        f"/{RUNTIME_REPOSITORY}:",
        {"Ref": "RuntimeImageTag"},
    ]
    assert {e["Name"]: e["Value"] for e in container["Environment"]} == {
        "ARTIFACTS_URI": f"s3://{BUCKET}/venvs",
        "PACKAGE_VERSION": {"Ref": "PackageVersion"},
        "PACKAGE_SHA256": {"Ref": "PackageSha256"},
    }

    again = deploy(repo, cd, monkeypatch, planned["deploy"][1])
    assert again.returncode == 0, again.output
    assert f"current {LAMBDA_STACK}: runs {new} already, nothing changed" in again.output
    assert stack_state(moto, LAMBDA_STACK) == after[LAMBDA_STACK]


def test_a_rollback_dispatch_deploys_an_earlier_release_and_builds_nothing(
    repo: Path, moto, released, stacks, cd, monkeypatch
) -> None:
    """rollback_package + rollback_version: the plan builds nothing (the ecs, lambda and
    runtime jobs are skipped on empty lists) and deploys that one package at that version,
    reusing its image or tarball; an ECS job keeps the runtime image its stack runs. Other
    packages' stacks are not touched."""
    workflow = cd_workflow(repo)
    for job, key in (("ecs", "ecs"), ("lambda", "lambda"), ("runtime", "ecs")):
        assert workflow["jobs"][job]["if"] == f"needs.plan.outputs.{key} != '[]'"

    untouched = stack_state(moto, ECS_STACK)
    planned = plan(repo, monkeypatch, rollback_package=LAMBDA_PKG, rollback_version=OLDEST)
    assert planned == {
        "ecs": [],
        "lambda": [],
        "deploy": [
            {"package": LAMBDA_PKG, "version": OLDEST, "runtime_tag": "", "absent": "refuse"}
        ],
    }
    (entry,) = planned["deploy"]
    result = deploy(repo, cd, monkeypatch, entry)
    assert result.returncode == 0, result.output
    assert f"-> {OLDEST}" in result.output
    assert function_image(moto) == image_uri(released["image"][OLDEST])
    assert stack_state(moto, LAMBDA_STACK)["parameters"]["ImageDigest"] == released["image"][OLDEST]
    assert stack_state(moto, ECS_STACK) == untouched

    runtime = untouched["parameters"]["RuntimeImageTag"]
    planned = plan(repo, monkeypatch, rollback_package=ECS_PKG, rollback_version=OLDEST)
    result = deploy(repo, cd, monkeypatch, planned["deploy"][0])
    assert result.returncode == 0, result.output
    assert stack_state(moto, ECS_STACK)["parameters"] == {
        **untouched["parameters"],
        "PackageVersion": OLDEST,
        "PackageSha256": released["sha256"][OLDEST],
        "RuntimeImageTag": runtime,
    }


def test_a_rollback_names_a_package_and_a_version_and_nothing_else(repo: Path, monkeypatch) -> None:
    monkeypatch.setenv("GITHUB_SHA", git(repo, "rev-parse", "HEAD"))
    for inputs in (
        {"rollback_package": LAMBDA_PKG},
        {"rollback_version": OLDEST},
        {"rollback_package": LAMBDA_PKG, "rollback_version": OLDEST, "packages": ECS_PKG},
    ):
        results, outputs = gha.run_job(repo, cd_workflow(repo), "plan", expressions(**inputs))
        assert results[-1].returncode == 1 and "A rollback names" in results[-1].output, inputs
        assert "deploy" not in outputs


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        (
            {"package": LAMBDA_PKG, "version": "9.9.9", "runtime_tag": ""},
            f"no image {LAMBDA_PKG}:9.9.9 in ECR",
        ),
        (
            {"package": ECS_PKG, "version": "9.9.9", "runtime_tag": ""},
            f"no venv tarball of {ECS_PKG} 9.9.9",
        ),
        (
            {"package": ECS_PKG, "version": OLDEST, "runtime_tag": "f" * 40},
            f"no image {RUNTIME_REPOSITORY}:{'f' * 40}",
        ),
        ({"package": "nt_common", "version": OLDEST, "runtime_tag": ""}, "no deployable package"),
        ({"package": LAMBDA_PKG, "version": "latest", "runtime_tag": ""}, "not a PEP 440 version"),
    ],
    ids=["lambda-version", "ecs-version", "runtime-tag", "library", "not-a-version"],
)
def test_what_was_never_released_is_refused_before_any_change(
    repo: Path, moto, stacks, cd, monkeypatch, entry: dict, reason: str
) -> None:
    before = {stack: stack_state(moto, stack) for stack in (LAMBDA_STACK, ECS_STACK)}
    result = deploy(repo, cd, monkeypatch, entry)
    assert result.returncode == 2, result.output
    lines = script_lines(result)
    assert len(lines) == 1, result.output
    (line,) = lines
    assert line.startswith("deploy_release: refused ") and reason in line, line
    assert {stack: stack_state(moto, stack) for stack in (LAMBDA_STACK, ECS_STACK)} == before


def test_a_stack_not_deployed_yet_points_to_the_first_deploy(
    repo: Path, moto, cd, monkeypatch, tmp_path: Path
) -> None:
    """No stack yet (the first release, before `make deploy`; a package added since): a
    release's leg skips it, green, with a warning that says how to make it; a rollback, which
    only deploys, refuses."""
    clone = tmp_path / "repo"
    subprocess.run(["cp", "-a", str(repo), str(clone)], check=True)
    (clone / "infra" / "cdk.json").write_text(
        json.dumps(
            {"context": {"project": "not-deployed", "region": REGION, "ecr_repository_prefix": ""}}
        )
    )
    entry = {"package": LAMBDA_PKG, "version": OLDEST, "runtime_tag": ""}
    why = (
        "stack not-deployed-nt-ingestion does not exist yet: deploy the stacks once with "
        "`make deploy` (README.md, First deploy), then release again"
    )
    result = deploy(clone, cd, monkeypatch, {**entry, "absent": "refuse"})
    assert result.returncode == 2, result.output
    assert script_lines(result) == [f"deploy_release: refused not-deployed-nt-ingestion: {why}"]

    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    result = deploy(clone, cd, monkeypatch, {**entry, "absent": "skip"})
    assert result.returncode == 0, result.output
    assert script_lines(result) == [
        "::warning::not-deployed-nt-ingestion is not deployed yet: create it with `make deploy`",
        f"absent not-deployed-nt-ingestion: not deployed yet, nothing changed ({why})",
    ]


def run_script(repo: Path, creds: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """scripts/deploy_release.py run directly (the template's Python holds boto3)."""
    cmd = [
        sys.executable,
        "scripts/deploy_release.py",
        *args,
        "--artifacts",
        f"s3://{BUCKET}/venvs",
    ]
    return run(cmd, cwd=repo, check=False, env=aws_env(creds, ECR_REPOSITORY_PREFIX=""))


@pytest.mark.parametrize(
    ("action", "package"),
    [
        ("cloudformation:DescribeStacks", LAMBDA_PKG),
        ("cloudformation:UpdateStack", LAMBDA_PKG),
        ("ecr:DescribeImages", LAMBDA_PKG),
        ("s3:GetObject", ECS_PKG),
    ],
)
def test_the_cd_role_needs_every_action_the_script_calls(
    repo: Path, moto, released, stacks, action: str, package: str
) -> None:
    """Under the shipped policy less one action, the deploy fails (moto enforces these calls;
    DescribeStackEvents is read only after a failed update, which moto never reports)."""
    from test_iam import without

    stack = LAMBDA_STACK if package == LAMBDA_PKG else ECS_STACK
    key = "Version" if package == LAMBDA_PKG else "PackageVersion"
    current = stack_state(moto, stack)["parameters"][key]
    version = OLDEST if current != OLDEST else EARLIER
    reduced = user_with(moto, without(for_moto(policy(repo)), action))
    result = run_script(repo, reduced, package, version)
    assert result.returncode != 0, result.stdout
    assert "AccessDenied" in result.stderr or "never released" in result.stderr, result.stderr
    assert stack_state(moto, stack)["parameters"][key] == current


def test_cd_policy_scopes_the_deploy(repo: Path) -> None:
    """What AWS decides, by the documented semantics, for the calls the deploy makes and the
    calls CloudFormation makes with the role's credentials (the resource handlers' permissions,
    deploy/iam/README.md): this project's package stacks, functions, task definitions and roles
    only, never the foundation stack, roles passed to these services only."""
    document = policy(repo)
    region, account = REGION, PLACEHOLDERS["AWS_ACCOUNT_ID"]

    def stack(name: str) -> str:
        return f"arn:aws:cloudformation:{region}:{account}:stack/{name}/{uuid.uuid4()}"

    function = f"arn:aws:lambda:{region}:{account}:function:{LAMBDA_STACK}"
    family = f"arn:aws:ecs:{region}:{account}:task-definition/{ECS_STACK}:3"
    role = f"arn:aws:iam::{account}:role/{PROJECT}/{ECS_STACK}-task"
    allowed = [
        ("cloudformation:UpdateStack", stack(LAMBDA_STACK), {}),
        ("cloudformation:DescribeStacks", stack(ECS_STACK), {}),
        ("cloudformation:DescribeStackEvents", stack(ECS_STACK), {}),
        ("lambda:UpdateFunctionCode", function, {}),
        ("lambda:UpdateFunctionConfiguration", function, {}),
        ("lambda:GetFunction", function, {}),
        ("lambda:ListTags", function, {}),
        ("ecs:RegisterTaskDefinition", "*", {}),
        ("ecs:DeregisterTaskDefinition", "*", {}),
        ("ecs:DescribeTaskDefinition", "*", {}),
        ("ecs:TagResource", family, {}),
        (
            "scheduler:UpdateSchedule",
            f"arn:aws:scheduler:{region}:{account}:schedule/default/{ECS_STACK}",
            {},
        ),
        ("iam:GetRole", role, {}),
        ("iam:PassRole", role, {"iam:PassedToService": "ecs-tasks.amazonaws.com"}),
        ("iam:PassRole", role, {"iam:PassedToService": "lambda.amazonaws.com"}),
        ("iam:PassRole", role, {"iam:PassedToService": "scheduler.amazonaws.com"}),
    ]
    for action, resource, context in allowed:
        assert decision(document, action, resource, context) == "Allow", (action, resource, context)

    assert (
        decision(document, "cloudformation:UpdateStack", stack(f"{PROJECT}-foundation"), {})
        == "Deny"
    )
    denied = [
        ("cloudformation:UpdateStack", stack("other-team-api"), {}),
        ("cloudformation:CreateStack", stack(LAMBDA_STACK), {}),
        ("cloudformation:DeleteStack", stack(LAMBDA_STACK), {}),
        (
            "lambda:UpdateFunctionCode",
            f"arn:aws:lambda:{region}:{account}:function:other-team-fn",
            {},
        ),
        ("lambda:CreateFunction", function, {}),
        ("ecs:TagResource", f"arn:aws:ecs:{region}:{account}:task-definition/other:1", {}),
        ("iam:PassRole", role, {"iam:PassedToService": "ec2.amazonaws.com"}),
        ("iam:PassRole", role, {}),
        (
            "iam:PassRole",
            f"arn:aws:iam::{account}:role/admin",
            {"iam:PassedToService": "ecs-tasks.amazonaws.com"},
        ),
        ("iam:PutRolePolicy", role, {}),
    ]
    for action, resource, context in denied:
        assert decision(document, action, resource, context) == "implicit deny", (action, resource)


@pytest.fixture(scope="module")
def script_module(repo: Path):
    sys.path.insert(0, str(repo / "scripts"))
    try:
        yield importlib.import_module("deploy_release")
    finally:
        sys.path.remove(str(repo / "scripts"))
        for name in ("deploy_release", "monorepo", "upload_all"):
            sys.modules.pop(name, None)


def test_failure_reason_is_the_first_failed_resource_of_the_update(script_module) -> None:
    """Events as AWS lists them (newest first) for an update it rolled back: the reason is the
    first resource that failed after "User Initiated", not the rollback's later ones, nor an
    older update's."""
    events = [
        {"StackName": "s", "LogicalResourceId": "s", "ResourceStatus": "UPDATE_ROLLBACK_COMPLETE"},
        {
            "StackName": "s",
            "LogicalResourceId": "Function",
            "ResourceStatus": "UPDATE_FAILED",
            "ResourceStatusReason": "Resource update cancelled",
        },
        {
            "StackName": "s",
            "LogicalResourceId": "s",
            "ResourceStatus": "UPDATE_ROLLBACK_IN_PROGRESS",
            "ResourceStatusReason": "The following resource(s) failed to update: [Function].",
        },
        {
            "StackName": "s",
            "LogicalResourceId": "Function",
            "ResourceStatus": "UPDATE_FAILED",
            "ResourceStatusReason": "Image manifest media type not supported",
        },
        {"StackName": "s", "LogicalResourceId": "Function", "ResourceStatus": "UPDATE_IN_PROGRESS"},
        {
            "StackName": "s",
            "LogicalResourceId": "s",
            "ResourceStatus": "UPDATE_IN_PROGRESS",
            "ResourceStatusReason": "User Initiated",
        },
        {
            "StackName": "s",
            "LogicalResourceId": "Task",
            "ResourceStatus": "UPDATE_FAILED",
            "ResourceStatusReason": "an older update",
        },
    ]
    reason = script_module.failure_reason(events)
    assert reason == "Function: Image manifest media type not supported"
    assert script_module.failure_reason(events[:1]) == "no reason in the stack events"


def test_a_failed_update_leaves_the_previous_version_serving(
    repo: Path, moto, released, stacks, cd, monkeypatch
) -> None:
    """An image Lambda cannot run (an image index, pushed under a version tag by hand): the
    update fails, the job fails with one line and no traceback, and the function still runs
    the image it ran before (moto's failure, module docstring)."""
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": f"sha256:{'3' * 64}",
                "size": 1234,
                "platform": {"architecture": "arm64", "os": "linux"},
            }
        ],
    }
    push_image(client(moto, "ecr"), LAMBDA_PKG, "0.5.0", index)
    serving = function_image(moto)
    planned = plan(repo, monkeypatch, rollback_package=LAMBDA_PKG, rollback_version="0.5.0")
    result = deploy(repo, cd, monkeypatch, planned["deploy"][0])
    assert result.returncode == 1, result.output
    lines = script_lines(result)
    assert len(lines) == 1, result.output
    (line,) = lines
    assert line.startswith(f"deploy_release: failed {LAMBDA_STACK}: "), line
    assert "Traceback" not in result.output
    assert function_image(moto) == serving


def test_without_infrastructure_cd_only_publishes(render) -> None:
    """`infrastructure=none`: no deploy job, no rollback inputs, no deploy script or lock task
    output, and the CD role gets no CloudFormation, Lambda, ECS or IAM permission."""
    repo = render(infrastructure="none")
    workflow = cd_workflow(repo)
    assert "deploy" not in workflow["jobs"]
    assert set(workflow["on"]["workflow_dispatch"]["inputs"]) == {"packages"}
    assert "rollback" not in (repo / ".github" / "workflows" / "cd.yml").read_text()
    assert not (repo / "scripts" / "deploy_release.py").exists()
    services = {
        action.split(":")[0]
        for statement in policy(repo)["Statement"]
        for action in (
            [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
        )
    }
    assert services == {"s3", "ecr"}


def test_the_deploy_job_waits_for_every_artifact_and_holds_the_least(repo: Path) -> None:
    """After the plan and all three artifact jobs, only when none failed or was cancelled (a
    job with nothing to build is skipped, which counts as done); the release environment,
    OIDC, read-only contents; the locked script."""
    job = cd_workflow(repo)["jobs"]["deploy"]
    assert job["needs"] == ["plan", "ecs", "lambda", "runtime"]
    assert job["if"] == (
        "!cancelled() && needs.plan.result == 'success' && needs.plan.outputs.deploy != '[]'"
        " && !contains(needs.*.result, 'failure') && !contains(needs.*.result, 'cancelled')"
    )
    assert job["environment"] == "release"
    assert job["permissions"] == {"contents": "read", "id-token": "write"}
    assert job["strategy"] == {
        "fail-fast": False,
        "matrix": {"include": "${{ fromJSON(needs.plan.outputs.deploy) }}"},
    }
    (step,) = [s for s in job["steps"] if "run" in s]
    assert step["run"].startswith("uv run --locked --no-cache scripts/deploy_release.py ")


def test_the_deploy_script_is_locked_and_its_lock_checked(repo: Path, tmp_path: Path) -> None:
    """Its lock exists right after generation; a dependency changed without relocking fails
    the lock check (CI's Locks job, `make lock-check`), and `make lock` makes it current."""
    script = "scripts/deploy_release.py"
    assert 'name = "boto3"' in (repo / f"{script}.lock").read_text()
    clone = tmp_path / "repo"
    subprocess.run(["cp", "-a", str(repo), str(clone)], check=True)
    path = clone / script
    path.write_text(path.read_text().replace('"boto3>=', '"botocore>=1.35", "boto3>=', 1))
    stale = run([sys.executable, "scripts/ci.py", "lock-check"], cwd=clone, check=False)
    assert stale.returncode != 0 and f"{script}.lock" in stale.stdout + stale.stderr
    run(["make", "lock"], cwd=clone)
    run(["make", "lock-check"], cwd=clone)
