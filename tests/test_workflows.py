"""The generated workflows, for every answer combination: linters clean, actions pinned,
least privilege, and a matrix that comes from the repository rather than a hand-kept list.
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
from pathlib import Path

import gha
import pytest
import yaml
from conftest import copy_template

# The linters come from the template's dev dependency group, next to this interpreter.
BIN = Path(sys.executable).parent
LINT_ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}

LAYOUTS = ["shared", "independent"]
TARGETS = {"ecs": ["ecs"], "lambda": ["lambda"], "both": ["ecs", "lambda"]}
# One architecture per combination, answered for Lambda and ECS alike: every value of both
# answers is covered without doubling the matrix.
COMBOS = [
    (layout, targets, arch)
    for layout, targets in itertools.product(LAYOUTS, TARGETS)
    for arch in ["arm64", "x86_64"]
]
COMBO_IDS = [f"{layout}-{targets}-{arch}" for layout, targets, arch in COMBOS]
PINNED = re.compile(r"^\s*-?\s*uses: ([\w.-]+/[\w./-]+)@([0-9a-f]{40}) # (v\d+\.\d+\.\d+)\s*$")


@pytest.fixture(scope="module")
def renders(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str, str], Path]:
    """Every answer combination that changes a workflow, rendered once for the module."""
    root = tmp_path_factory.mktemp("workflows")
    return {
        combo: copy_template(
            root / "-".join(combo),
            tasks=False,
            workspace_layout=combo[0],
            deploy_targets=TARGETS[combo[1]],
            lambda_architecture=combo[2],
            ecs_architecture=combo[2],
        )
        for combo in COMBOS
    }


def workflow_files(repo: Path) -> list[Path]:
    return sorted((repo / ".github" / "workflows").glob("*.yml"))


def tool(name: str) -> str:
    path = BIN / name
    assert path.exists(), f"{name} is missing: it belongs in the template's dev dependency group"
    return str(path)


def lint(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, env=LINT_ENV, capture_output=True, text=True, check=False)


def test_every_workflow_is_rendered(renders: dict) -> None:
    for repo in renders.values():
        names = [path.name for path in workflow_files(repo)]
        assert names == ["cd.yml", "ci.yml", "template-update.yml"]


@pytest.mark.parametrize("combo", COMBOS, ids=COMBO_IDS)
def test_actionlint_finds_nothing(renders: dict, combo: tuple) -> None:
    # actionlint runs shellcheck on every run: block only when shellcheck is on PATH.
    tool("shellcheck")
    result = lint(tool("actionlint"), *map(str, workflow_files(renders[combo])))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("combo", COMBOS, ids=COMBO_IDS)
def test_zizmor_finds_nothing(renders: dict, combo: tuple) -> None:
    # Pedantic is zizmor's strictest persona short of auditing: it includes the default one.
    result = lint(tool("zizmor"), "--offline", "--persona=pedantic", str(renders[combo]))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings" in result.stdout


@pytest.mark.parametrize("combo", COMBOS, ids=COMBO_IDS)
def test_workflows_match_github_schema(renders: dict, combo: tuple) -> None:
    files = map(str, workflow_files(renders[combo]))
    cmd = [tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *files]
    result = lint(*cmd)
    assert result.returncode == 0, result.stdout + result.stderr


def test_linters_do_report_problems(tmp_path: Path) -> None:
    """The clean results above mean something: the same linters flag a bad workflow."""
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    bad = workflows / "bad.yml"
    bad.write_text(
        "on: push\n"
        "jobs:\n"
        "  build:\n"
        "    runs-on: ubuntu-24.04\n"
        "    steps:\n"
        "      - uses: actions/checkout@v5\n"
        "      - run: echo $GITHUB_SHA > $RUNNER_TEMP/sha\n"
    )
    actionlint = lint(tool("actionlint"), str(bad))
    assert actionlint.returncode != 0
    assert "SC2086" in actionlint.stdout, "actionlint ran without shellcheck"
    zizmor = lint(tool("zizmor"), "--offline", str(tmp_path))
    assert zizmor.returncode != 0
    assert "unpinned-uses" in zizmor.stdout
    assert "artipacked" in zizmor.stdout


def test_every_action_is_pinned_to_one_commit(renders: dict) -> None:
    """A full commit SHA with its version beside it, and one SHA per action everywhere."""
    pins: dict[str, set[tuple[str, str]]] = {}
    for repo in renders.values():
        for path in workflow_files(repo):
            for line in path.read_text().splitlines():
                if "uses:" not in line:
                    continue
                match = PINNED.match(line)
                assert match, f"{path.name}: not pinned to a commit with a # vX.Y.Z note: {line}"
                pins.setdefault(match[1], set()).add((match[2], match[3]))
    assert "actions/checkout" in pins
    spread = {action: found for action, found in pins.items() if len(found) > 1}
    assert not spread, f"one action, several pins: {spread}"


def test_permissions_are_least_privilege(renders: dict) -> None:
    for repo in renders.values():
        for path in workflow_files(repo):
            workflow = gha.load(path)
            assert workflow["permissions"] == {}, path.name
            for name, job in workflow["jobs"].items():
                granted = job["permissions"]
                checks_out = any("actions/checkout@" in s.get("uses", "") for s in job["steps"])
                # The template update pushes its branch and opens its pull request.
                pushes = (path.name, name) == ("template-update.yml", "update")
                contents = ("write" if pushes else "read") if checks_out else None
                assert granted.get("contents") == contents, (path.name, name)
                writes = {scope for scope, level in granted.items() if level == "write"}
                # Only release jobs talk to AWS, and only through an OIDC token.
                expected = {"id-token"} if path.name == "cd.yml" and name != "plan" else set()
                if pushes:
                    expected = {"contents", "pull-requests"}
                assert writes == expected, (path.name, name, granted)
                for step in job["steps"]:
                    if step.get("uses", "").startswith("actions/checkout@"):
                        assert step["with"]["persist-credentials"] is False, (path.name, name)
            assert "secrets." not in path.read_text(), f"{path.name}: no stored keys"


def test_uv_setup_caches_per_package_except_in_releases(renders: dict) -> None:
    repo = renders[("shared", "both", "arm64")]
    for path in workflow_files(repo):
        workflow = gha.load(path)
        for name, job in workflow["jobs"].items():
            for step in job["steps"]:
                if not step.get("uses", "").startswith("astral-sh/setup-uv@"):
                    continue
                settings = step["with"]
                if path.name == "ci.yml":
                    assert settings["enable-cache"] is True, name
                else:
                    assert settings["enable-cache"] is False, (path.name, name)
                # One exact uv for every machine, written once (people get a floor instead).
                assert settings["version-file"] == ".github/uv/requirements.txt", (path.name, name)
                assert "version" not in settings, (path.name, name)
    ci = gha.load(repo / ".github" / "workflows" / "ci.yml")
    test_uv = next(s for s in ci["jobs"]["test"]["steps"] if "setup-uv" in s.get("uses", ""))
    assert test_uv["with"]["cache-suffix"] == "${{ matrix.package }}"
    for path in workflow_files(repo):
        assert "UV_VERSION:" not in gha.load(path).get("env", {}), path.name


def test_matrices_come_from_the_repository(renders: dict) -> None:
    """No package list in a workflow: matrices are computed, and skipped when empty."""
    repo = renders[("independent", "both", "arm64")]
    workflows = repo / ".github" / "workflows"
    ci = gha.load(workflows / "ci.yml")
    assert ci["jobs"]["test"]["strategy"]["matrix"]["package"] == (
        "${{ fromJSON(needs.affected.outputs.packages) }}"
    )
    assert ci["jobs"]["test"]["if"] == "needs.affected.outputs.packages != '[]'"
    cd = gha.load(workflows / "cd.yml")
    for kind in ("ecs", "lambda"):
        assert cd["jobs"][kind]["if"] == f"needs.plan.outputs.{kind} != '[]'"
        matrix = cd["jobs"][kind]["strategy"]["matrix"]["include"]
        assert matrix == f"${{{{ fromJSON(needs.plan.outputs.{kind}) }}}}"
    for path in workflow_files(repo):
        for package in (p.name for p in (repo / "src").iterdir()):
            assert package not in path.read_text(), f"{path.name} names {package}"


@pytest.mark.parametrize(
    ("arch", "platform"), [("arm64", "linux/arm64"), ("x86_64", "linux/amd64")]
)
def test_lambda_images_are_single_platform_without_provenance(
    renders: dict, arch: str, platform: str
) -> None:
    cd = gha.load(renders[("shared", "lambda", arch)] / ".github" / "workflows" / "cd.yml")
    assert cd["env"]["LAMBDA_PLATFORM"] == platform
    build = next(
        s for s in cd["jobs"]["lambda"]["steps"] if s.get("name") == "Build and push the image"
    )
    command = " ".join(build["run"].split())
    assert '--platform "$LAMBDA_PLATFORM" --provenance=false' in command
    assert command.startswith("docker build -f docker/Dockerfile.lambda --build-arg SERVICE_NAME=")
    aws = [
        s for s in cd["jobs"]["lambda"]["steps"] if "configure-aws-credentials" in s.get("uses", "")
    ]
    assert aws[0]["with"]["role-to-assume"] == "${{ vars.AWS_ROLE_ARN }}"


@pytest.mark.parametrize(("arch", "platform"), [("arm64", "linux/arm64"), ("x86_64", "linux/amd64")])
def test_ecs_artifacts_are_built_for_the_answered_architecture(
    renders: dict, arch: str, platform: str
) -> None:
    """Tarball and runtime image share one platform, from the answers, on x86_64 runners."""
    repo = renders[("shared", "ecs", arch)]
    cd = gha.load(repo / ".github" / "workflows" / "cd.yml")
    assert cd["env"]["ECS_PLATFORM"] == platform
    commands = {
        job: " ".join(step["run"].split())
        for job in ("ecs", "runtime")
        for step in cd["jobs"][job]["steps"]
        if "docker build" in step.get("run", "")
    }
    assert commands["ecs"].startswith('docker build -f docker/Dockerfile.venv --platform "$ECS_PLATFORM"')
    assert commands["runtime"].startswith(
        'docker build -f docker/Dockerfile.runtime --platform "$ECS_PLATFORM"'
    )
    assert {cd["jobs"][job]["runs-on"] for job in cd["jobs"]} == {"ubuntu-24.04"}
    makefile = (repo / "Makefile").read_text()
    assert f"ECS_PLATFORM ?= {platform}" in makefile
    assert f"PYTHON_PLATFORM={'aarch64' if arch == 'arm64' else 'x86_64'}-manylinux_2_36" in (
        repo / "docker" / "Dockerfile.venv"
    ).read_text()


def test_workflows_call_only_what_the_repository_has(renders: dict) -> None:
    """Every script and Dockerfile a workflow names is generated with it, for every answer."""
    for combo, repo in renders.items():
        for path in workflow_files(repo):
            text = path.read_text()
            for name in re.findall(r"\b(scripts/\w+\.(?:py|sh)|docker/Dockerfile\.\w+)", text):
                if path.name == "cd.yml" and not _target_present(text, name, combo):
                    continue
                assert (repo / name).is_file(), f"{'-'.join(combo)} {path.name} calls {name}"


def _target_present(text: str, name: str, combo: tuple) -> bool:
    # cd.yml keeps both release jobs (each skipped when it has nothing to build); only the
    # targets the repository was generated for need their files.
    targets = TARGETS[combo[1]]
    if name in ("docker/Dockerfile.venv", "docker/Dockerfile.runtime", "scripts/upload_all.py"):
        return "ecs" in targets
    if name in ("docker/Dockerfile.lambda", "scripts/image_inputs.py"):
        return "lambda" in targets
    return True


@pytest.mark.parametrize("combo", COMBOS, ids=COMBO_IDS)
def test_readme_tells_a_team_how_to_turn_on_cd(renders: dict, combo: tuple) -> None:
    readme = (renders[combo] / "README.md").read_text()
    assert "## CI/CD (GitHub Actions)" in readme
    ci = gha.load(renders[combo] / ".github" / "workflows" / "ci.yml")
    for job in ci["jobs"].values():
        assert job["name"].replace(" ${{ matrix.package }}", " `<pkg>`") in readme
    assert "`AWS_ROLE_ARN`" in readme
    targets = TARGETS[combo[1]]
    assert ("`ARTIFACTS_BUCKET`" in readme) == ("ecs" in targets)
    # Every repo pushes images: Lambda functions, or the ECS runtime image.
    assert "`ECR_REPOSITORY_PREFIX`" in readme
    assert ("-runtime:<commit SHA>" in readme) == ("ecs" in targets)
    assert "no QEMU" in readme and "setup-qemu-action" not in (
        renders[combo] / ".github" / "workflows" / "cd.yml"
    ).read_text()


def test_other_answers_leave_the_workflows_alone(renders: dict, tmp_path: Path) -> None:
    """The combinations above cover every answer set: the rest change no workflow, except
    for the region and bucket, which cd.yml carries as plain values."""
    other = copy_template(
        tmp_path / "other",
        tasks=False,
        python_version="3.11",
        ecs_architecture="arm64",
        package_prefix="acme",
        artifact_naming="nested",
        project_name="Other Name",
        aws_region="us-east-2",
        artifacts_bucket="acme-releases",
    )
    base = renders[("shared", "both", "arm64")]
    cd = gha.load(other / ".github" / "workflows" / "cd.yml")
    assert cd["env"]["AWS_REGION"] == "us-east-2"
    assert cd["env"]["DEFAULT_ARTIFACTS_BUCKET"] == "acme-releases"
    for path in workflow_files(base):
        text = (other / ".github" / "workflows" / path.name).read_text()
        text = text.replace("us-east-2", "eu-west-1").replace("acme-releases", "nt-artifacts")
        text = text.replace("other-name-runtime", "my-monorepo-runtime")
        assert text == path.read_text(), path.name


@pytest.mark.parametrize("combo", COMBOS, ids=COMBO_IDS)
def test_dependabot_keeps_the_pins_current(renders: dict, combo: tuple) -> None:
    """Valid against Dependabot's schema; every lock, Dockerfile folder, the runtime
    requirements and CI's exact uv covered, found by globs (a new package needs no edit);
    grouped, with the cooldown, so a week brings a handful of PRs."""
    # zizmor (above) also audits this file: a missing cooldown is a finding.
    repo = renders[combo]
    config = repo / ".github" / "dependabot.yml"
    result = lint(tool("check-jsonschema"), "--builtin-schema", "vendor.dependabot", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    updates = yaml.safe_load(config.read_text())["updates"]
    covered: dict[str, list[str]] = {}
    for u in updates:
        folders = u.get("directories", [u.get("directory")])
        covered.setdefault(u["package-ecosystem"], []).extend(folders)
    layout, targets = combo[0], TARGETS[combo[1]]
    expected = {
        "github-actions": ["/"],
        # infra/ (infrastructure=cdk, the default): the CDK app's own lock.
        "uv": ["/", "/infra"] if layout == "shared" else ["/", "/src/*", "/infra"],
        "pip": ["/.github/uv"],
        "docker": ["/docker"],
    }
    if "ecs" in targets:
        expected["pip"] = ["/docker/runtime", "/.github/uv"]
    assert covered == expected
    # What those entries point at exists: every uv project (the independent layout's
    # packages through the glob), the Dockerfiles, the compiled requirements.
    if layout == "independent":
        for package in (repo / "src").iterdir():
            assert (package / "pyproject.toml").is_file()
            assert Path(f"/src/{package.name}").match("/src/*")
    assert sorted((repo / "docker").glob("Dockerfile.*"))
    assert [path.name for path in (repo / ".github/uv").iterdir()] == ["requirements.txt"]
    if "ecs" in targets:
        header = (repo / "docker/runtime/requirements.txt").read_text().splitlines()[1]
        assert "uv pip compile" in header and "docker/runtime/requirements.in" in header
    for update in updates:
        assert update["schedule"] == {"interval": "weekly"}, update
        assert update["cooldown"] == {"default-days": 7}, update
        (group,) = update["groups"].values()
        assert group == {"patterns": ["*"], "update-types": ["minor", "patch"]}, update


@pytest.mark.parametrize("combo", COMBOS, ids=COMBO_IDS)
def test_wheel_check_job_checks_the_affected_packages(renders: dict, combo: tuple) -> None:
    """Skipped when nothing is affected (as the test matrix is), the list passed through env
    (no expression in `run:`), its own uv cache, and `ci-passed` waits for it. What it finds
    is tested in test_wheel_check.py."""
    repo = renders[combo]
    ci = gha.load(repo / ".github" / "workflows" / "ci.yml")
    job = ci["jobs"]["wheel-check"]
    assert job["needs"] == "affected"
    assert job["if"] == ci["jobs"]["test"]["if"] == "needs.affected.outputs.packages != '[]'"
    assert job["permissions"] == {"contents": "read"}
    (uv,) = [s for s in job["steps"] if s.get("uses", "").startswith("astral-sh/setup-uv@")]
    assert uv["with"]["version-file"] == ".github/uv/requirements.txt"
    assert uv["with"]["cache-suffix"] == "wheel-check"
    (step,) = [s for s in job["steps"] if "run" in s]
    assert step["run"] == 'python3 scripts/wheel_check.py --json "$PACKAGES"'
    assert step["env"] == {"PACKAGES": "${{ needs.affected.outputs.packages }}"}
    assert "wheel-check" in ci["jobs"]["ci-passed"]["needs"]
    makefile = (repo / "Makefile").read_text()
    assert "\nwheel-check: ## " in makefile and "uv run scripts/wheel_check.py\n" in makefile
