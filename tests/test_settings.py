"""The common package's settings loader never collects AWS's or the tools' own variables."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIA-not-a-setting",
    "AWS_SECRET_ACCESS_KEY": "secret",
    "AWS_SESSION_TOKEN": "token",
}


def load_settings_module(repo: Path, prefix: str):
    path = repo / "src" / f"{prefix}_common" / f"{prefix}_common" / "settings.py"
    spec = importlib.util.spec_from_file_location(f"{prefix}_common.settings", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("colliding", ["AWS_", "AWS_SECRET_"])
def test_aws_secrets_never_reach_settings(render, monkeypatch, colliding: str) -> None:
    """Even with an env prefix that collides with AWS's namespace (a repo generated before
    such prefixes were refused): credentials in the environment never become settings."""
    repo = render(package_prefix="nt")
    settings = load_settings_module(repo, "nt")
    monkeypatch.setattr(settings, "ENV_PREFIX", colliding)
    monkeypatch.setattr(settings, "__package__", "nt_common")
    monkeypatch.setattr(
        settings,
        "packaged_defaults",
        lambda: {"environment": "dev", "log_level": "INFO", "aws_region": "eu-west-1"},
    )
    loaded = settings.load_settings({**SECRETS, "NT_TEAM": "data"})
    assert not set(SECRETS.values()) & {
        str(v) for v in [*loaded.extra.values(), *vars(loaded).values()]
    }
    assert loaded.extra == {}
