"""The CDK app: the foundation stack and one stack per Lambda function and ECS job in src/.

A package added with `make new-package TYPE=lambda|ecs` gets its stack at the next synth, with
no edit here. Every stack deploys without `cdk bootstrap`: it has no assets (images come from
ECR by tag), and LegacyStackSynthesizer has the CLI deploy it with its own credentials, the
template sent inline. CliCredentialsStackSynthesizer would too, but it makes every template
an asset, which `cdk deploy` uploads to the bootstrap bucket first ("No bucket named
'cdk-hnb659fds-assets-...'. Is account ... bootstrapped?"). A template over 50 KB would need
that bucket as well; these are a few KB each.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import aws_cdk as cdk

from stacks.foundation import FoundationStack
from stacks.function import FunctionStack
from stacks.job import JobStack
from stacks.repo import ConfigError, Settings, deployables, python_version

INFRA = Path(__file__).resolve().parents[1]


def build(context: dict[str, Any] | None = None, outdir: str | None = None) -> cdk.App:
    """The app, its context from infra/cdk.json updated with `context`.

    Raises ConfigError with what to change when the repo asks for what cannot be made.
    """
    merged = {**json.loads((INFRA / "cdk.json").read_text())["context"], **(context or {})}
    app = cdk.App(
        # The CDK CLI names its own output folder; run alone, the app writes infra/cdk.out.
        outdir=outdir or os.environ.get("CDK_OUTDIR") or str(INFRA / "cdk.out"),
        context=merged,
        # No AWS::CDK::Metadata resource: the templates hold only what the repo asked for.
        analytics_reporting=False,
    )
    settings = Settings.from_context(app.node.try_get_context)
    env = cdk.Environment(region=settings.region)
    synthesizer = cdk.LegacyStackSynthesizer
    packages = deployables()
    FoundationStack(app, settings, packages, env=env, synthesizer=synthesizer())
    python = python_version()
    for package in packages:
        if package.kind == "lambda":
            FunctionStack(app, settings, package, python, env=env, synthesizer=synthesizer())
        else:
            JobStack(app, settings, package, env=env, synthesizer=synthesizer())
    return app


def main() -> int:
    try:
        build().synth()
    except ConfigError as error:
        print(f"app: {error}", file=sys.stderr)
        return 2
    return 0
