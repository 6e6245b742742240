"""Read a generated GitHub workflow and run its shell steps here, as a runner would.

The tests run a job's ``run:`` blocks verbatim (bash -eo pipefail, GitHub's default shell)
in a generated repo, so a workflow cannot call a command that fails. Steps that ``uses:``
an action are left out: they set up tools that this machine already has.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")

# ci.yml's diff base for the affected job (pull request, merge queue, push): tests that run
# that job give this expression its value.
CI_BASE_EXPRESSION = (
    "github.event_name == 'pull_request' && format('origin/{0}', github.base_ref)"
    " || github.event_name == 'merge_group' && github.event.merge_group.base_sha"
    " || github.event.before"
)


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the bare key `on` as True.
    if True in data:
        data["on"] = data.pop(True)
    return data


def uses(workflow: dict[str, Any]) -> list[str]:
    return [
        step["uses"]
        for job in workflow["jobs"].values()
        for step in job.get("steps", [])
        if "uses" in step
    ]


@dataclass
class StepRun:
    name: str
    returncode: int
    output: str


def _resolve(value: Any, expressions: dict[str, str]) -> str:
    """Replace each ${{ expr }} with the test's value for it; an unknown one is an error."""

    def sub(match: re.Match[str]) -> str:
        if match.group(1) not in expressions:
            raise KeyError(f"the test gives no value for ${{{{ {match.group(1)} }}}}")
        return expressions[match.group(1)]

    return EXPRESSION.sub(sub, str(value))


def run_job(
    repo: Path,
    workflow: dict[str, Any],
    job: str,
    expressions: dict[str, str] | None = None,
    stop_on_failure: bool = True,
    skip: tuple[str, ...] = (),
) -> tuple[list[StepRun], dict[str, str]]:
    """Run every `run:` step of a job in `repo` (except the steps named in `skip`: those that
    only talk to GitHub's API); return the step results and its outputs."""
    expressions = expressions or {}
    outputs_file = repo.parent / f".github-output-{job}"
    summary_file = repo.parent / f".github-summary-{job}"
    outputs_file.write_text("")
    summary_file.write_text("")
    env = dict(os.environ)
    for scope in (workflow.get("env", {}), workflow["jobs"][job].get("env", {})):
        env.update({key: _resolve(value, expressions) for key, value in scope.items()})
    env.update(GITHUB_OUTPUT=str(outputs_file), GITHUB_STEP_SUMMARY=str(summary_file))
    results = []
    for index, step in enumerate(workflow["jobs"][job]["steps"]):
        if "run" not in step or step.get("name") in skip:
            continue
        step_env = dict(env)
        step_env.update(
            {key: _resolve(value, expressions) for key, value in step.get("env", {}).items()}
        )
        proc = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
            cwd=repo,
            env=step_env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            check=False,
        )
        results.append(StepRun(step.get("name", f"step {index}"), proc.returncode, proc.stdout))
        if proc.returncode != 0 and stop_on_failure:
            break
    outputs = dict(
        line.split("=", 1) for line in outputs_file.read_text().splitlines() if "=" in line
    )
    return results, outputs


def describe(results: list[StepRun]) -> str:
    return "\n".join(f"--- {r.name} (exit {r.returncode})\n{r.output}" for r in results)
