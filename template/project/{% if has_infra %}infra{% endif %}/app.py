"""Synthesize every stack into cdk.out/: `make synth` (or `uv run python app.py` in infra/)."""

import sys

from stacks.app import main

if __name__ == "__main__":
    sys.exit(main())
