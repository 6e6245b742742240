"""What the stacks' roles share."""

from __future__ import annotations

from typing import Any


def trust(service: str) -> dict[str, Any]:
    """The trust policy of a role that an AWS service (`lambda.amazonaws.com`, ...) assumes."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": service},
                "Action": "sts:AssumeRole",
            }
        ],
    }
